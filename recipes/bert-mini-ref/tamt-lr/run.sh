#!/bin/bash
# TAMT score lr for a 200-step search, chosen on WikiText-2 *valid* (the reports use test.txt):
# bert-mini-ref, 70%, batch 16 x 128, Wikipedia wiki-00, seed 0; criterion: the objective's dev loss.
# Run from the repository root, with ../shared (the shared data and models) beside it; the searches
# go to runs/tamt-lr (ignored).
source .venv/bin/activate
S=../shared
for obj in mlm kd; do for lr in 5e-4 2e-3; do
  echo "=== $(date +%T) $obj lr $lr"
  /usr/bin/time -f "%e s wall" ticketlab search tamt --model $S/models/bert-mini-ref --sparsity 0.7 --steps 200 \
    --objective $obj --lr $lr --corpus $S/data/wiki-2015/wiki-00.txt --dev $S/data/wikitext-2/valid.txt \
    --dev-blocks 64 --batch-size 16 --max-length 128 --seed 0 --no-progress --out runs/tamt-lr/$obj-$lr 2>&1 | tail -4
done; done
echo "=== $(date +%T) done"
