#!/bin/bash
# Split: python3 -c "import random; L=open('glue/SST-2/train.tsv').read().splitlines(); R=L[1:]; random.Random(1234).shuffle(R)" -> train.tsv = header + R[:5000], dev.tsv = header + R[5000:5872]
# Fine-tuning lr for bert-mini-ref chosen on held-out SST-2 *training* examples (not the dev set).
# Run from the repository root, with ../shared (the shared models) beside it and the split in
# runs/select.
source .venv/bin/activate
for lr in 1e-4 5e-4 1e-3; do
  echo "=== $(date +%T) lr $lr"
  OMP_NUM_THREADS=1 /usr/bin/time -f "%e s wall" ticketlab finetune --model ../shared/models/bert-mini-ref --task sst2 --data-dir runs/select \
    --out runs/select/lr$lr --lr $lr --batch-size 32 --max-steps 100 --eval-every 50 --seeds 0 --no-progress 2>&1 | tail -3
done
