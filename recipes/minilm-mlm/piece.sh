#!/bin/bash
# One piece of the minilm-mlm study (README "How it runs"), from its worktree: on each of the two
# cores, one search (if one is left and SEARCH is 1), then pre-training evaluations and fine-tunings
# started until LAST (UTC, HH:MM): a run under way at LAST finishes (CoLA's take up to ~15 min), so
# set LAST ~35 min before the machine stops, then snapshot.py and commit.
#
#   recipes/minilm-mlm/piece.sh 08:40 [SEARCH]     # SEARCH 1 (default) or 0
#
# A search takes ~70-95 min of one core: start a piece with SEARCH=1 only where it ends before LAST.
# On a new machine (no sweeps/minilm-mlm yet) it first carries the committed store and masks there.
# Logs go beside the store, in sweeps/minilm-mlm.logs/ (a folder inside a carried store, before the
# sweep has marked it, would make the sweep refuse it as the user's).
set -euo pipefail
last=${1:?usage: piece.sh HH:MM [SEARCH]}
search=${2:-1}
cd "$(git rev-parse --show-toplevel)"
py=${PYTHON:-python}
sweep=(env OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src" "$py" -m ticketlab sweep docs/results/minilm-mlm/spec.yaml
       --out sweeps/minilm-mlm --no-report)
if [ ! -e sweeps/minilm-mlm ]; then
  mkdir -p sweeps/minilm-mlm
  cp docs/results/minilm-mlm/results.sqlite sweeps/minilm-mlm/
  cp -r docs/results/minilm-mlm/masks sweeps/minilm-mlm/
fi
logs=sweeps/minilm-mlm.logs
mkdir -p "$logs"
for core in 1 2; do
  (
    if [ "$search" = 1 ]; then "${sweep[@]}" --only search --max-runs 1; fi
    minutes=$(( ( $(date -u -d "$last" +%s) - $(date -u +%s) ) / 60 ))
    if [ "$minutes" -gt 0 ]; then
      "${sweep[@]}" --only pretrain-eval --only finetune --start-for "$minutes"
    fi
  ) > "$logs/piece-core$core.log" 2>&1 &
  sleep 20  # the second process takes the next run, not the same one
done
echo "started; logs in $logs/ (ticketlab sweep --status sweeps/minilm-mlm)"
