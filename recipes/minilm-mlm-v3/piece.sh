#!/bin/bash
# One core's part of a piece of the minilm-mlm-v3 study (NOTEBOOK.md), run from the study's worktree
# (its code: PYTHONPATH=src), one torch thread:
#
#   cd STUDY_WORKTREE && nohup PATH_TO/recipes/minilm-mlm-v3/piece.sh searches > A.log 2>&1 &
#   cd STUDY_WORKTREE && nohup PATH_TO/recipes/minilm-mlm-v3/piece.sh claim4 > B.log 2>&1 &
#
#   searches  the searches still to do, in the plan's order (IMP at 70%, IMP at 90%, TAMT-KD at 90%)
#   claim4    the fine-tunings of claim 4's two arms (TAMT-KD at 70%, Wanda) whose masks exist
#
# then, on both cores, the whole plan: the first run of the plan that is ready (a search, a
# fine-tuning whose mask exists, a pre-training evaluation). `--only finetune` would leave a core
# waiting for the other's search whenever no mask's fine-tuning is ready; a whole sweep waits only
# when nothing at all is. The order changes no result: each run is seeded from its id. Every run
# checkpoints and resumes where it stopped. A second process on the same store takes other runs
# (each run is claimed in the store). Stop a core by ending its python process, not this script.
set -euo pipefail
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src"
py=${PYTHON:-python3}
sweep=("$py" -m ticketlab sweep docs/results/minilm-mlm-v3/spec.yaml --out sweeps/minilm-mlm-v3 --no-report)
case ${1:-} in
  searches) "${sweep[@]}" --runs 'imp_s70_seed*' --runs 'imp_s90_seed*' --runs 'tamt-kd_s90_seed*' ;;
  claim4) "${sweep[@]}" --only finetune --runs 'ft_*_tamt-kd_s70_*' --runs 'ft_*_wanda_*' ;;
  *) echo "usage: piece.sh searches|claim4" >&2; exit 2 ;;
esac
exec "${sweep[@]}"
