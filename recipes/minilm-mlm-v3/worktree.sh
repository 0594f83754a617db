#!/bin/bash
# The study's worktree, set up again on a machine that lacks it, from what main holds (NOTEBOOK.md):
#
#   recipes/minilm-mlm-v3/worktree.sh [DIR]        # default /work/study-v3b; PYTHON names the interpreter
#
# 1. a worktree at the study's code (branch study/minilm-mlm-v3): the commit that added this folder's
#    snapshot.py, the one after the declaration, and on it the results store's lock fix, which changes
#    no result;
# 2. its sweep store: this folder's committed snapshot (results.sqlite);
# 3. every done search's final mask, back from git: minilm-mlm-v2's script for the masks this study
#    reuses, then this study's.
# The checkpoints of the runs under way at the last stop are not in git: those runs start again.
# Then, from DIR, each core's piece.sh as NOTEBOOK.md says.
set -euo pipefail
dir=${1:-/work/study-v3b}
py=${PYTHON:-python3}
root=$(git rev-parse --show-toplevel)
if [ -e "$dir" ]; then
  echo "worktree.sh: $dir exists: resume there (piece.sh), or remove it first" >&2
  exit 2
fi
code=$(git -C "$root" log --diff-filter=A --format=%H -- recipes/minilm-mlm-v3/snapshot.py | tail -n 1)
lock_fix=d333127b552a116d76a01c5d145973b2cd3f77c5  # the store checked by its status, never opened
git -C "$root" worktree prune  # a worktree whose folder is gone no longer holds its branch
if git -C "$root" rev-parse -q --verify refs/heads/study/minilm-mlm-v3 > /dev/null; then
  git -C "$root" worktree add "$dir" study/minilm-mlm-v3  # the branch this clone already has
else
  git -C "$root" worktree add -b study/minilm-mlm-v3 "$dir" "$code"
  git -C "$dir" cherry-pick "$lock_fix"
fi
mkdir -p "$dir/sweeps/minilm-mlm-v3"
cp "$root/docs/results/minilm-mlm-v3/results.sqlite" "$dir/sweeps/minilm-mlm-v3/"
cd "$dir"
PYTHONPATH=src "$py" recipes/minilm-mlm-v2/snapshot.py --restore sweeps/minilm-mlm-v3
PYTHONPATH=src "$py" recipes/minilm-mlm-v3/snapshot.py --restore sweeps/minilm-mlm-v3
