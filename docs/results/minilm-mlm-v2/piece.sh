#!/bin/bash
# One piece of the minilm-mlm-v2 study (README "How it runs"), from its worktree: two processes, one
# torch thread each (one per core). SEARCHES N (default 1): on one core N searches, one after the
# other (those left), the other core fine-tuning meanwhile; 0: both cores on pre-training evaluations
# and fine-tunings; `pilot`: both cores on the protocol pilot (pilot.yaml). Runs are started until
# LAST (UTC, HH:MM);
# a run under way at LAST finishes (a fine-tuning takes up to ~10 min at the planned protocol, a
# pilot's 3L run up to ~25), so set LAST ~20 min (the pilot: ~30) before the machine stops, then
# snapshot.py (the pilot: snapshot.py --pilot) and commit.
#
#   docs/results/minilm-mlm-v2/piece.sh 08:40 [SEARCHES|pilot]     # SEARCHES: 0, 1 (default), 2, ...
#
# A search takes ~60-95 min of one core: ask for N only where N of them end before LAST.
# On a new machine (no sweeps/minilm-mlm-v2 yet) it first carries the committed store and masks
# there; before this study's first commit of its store, minilm-mlm's store and its 13 final masks
# (from git history, each checked against the hash its search recorded), whose searches this spec
# plans under the same run ids. Logs go beside the store, in sweeps/minilm-mlm-v2.logs/.
set -euo pipefail
last=${1:?usage: piece.sh HH:MM [SEARCHES|pilot]}
mode=${2:-1}
cd "$(git rev-parse --show-toplevel)"
py=${PYTHON:-python}
here=docs/results/minilm-mlm-v2
if [ "$mode" = pilot ]; then spec=$here/pilot.yaml out=sweeps/minilm-mlm-v2-pilot
elif [[ "$mode" =~ ^[0-9]+$ ]]; then spec=$here/spec.yaml out=sweeps/minilm-mlm-v2
else echo "piece.sh: $mode: expected a number of searches or 'pilot'" >&2; exit 2; fi
sweep=(env OMP_NUM_THREADS=1 PYTHONPATH="$PWD/src" "$py" -m ticketlab sweep "$spec" --out "$out" --no-report)
if [ "$mode" = pilot ]; then
  if [ ! -e "$out" ] && [ -f $here/pilot/results.sqlite ]; then
    mkdir -p "$out" && cp $here/pilot/results.sqlite "$out/"
  fi
elif [ ! -e "$out" ]; then
  mkdir -p "$out"
  if [ -f $here/results.sqlite ]; then
    cp $here/results.sqlite "$out/"
    if [ -d $here/masks ]; then cp -r $here/masks "$out/"; fi
  else
    cp docs/results/minilm-mlm/results.sqlite "$out/"
    PYTHONPATH="$PWD/src" "$py" docs/results/minilm-mlm/snapshot.py --restore "$out"
  fi
fi
logs=$out.logs
mkdir -p "$logs"
for core in 1 2; do
  (
    if [ "$mode" != pilot ] && [ "$mode" -gt 0 ] && [ "$core" = 1 ]; then
      "${sweep[@]}" --only search --max-runs "$mode"
    fi
    minutes=$(( ( $(date -u -d "$last" +%s) - $(date -u +%s) ) / 60 ))
    if [ "$minutes" -gt 0 ]; then
      if [ "$mode" = pilot ]; then "${sweep[@]}" --start-for "$minutes"
      else "${sweep[@]}" --only pretrain-eval --only finetune --start-for "$minutes"; fi
    fi
  ) > "$logs/piece-core$core.log" 2>&1 &
  sleep 20  # the second process takes the next run, not the same one
done
echo "started; logs in $logs/ (ticketlab sweep --status $out)"
