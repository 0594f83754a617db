# Longer TAMT-KD search on bert-mini-ref (70%): 200 vs 1000 vs 3000 steps, against OMP; 3 fine-tunings each.
# Run from the repository root, with ../shared beside it: bash recipes/bert-mini-ref/long-search/run.sh
# (on the H100 it took 4 min; the corpus is the first 30 MB of wiki-00, carried there xz-compressed).
set -e
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
tl() { python3 -c 'import sys; from ticketlab.cli import main; sys.exit(main())' "$@"; }
M=../shared/models/bert-mini-ref; G=../shared/data/glue; R=${R:-$PWD/runs/long-search}; mkdir -p $R
export M G R
if [ -f ../shared/data/wiki-part.txt.xz ]; then xz -dc ../shared/data/wiki-part.txt.xz > $R/wiki.txt
else head -c 30000000 ../shared/data/wiki-2015/wiki-00.txt > $R/wiki.txt; fi
C="--model $M --sparsity 0.7 --corpus $R/wiki.txt --dev ../shared/data/wikitext-2/test.txt --max-length 128 --batch-size 16 --dev-blocks 64 --no-progress --cache-dir $R/cache --objective kd --lr 2e-3"
tl prune omp --model $M --sparsity 0.7 --out $R/omp > /dev/null
date; tl search tamt $C --steps 200 --out $R/kd200 > $R/kd200.log 2>&1; date
tl search tamt $C --steps 3000 --save-at 1000 --out $R/kd3000 > $R/kd3000.log 2>&1; date
cp $R/kd200.log $R/kd3000.log ${OUT:-$R}/; tail -n 2 $R/kd200.log; tail -n 2 $R/kd3000.log
ln -s $R/kd3000/steps/step-001000 $R/kd1000
ft() {
  extra=""; [ $2 = sst2 ] && extra="--train-samples 5000"
  OMP_NUM_THREADS=2 python3 -c 'import sys; from ticketlab.cli import main; sys.exit(main())' finetune --model $M --mask $R/$1 --task $2 --data-dir $G --seeds 0 1 2 --lr 5e-4 --batch-size 32 --max-length 128 --max-steps 100 --eval-every 50 $extra --out $R/ft_$1_$2 --no-progress > $R/ft_$1_$2.log 2>&1 || echo "FAILED $1 $2"
}
export -f ft
for m in omp kd200 kd1000 kd3000; do for t in sst2 cola mrpc; do echo $m $t; done; done | xargs -P 6 -n 2 bash -c 'ft "$@"' _
date
python3 - <<'PY' | tee ${OUT:-$R}/ft.txt
import json, os, pathlib
for m in ["omp", "kd200", "kd1000", "kd3000"]:
    for t in ["sst2", "cola", "mrpc"]:
        f = pathlib.Path(os.environ["R"], f"ft_{m}_{t}", "results.json")
        print(m, t, json.dumps(json.loads(f.read_text()).get("final")) if f.exists() else "missing")
PY
tl evaluate-pretrain --model $M --mask $R/omp $R/kd200 $R/kd1000 $R/kd3000 --corpus ../shared/data/wikitext-2/test.txt --max-length 128 --max-blocks 256 2>&1 | tail -8 | tee ${OUT:-$R}/pretrain.txt
