#!/bin/bash
# The bert-mini-ref TAMT-KD bf16 search again, with the rounding noise drawn once per 64K positions
# and broadcast over a chunk's rows (README: the first searches drew one number per value).
# Run from the repository root, with ../shared (the shared data and models) beside it; outputs go
# to runs/bf16 (ignored), beside quality.sh's.
source .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=../shared; R=runs/bf16; MINI=$S/models/bert-mini-ref
echo "=== $(date +%T) mini-kd-bf16-bcast"
/usr/bin/time -f "%e s wall" ticketlab search tamt --model $MINI --sparsity 0.7 --steps 200 --objective kd --lr 2e-3 \
  --corpus $S/data/wiki-2015/wiki-00.txt --dev $S/data/wikitext-2/valid.txt --dev-blocks 64 --batch-size 16 \
  --max-length 128 --seed 0 --no-progress --out $R/mini-kd-bf16-bcast --score-dtype bfloat16 2>&1 | tail -2
ticketlab evaluate-pretrain --model $MINI --mask $R/mini-kd-bf16-bcast --corpus $S/data/wikitext-2/valid.txt \
  --max-length 128 --max-blocks 256 --json --out $R/mini_valid_bcast.json 2>&1 | tail -4
echo "=== $(date +%T) done"
