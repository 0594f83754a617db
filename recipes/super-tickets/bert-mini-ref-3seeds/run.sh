#!/bin/bash
# Super-ticket studies on bert-mini-ref with per-example importance (the paper's E_x|dL/dgate|, the
# default) and 3 seeds on SST-2 and MRPC, then ticket importance across the two tasks and domain
# adaptation SST-2 -> MRPC. Budgets as the first studies
# (docs/results/super-tickets/README.md): lr 1e-4, batch 32; SST-2 a seeded 5k subset, 100 steps; MRPC 80 steps.
# Run from the repository root; studies go to runs/ (ignored), reports here.
set -e
S=../shared
T=.venv/bin/ticketlab
R=runs/super3
D=docs/results/super-tickets/bert-mini-ref-3seeds
M=$S/models/bert-mini-ref
COMMON="--model $M --data-dir $S/data/glue --lr 1e-4 --batch-size 32 --seeds 1 2 3 --no-progress"
echo "=== $(date +%T) sst2"
$T super $COMMON --task sst2 --train-samples 5000 --max-steps 100 --eval-every 50 \
  --levels 0.25 0.5 0.75 --kinds winning random losing --keep-models --out $R/sst2
echo "=== $(date +%T) mrpc"
$T super $COMMON --task mrpc --max-steps 80 --eval-every 40 \
  --levels 0.25 0.5 0.75 --kinds winning random losing --out $R/mrpc
echo "=== $(date +%T) importance across tasks"
$T importance $R/sst2 $R/mrpc --out $D/importance
echo "=== $(date +%T) adapt sst2 -> mrpc"
$T adapt $R/sst2 --task mrpc --data-dir $S/data/glue --lr 1e-4 --batch-size 32 --max-steps 80 --eval-every 40 \
  --no-progress --out $R/adapt-sst2-mrpc
mkdir -p $D/adapt-sst2-mrpc && cp $R/adapt-sst2-mrpc/adaptation.* $D/adapt-sst2-mrpc/
echo "=== $(date +%T) reports"
$T report $R/sst2 --out $D/sst2
$T report $R/mrpc --out $D/mrpc
echo "=== $(date +%T) done"
