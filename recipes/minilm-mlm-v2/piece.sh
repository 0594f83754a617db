#!/bin/bash
# One piece of the minilm-mlm-v2 study (README "How it runs"), from its worktree: one process per
# core, one torch thread each.
#
#   recipes/minilm-mlm-v2/piece.sh [--until HH:MM] CORE1 [CORE2]
#
# Each CORE is what that core does first, then the study's pre-training evaluations and
# fine-tunings (those whose masks exist, in the plan's order) until
# the machine stops or --until:
#   searches    the study's searches still to do, in the order of SEARCH_ORDER below (a search
#               another core has taken is skipped)
#   search      one search, the first still to do among SEARCH_ORDER's in the plan's order, started
#               whatever --until says: a piece of ~3 hours fits one search (60-110 min) and then
#               fine-tunings, where `searches` would start a second that the stop cuts off
#   search2     alone (it takes both cores): that one search with two torch threads, its
#               evaluations, then `finetune finetune`. For a machine where one thread searches too
#               slowly to finish inside the piece (an AVX2-only EPYC: ~5 s a step beside a
#               fine-tuning, 2.7 hours a search, against ~2.6 s on piece 15's machine), at about
#               a third more core time per search (~3.3 s a step on two threads)
#   pilot-9L    the protocol at 3x its steps (pilot-9L.yaml)
#   similarity  the optimiser test of README "Mask similarity" (similarity.yaml)
#   finetune    nothing first
# Every run checkpoints (fine-tunings and searches every 100 steps) and resumes where it stopped, so
# a run cut off by the machine's stop goes on in the next piece if this worktree's sweeps/ is still
# there; on a new machine it starts again. --until HH:MM (UTC): start no run after it (a run under
# way finishes: a fine-tuning takes up to ~25 min, a search 60-95, a 9L run ~65).
# Before the stop: snapshot.py; for pilot-9L and similarity also snapshot.py --pilot
# sweeps/minilm-mlm-v2-<name>, and for similarity curve_similarity.py sweeps/minilm-mlm-v2-similarity
# (its masks along the search are not committed); then commit. A core ends early where nothing is
# left that it can run (fine-tunings wait for their searches).
#
# On a new machine (no sweeps/minilm-mlm-v2 yet) it first carries the committed store and masks
# there (a pilot's sweep: its committed store, pilot*/ or similarity/). Logs go beside each store,
# in sweeps/<name>.logs/.
set -euo pipefail
usage="usage: piece.sh [--until HH:MM] searches|search|pilot-9L|similarity|finetune [same for core 2] | search2"
until_=""  # seconds since the epoch; a time of day before now is tomorrow's
until_arg=()  # --until HH:MM as given, for the fine-tunings search2 starts afterwards
if [ "${1:-}" = --until ]; then
  until_arg=(--until "${2:-}")
  if ! until_=$(date -u -d "${2:?$usage}" +%s 2>/dev/null) || [[ ! "$2" =~ ^[0-9]{1,2}:[0-9]{2}$ ]]; then
    echo "piece.sh: --until ${2}: not a time of day HH:MM (UTC)" >&2
    exit 2
  fi
  if [ "$until_" -le "$(date -u +%s)" ]; then until_=$((until_ + 86400)); fi
  shift 2
fi
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "piece.sh: $usage" >&2; exit 2; }
for core in "$@"; do
  [[ "$core" =~ ^(searches|search|search2|pilot-9L|similarity|finetune)$ ]] || { echo "piece.sh: $core: $usage" >&2; exit 2; }
done
if [[ " $* " == *" search2 "* ]] && [ $# -ne 1 ]; then echo "piece.sh: search2 takes both cores: $usage" >&2; exit 2; fi
self=$(realpath "$0")  # search2 runs it again for its fine-tunings, from the top level
cd "$(git rev-parse --show-toplevel)"
py=${PYTHON:-python}
here=docs/results/minilm-mlm-v2
# The searches first where the SD check needs them (the first 3 masks of each TAMT variant), then
# IMP's, then the rest (IMP and TAMT-KD have 9 masks since the SD check, TAMT-MLM 6).
SEARCH_ORDER=(
  tamt-kd_s70_seed0 tamt-mlm_s70_seed0 tamt-kd_s70_seed1 tamt-mlm_s70_seed1
  tamt-kd_s70_seed2 tamt-mlm_s70_seed2 'imp_s70_seed[3-8]'
  'tamt-kd_s70_seed[3-8]' 'tamt-mlm_s70_seed[3-5]'
)

out_of() { case $1 in spec) echo sweeps/minilm-mlm-v2 ;; *) echo "sweeps/minilm-mlm-v2-$1" ;; esac; }

