#!/bin/bash
# One piece of the minilm-mlm-v2 study (README "How it runs"), from its worktree: two processes, one
# torch thread each (one per core).
#
#   docs/results/minilm-mlm-v2/piece.sh LAST [SEARCHES [pilot-9L]]
#   docs/results/minilm-mlm-v2/piece.sh LAST pilot|pilot-9L
#
# SEARCHES N (default 1): on core 1, N of the study's searches, one after the other (those left),
# then its fine-tunings; on core 2 the study's pre-training evaluations and fine-tunings, or with
# `pilot-9L` after N, that pilot's runs (pilot-9L.yaml). N = 0: no search. `pilot` / `pilot-9L`
# alone: both cores on that pilot. Runs are started until LAST (UTC, HH:MM); a run under way at LAST
# finishes (a fine-tuning at the protocol takes up to ~25 min, a 9L one up to ~65), so set LAST
# ~25 min (9L: ~65) before the machine stops, then snapshot.py (a pilot: snapshot.py --pilot
# sweeps/minilm-mlm-v2-<pilot>) and commit. A search takes ~60-95 min of one core: ask for N only
# where N of them end before the machine stops (its checkpoints do not outlive the machine).
#
# On a new machine (no sweeps/minilm-mlm-v2 yet) it first carries the committed store and masks
# there; before this study's first commit of its store, minilm-mlm's store and its 13 final masks
# (from git history, each checked against the hash its search recorded), whose searches this spec
# plans under the same run ids. A pilot's sweep starts from its committed store (pilot*/). Logs go
# beside each store, in sweeps/<name>.logs/.
set -euo pipefail
usage="usage: piece.sh HH:MM [SEARCHES [pilot-9L]] | HH:MM pilot|pilot-9L"
last=${1:?$usage}
mode=${2:-1}
other=${3:-}
cd "$(git rev-parse --show-toplevel)"
py=${PYTHON:-python}
here=docs/results/minilm-mlm-v2
if [[ ! "$mode" =~ ^([0-9]+|pilot|pilot-9L)$ ]] || [[ ! "$other" =~ ^(|pilot-9L)$ ]]; then
  echo "piece.sh: $*: $usage" >&2
  exit 2
fi

sweep() {  # NAME ARGS...: `ticketlab sweep` of spec.yaml (NAME spec) or of a pilot, one torch thread
  local name=$1 out=sweeps/minilm-mlm-v2-$1
  shift
  if [ "$name" = spec ]; then out=sweeps/minilm-mlm-v2; fi
  OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src" "$py" -m ticketlab sweep "$here/$name.yaml" --out "$out" --no-report "$@"
}

carry() {  # a sweep's store (and the study's masks) onto a new machine
  if [ "$1" = spec ]; then
    local out=sweeps/minilm-mlm-v2
    [ -e "$out" ] && return
    mkdir -p "$out"
    if [ -f $here/results.sqlite ]; then
      cp $here/results.sqlite "$out/"
      if [ -d $here/masks ]; then cp -r $here/masks "$out/"; fi
    else
      cp docs/results/minilm-mlm/results.sqlite "$out/"
      PYTHONPATH="$PWD/src" "$py" docs/results/minilm-mlm/snapshot.py --restore "$out"
    fi
  else
    local out=sweeps/minilm-mlm-v2-$1
    if [ ! -e "$out" ] && [ -f "$here/$1/results.sqlite" ]; then
      mkdir -p "$out" && cp "$here/$1/results.sqlite" "$out/"
    fi
  fi
}

minutes_left() { echo $(( ( $(date -u -d "$last" +%s) - $(date -u +%s) ) / 60 )); }

run_core() {  # SEARCHES NAME: that many of the study's searches first, then NAME's other runs
  local searches=$1 name=$2 minutes
  if [ "$searches" -gt 0 ]; then sweep spec --only search --max-runs "$searches"; fi
  minutes=$(minutes_left)
  if [ "$minutes" -le 0 ]; then return; fi
  if [ "$name" = spec ]; then sweep spec --only pretrain-eval --only finetune --start-for "$minutes"
  else sweep "$name" --start-for "$minutes"; fi
}

if [[ "$mode" =~ ^pilot ]]; then plan=("0 $mode" "0 $mode")
else plan=("$mode spec" "0 ${other:-spec}"); fi
for core in 1 2; do
  read -r searches name <<< "${plan[$((core - 1))]}"
  carry "$name"
  if [ "$searches" -gt 0 ]; then carry spec; fi
  logs=$( [ "$name" = spec ] && echo sweeps/minilm-mlm-v2.logs || echo "sweeps/minilm-mlm-v2-$name.logs" )
  mkdir -p "$logs"
  run_core "$searches" "$name" > "$logs/piece-core$core.log" 2>&1 &
  sleep 20  # the second process takes the next run, not the same one
done
echo "started; logs in sweeps/minilm-mlm-v2*.logs/ (ticketlab sweep --status DIR)"
