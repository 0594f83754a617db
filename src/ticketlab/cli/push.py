"""Upload a mask directory to the Hugging Face hub, beside the model it was found on.

The mask is read first (a corrupt one never leaves); the repo is created if needed. Others then pass
`--mask org/repo/sub/folder` to any verb. Needs network and a token (`huggingface-cli login` or
--token / $HF_TOKEN).

Example:
  ticketlab push masks/omp70 me/bert-tickets/omp70 --private
"""

from __future__ import annotations

import argparse

import ticketlab as tl


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mask", metavar="MASK_DIR")
    p.add_argument("repo", metavar="REPO", help="org/repo, or org/repo/sub/folder; @revision for a branch")
    p.add_argument("--private", action="store_true", help="create the repo private (if it is new)")
    p.add_argument("--token", help="hub token (default: the saved login or $HF_TOKEN)")
    p.add_argument("--message", help="commit message (default: the mask's method and sparsity)")


def run(args: argparse.Namespace) -> int:
    url = tl.push_mask(
        args.mask, args.repo, private=args.private, token=args.token, commit_message=args.message
    )
    print(f"pushed {args.mask} to {args.repo}: {url}")
    return 0