limit() {  # --start-for MINUTES while --until is ahead; "stop" once it has passed
  [ -z "$until_" ] && return
  local m=$(( (until_ - $(date -u +%s)) / 60 ))
  if [ "$m" -le 0 ]; then echo stop; else echo "--start-for $m"; fi
}

sweep_now() {  # NAME ARGS...: `ticketlab sweep` of spec.yaml (NAME spec) or of another spec of this folder
  local name=$1
  shift
  OMP_NUM_THREADS=${threads:-1} PYTHONPATH="$PWD/src" "$py" -m ticketlab sweep "$here/$name.yaml" --out "$(out_of "$name")" \
    --no-report "$@"
}

sweep() {  # NAME ARGS...: sweep_now, starting runs only until --until
  local lim
  lim=$(limit)
  if [ "$lim" = stop ]; then return 0; fi
  # shellcheck disable=SC2086  # $lim is empty or two words
  sweep_now "$1" $lim "${@:2}"
}

carry() {  # NAME: a sweep's committed store (and the study's masks) onto a new machine
  local out
  out=$(out_of "$1")
  [ -e "$out" ] && return
  local from=$here/$1/results.sqlite
  if [ "$1" = spec ]; then from=$here/results.sqlite; fi
  [ -f "$from" ] || return 0
  mkdir -p "$out" && cp "$from" "$out/"
  if [ "$1" = spec ] && [ -d $here/masks ]; then cp -r $here/masks "$out/"; fi
}

run_core() {  # WHAT: that core's first job, then the study's evaluations and fine-tunings (a failed
  # run is in the store with its error; the core goes on with the next)
  case $1 in
    searches)
      for p in "${SEARCH_ORDER[@]}"; do
        sweep spec --only search --runs "$p" || true
        # the new masks' pre-training evaluations (≈ 30 s each) at once: the masks saved along a
        # search are then read before their machine stops, and none has to be carried to another
        sweep spec --only pretrain-eval || true
      done ;;
    search | search2)
      local pats=()
      for p in "${SEARCH_ORDER[@]}"; do pats+=(--runs "$p"); done
      local threads=1  # sweep_now's torch threads
      if [ "$1" = search2 ]; then threads=2; fi
      sweep_now spec --only search "${pats[@]}" --max-runs 1 || true
      sweep_now spec --only pretrain-eval || true
      if [ "$1" = search2 ]; then
        # --until has passed: stop here (run again, HH:MM would be read as tomorrow's)
        if [ "$(limit)" = stop ]; then return 0; fi
        exec "$self" "${until_arg[@]}" finetune finetune
      fi ;;
    pilot-9L | similarity) sweep "$1" || true ;;
  esac
  # One sweep over all of them: a sweep left with nothing it can start but a run whose search the
  # other core is making waits for that search, so a narrower sweep first would idle this core.
  sweep spec --only pretrain-eval --only finetune || true
}

carry spec
for core in "$@"; do
  case $core in pilot-9L | similarity) carry "$core" ;; esac
done
n=0
for core in "$@"; do
  n=$((n + 1))
  logs=$( case $core in pilot-9L | similarity) echo "$(out_of "$core").logs" ;; *) echo sweeps/minilm-mlm-v2.logs ;; esac )
  mkdir -p "$logs"
  # a hang-up ignored (as nohup does; the sweeps inherit it): the core outlives the shell that started it
  (trap '' HUP; run_core "$core") >> "$logs/piece-core$n.log" 2>&1 < /dev/null &
  sleep 20  # the second process takes the next run, not the same one
done
echo "started; logs in sweeps/minilm-mlm-v2*.logs/ (ticketlab sweep --status DIR)"
