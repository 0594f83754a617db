#!/usr/bin/env bash
# The study's runs still to do, on a lent GPU, in two calls of the device tool: what one call may
# carry (64 MiB) holds the model or the search corpus, not both. Every stage runs from the root of
# the repository (main's checkout, at the commit of the last committed store):
#
#   here:    gpu_piece.sh pack      .gpucarry-a/: the search corpus (xz) and its sha256;
#                                   .gpucarry-b/: the task and dev-corpus data; the plan as it stands
#   call A:  (models/minilm-mlm/model.safetensors moved out of the tree; carry .gpucarry-a)
#            gpu_piece.sh unpack    the corpus into ../shared, the committed store and masks into sweeps/
#   call B:  (docs/results/minilm-mlm-v2/masks moved out of the tree, the model back; carry .gpucarry-b;
#            at once: the machine stays 30 s)
#            gpu_piece.sh run [SECONDS]   8 sweeps at once (one torch thread each) until SECONDS
#                                   (default 500) have passed, the search device check beside them,
#                                   then snapshot.py; what comes back: $OUT/*
#   here:    gpu_piece.sh land DIR  the snapshot from DIR (the call's files) into this folder
#
# Outside the runs' identities: the device (each run's provenance names it). The rule that lets the
# GPU's runs count is written in README.md ("The pieces", the GPU) before the call.
set -euo pipefail
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
here=docs/results/minilm-mlm-v2
spec=$here/spec.yaml
shared=../shared/data
corpus=$shared/wiki-2015/wiki-01.txt
py=${PYTHON:-python3}
tl=(env PYTHONPATH="$PWD/src" OMP_NUM_THREADS=1 "$py" -m ticketlab)  # one torch thread a process
counts() { grep -E '^  (search|pretrain-eval|finetune) ' || true; }  # a dry run's done/pending lines

case ${1:-} in
  pack)
    grep -qx '/.gpucarry-\*/' .git/info/exclude 2>/dev/null || echo '/.gpucarry-*/' >> .git/info/exclude
    rm -rf .gpucarry-a .gpucarry-b && mkdir -p .gpucarry-a .gpucarry-b
    nice xz -6 -T1 -c "$corpus" > .gpucarry-a/wiki-01.txt.xz
    sha256sum "$corpus" | cut -d' ' -f1 > .gpucarry-a/wiki-01.txt.sha256
    tar czf .gpucarry-b/shared.tgz -C .. shared/data/glue/SST-2 shared/data/glue/CoLA \
      shared/data/glue/STS-B shared/data/wikitext-2/test.txt
    rm -rf /tmp/gpu-plan && mkdir -p /tmp/gpu-plan && cp $here/results.sqlite /tmp/gpu-plan/
    "${tl[@]}" sweep $spec --out /tmp/gpu-plan --dry-run | counts > .gpucarry-b/plan.txt
    cat .gpucarry-b/plan.txt; du -sh .gpucarry-a .gpucarry-b ;;
  unpack)
    mkdir -p "$(dirname "$corpus")" sweeps/minilm-mlm-v2
    xz -dc .gpucarry-a/wiki-01.txt.xz > "$corpus"
    [ "$(sha256sum "$corpus" | cut -d' ' -f1)" = "$(cat .gpucarry-a/wiki-01.txt.sha256)" ] \
      || { echo "gpu_piece.sh: $corpus: not the corpus packed" >&2; exit 2; }
    cp $here/results.sqlite sweeps/minilm-mlm-v2/ && cp -r $here/masks sweeps/minilm-mlm-v2/
    ls sweeps/minilm-mlm-v2/masks; echo "unpacked" ;;
  run)
    t0=$(date +%s) && total=${2:-500}
    tar xzf .gpucarry-b/shared.tgz -C ..
    out=sweeps/minilm-mlm-v2 check=sweeps/device-check logs=/tmp/gpu-logs
    mkdir -p $logs $check
    # Guard, on the first run: the plan here must be the plan as packed, else nothing runs (a run
    # again on the same machine goes on from where the first stopped).
    if [ ! -e $logs/started ]; then
      "${tl[@]}" sweep $spec --out $out --dry-run 2>&1 | counts | diff - .gpucarry-b/plan.txt \
        || { echo "gpu_piece.sh: the plan here differs from the one packed: nothing run"; exit 2; }
      # The search device check: TAMT-KD's seed 0, searched on the CPU, searched and evaluated again.
      "$py" - $out/results.sqlite $check/results.sqlite <<'EOF'
import sqlite3, sys
sqlite3.connect(sys.argv[1]).backup(db := sqlite3.connect(sys.argv[2]))
with db:
    db.execute("delete from runs where name in ('tamt-kd_s70_seed0', 'pe_tamt-kd_s70_seed0')")
EOF
      touch $logs/started
    fi
    left=$(( t0 + total - 60 - $(date +%s) ))
    [ $left -gt 30 ] || { echo "gpu_piece.sh: $left s left: nothing started"; exit 0; }
    timeout $left "${tl[@]}" sweep $spec --out $check --no-report --only search --only pretrain-eval \
      --runs tamt-kd_s70_seed0 --runs pe_tamt-kd_s70_seed0 >> $logs/check.log 2>&1 &
    for i in 1 2 3 4 5 6 7 8; do
      timeout $left "${tl[@]}" sweep $spec --out $out --no-report >> $logs/worker-$i.log 2>&1 &
      sleep 3  # each claims its first run before the next starts
    done
    wait || true
    "${tl[@]}" sweep $spec --out $out --dry-run 2>&1 | counts
    PYTHONPATH=src "$py" recipes/minilm-mlm-v2/snapshot.py $out > $logs/snapshot.log 2>&1 || cat $logs/snapshot.log
    # Back, in parts of at most 15 MB: the snapshot (store, CSVs, the masks pending runs read),
    # every final mask (--restore reads them from git history), the check's store, the logs.
    finals=()  # the final masks the snapshot did not keep
    for m in $out/masks/*/; do
      [ -d "$here/masks/$(basename "$m")" ] || finals+=("$m"masks.safetensors "$m"mask_config.json "$m".ticketlab-output)
    done
    tar czf /tmp/back.tgz $here/results.sqlite $here/curve_similarity.csv $here/search_curves.csv \
      $here/masks "${finals[@]}" $check/results.sqlite $logs 2>/dev/null || true
    split -b 15M -d /tmp/back.tgz "${OUT:?}/back.tgz." && ls -la "$OUT" ;;
  land)
    dir=${2:?usage: gpu_piece.sh land DIR}
    back=/tmp/gpu-back && rm -rf $back && mkdir -p $back && cat "$dir"/back.tgz.* | tar xz -C $back
    cp $back/$here/results.sqlite $back/$here/*.csv $here/
    rm -rf $here/masks && mkdir -p $here/masks && cp -r $back/$here/masks/. $here/masks/
    # A final mask made there and in no commit yet is added: --restore finds masks in git history.
    for m in $back/sweeps/minilm-mlm-v2/masks/*/; do
      name=$(basename "$m")
      if [ -z "$(git log --format=%h -1 -- "$here/masks/$name/masks.safetensors")" ]; then
        mkdir -p "$here/masks/$name" && cp "$m"masks.safetensors "$m"mask_config.json "$m".ticketlab-output "$here/masks/$name/"
        echo "new mask: $name"
      fi
    done
    echo "landed in $here; the check's store and the logs: $back" ;;
  *) echo "usage: gpu_piece.sh pack | unpack | run [SECONDS] | land DIR" >&2; exit 2 ;;
esac
