#!/usr/bin/env bash
# One call on a lent GPU, from the repository root: the standing benchmarks at BERT-base 16 x 512,
# then the minilm-mlm-v2 fine-tunings that need no searched mask (full, OMP) and the device check
# (docs/results/gpu-2026-11-28/README.md says what each part is for and what was decided before the call).
#
# It reads .gpucarry/ (ignored; carried): shared.tgz (bert-mini-ref's tokenizer, WikiText-2, GLUE
# SST-2 / CoLA / STS-B train and dev, and an empty wiki-2015/wiki-01.txt: the spec must name a corpus
# file, and the runs made here read none), main.sqlite and check.sqlite (the study's store; the
# check's copy has the 15 re-run fine-tunings' rows removed) and OMP's mask.
# Environment: OUT (what comes back); BENCH=0 skips the benchmarks; everything ends TOTAL_S seconds
# (default 560) after the start, the study's sweeps 25 s before, to copy its stores out.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=src
T0=$(date +%s)
R=${OUT:?}
G=.gpucarry
tar xzf $G/shared.tgz -C ..
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  echo "cpus $(nproc)"; } > $R/env.txt 2>&1

if [ "${BENCH:-1}" = 1 ]; then
  B="timeout 120 python3 benchmarks/bench_mask_training.py --threads 8 --autocast bfloat16 --model bert-base --batch-size 16 --length 512"
  $B --steps 15 --warmup 3 --methods dense tamt-mlm tamt-kd peer-mlm peer-mlm-1000 > $R/time-16x512.txt 2>&1
  ${B/120/60} --memory --warmup 2 --methods dense tamt-mlm tamt-kd > $R/memory-16x512.txt 2>&1
  timeout 60 python3 benchmarks/bench_semi_structured.py --batch-size 16 --seq-len 512 > $R/semi-structured-16x512.txt 2>&1
  C="timeout 45 python3 benchmarks/bench_compaction.py --device cuda --dtype bf16 --models bert-base --reps 20 --threads 8"
  { $C --levels 0.3 0.5 0.7 --batch-size 64 --seq-len 512 --multiple 1
    $C --levels 0.3 0.5 0.7 --batch-size 64 --seq-len 512 --multiple 64; } > $R/compaction.txt 2>&1
fi

# The study: 5 sweeps on the study's store (full ft2, OMP ft3-9: 24 runs), 3 on the check's (full
# ft0-1, OMP ft0-2 again: 15 runs), one torch thread each. First a guard: the plan here must give
# the study's run ids (they hash the data files and the model), else nothing is run.
S=sweeps/minilm-mlm-v2 K=sweeps/device-check W=/tmp/workers SPEC=docs/results/minilm-mlm-v2/spec.yaml
mkdir -p $S/masks $K/masks $W
cp $G/main.sqlite $S/results.sqlite && cp $G/check.sqlite $K/results.sqlite
cp -r $G/omp_s70_97ea46fb $S/masks/ && cp -r $G/omp_s70_97ea46fb $K/masks/
python3 -m ticketlab sweep $SPEC --out $S --dry-run --runs 'ft_sst2_full_ft2*' > $W/guard.log 2>&1
if ! grep -q 4c1dc8d187d1d6e0 $W/guard.log; then cp $W/guard.log $R/study-skipped.txt; exit 0; fi
LEFT=$(( T0 + ${TOTAL_S:-560} - 25 - $(date +%s) ))
echo "study: $LEFT s left"; [ $LEFT -gt 30 ] || exit 0
sweep() { OMP_NUM_THREADS=1 timeout $LEFT python3 -m ticketlab sweep $SPEC --no-report --only finetune "$@"; }
for i in 1 2 3 4 5; do
  sweep --out $S --runs 'ft_*_full_ft2*' --runs 'ft_*_omp_s70_ft[3-9]*' > $W/main-$i.log 2>&1 &
  sleep 2  # each claims its first run before the next starts
done
for i in 1 2 3; do
  sweep --out $K --runs 'ft_*_full_ft[01]*' --runs 'ft_*_omp_s70_ft[0-2]*' > $W/check-$i.log 2>&1 &
  sleep 2
done
wait
for s in $S $K; do python3 - "$s" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"{sys.argv[1]}/results.sqlite")
for row in db.execute("select status, count(*) from runs where host != 'vm' group by status"):
    print(sys.argv[1], *row)
EOF
done
python3 -c "
import sqlite3
for s, n in (('$S', 'study-main.sqlite'), ('$K', 'study-check.sqlite')):
    sqlite3.connect(f'{s}/results.sqlite').backup(sqlite3.connect('$R/' + n))"
tar czf $R/study-logs.tgz $W $S/runs/*/log.jsonl $K/runs/*/log.jsonl 2>/dev/null
