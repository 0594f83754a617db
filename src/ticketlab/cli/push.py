"""Upload a mask directory to the Hugging Face hub, beside the model it was found on.

The mask is read first (a corrupt one never leaves); the repo is created if needed. Others then pass
`--mask org/repo/sub/folder` to any verb. Needs network and a token (`hf auth login` or
--token / $HF_TOKEN).

Examples:
  ticketlab push masks/omp70 me/bert-tickets/omp70 --private
  ticketlab push masks/omp70 me/bert-tickets/omp70 \\
      --base-model google-bert/bert-base-uncased  # a mask found on a local copy of it
"""

from __future__ import annotations

import argparse

import ticketlab as tl


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mask", metavar="MASK_DIR")
    p.add_argument("repo", metavar="REPO", help="org/repo, or org/repo/sub/folder; @revision for a branch")
    p.add_argument(
        "--base-model",
        metavar="HUB_ID",
        help="the hub id of the model the mask was found on, recorded in what is pushed (a mask found on "
        "a local copy records the copy's path, which no other machine has); your folder is not changed",
    )
    p.add_argument("--private", action="store_true", help="create the repo private (if it is new)")
    p.add_argument("--token", help="hub token (default: the saved login or $HF_TOKEN)")
    p.add_argument("--message", help="commit message (default: the mask's method and sparsity)")


def run(args: argparse.Namespace) -> int:
    url = tl.push_mask(
        args.mask,
        args.repo,
        base_model=args.base_model,
        private=args.private,
        token=args.token,
        commit_message=args.message,
    )
    print(f"pushed {args.mask} to {args.repo}: {url}")
    return 0
