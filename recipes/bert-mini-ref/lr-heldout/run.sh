#!/bin/bash
# The TAMT score-lr choice of ../tamt-lr/run.sh re-checked on held-out text: WikiText-2 valid, on which it
# was made, was part of bert-mini-ref's pre-training text (pretraining_log.json).
# Same searches as ../tamt-lr/run.sh (70%, 200 steps, batch 16 x 128, wiki-00, seed 0); scored on
# wiki-2015's wiki-01.txt (neither in the model's pre-training text nor in the search corpus), first
# 256 blocks of 128 tokens. Run from the repository root; masks go to runs/lr-heldout (ignored).
set -e
S=../shared
T=.venv/bin/ticketlab
O=runs/lr-heldout
HELD=$S/data/wiki-2015/wiki-01.txt
mkdir -p $O
$T prune omp --model $S/models/bert-mini-ref --sparsity 0.7 --out $O/omp
for obj in mlm kd; do for lr in 5e-4 2e-3; do
  echo "=== $(date +%T) $obj lr $lr"
  /usr/bin/time -f "%e s wall" $T search tamt --model $S/models/bert-mini-ref --sparsity 0.7 --steps 200 \
    --objective $obj --lr $lr --corpus $S/data/wiki-2015/wiki-00.txt --dev $HELD \
    --dev-blocks 64 --batch-size 16 --max-length 128 --seed 0 --no-progress --out $O/$obj-$lr 2>&1 | tail -2
done; done
$T evaluate-pretrain --model $S/models/bert-mini-ref --full --mask $O/omp $O/mlm-5e-4 $O/mlm-2e-3 \
  $O/kd-5e-4 $O/kd-2e-3 --corpus $HELD --max-length 128 --max-blocks 256 --json \
  --out docs/results/bert-mini-ref/lr-heldout/heldout_eval.json
echo "=== $(date +%T) done"
