r"""Pre-train a small BERT from scratch with masked-LM on your corpus (what `ticketlab demo` does first).

Sizes follow the BERT miniatures (Turc et al. 2019): tiny L2/H128, mini L4/H256, small L4/H512,
medium L8/H512, base L12/H768; --hidden/--layers/--heads/--intermediate override them. A corpus is
text files, folders of them (their *.txt files), a token file or a saved `datasets` dir. Give either
a tokenizer directory or --build-tokenizer [wordpiece|word] (WordPiece trained on the corpus, the
default, or its most frequent words), and either --steps or --time-budget. Blocks are packed to the
full --max-length; 15% of the tokens are masked (80/10/10) afresh in every epoch. On a GPU, bf16
autocast and the fused AdamW are on by default; --compile adds torch.compile. The output is a
standard Hugging Face checkpoint (BertForMaskedLM + tokenizer) with pretrain.json (dev MLM loss vs
the unigram baseline). Dev MLM loss, accuracy and tokens/s are printed at each evaluation and
logged. An interrupted run resumes from its last checkpoint when the same command is run again;
--max-minutes stops a piece cleanly (checkpointed) so a long run goes on in pieces. --write-tokens
tokenizes the corpus (and --dev) into --out as token files with the tokenizer, for a machine that
gets only the working tree.

--init MODEL (a local directory, or a hub id as in the last example: online) continues MLM
pre-training of an existing checkpoint instead (any supported family;
all its parameters train; its tokenizer and shape are kept; a checkpoint without an MLM head, such
as a sentence encoder, gets a fresh one, said in one line): do this before searching tickets on a
new domain. --save-dtype float16 halves the written file.

Examples:
  ticketlab pretrain --corpus books/ --build-tokenizer --config-size mini --time-budget 600 --out my-bert
  ticketlab pretrain --corpus train.txt --dev dev.txt --tokenizer tok/ --steps 2000 --max-length 64 --out m
  ticketlab pretrain --corpus wiki-2015/ --dev valid.txt --build-tokenizer --vocab-size 16384 \
      --write-tokens --out tokens/wiki
  ticketlab pretrain --corpus tokens/wiki/corpus.tokens.safetensors --dev tokens/wiki/dev.tokens.safetensors \
      --tokenizer tokens/wiki --config-size mini --steps 20000 --max-minutes 9 --out models/wiki-mini
  ticketlab pretrain --init sentence-transformers/all-MiniLM-L6-v2 --corpus wiki-2015/wiki-00.txt \
      --dev wikitext-2/test.txt --steps 3000 --lr 2e-4 --max-minutes 60 --save-dtype float16 --out minilm-mlm
"""

from __future__ import annotations

import argparse

import ticketlab as tl

from ..core.errors import ConfigError
from ..core.files.caches import CORPUS_CACHE_HELP
from ..core.files.keys import CORPUS_PATHS
from ..data.tokenizer_kinds import DEFAULT_KIND, KINDS
from ..lm.pretrain_config import PretrainConfig
from .common import add_config_arguments, add_deprecated_alias, config_from_args, int_value

# The `PretrainConfig` options (--fused / --no-fused by hand: two flags for one field).
SHAPE = ("size", "hidden", "layers", "heads", "intermediate", "max_length", "positions")
TRAINING = (
    *("batch_size", "lr", "warmup_steps", "dropout", "eval_every", "seed", "max_grad_norm"),
    *("mixed_precision", "corpus_tokens"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help=CORPUS_PATHS)
    p.add_argument(
        "--dev", nargs="+", metavar="PATH", help="dev text (default: the tail of each corpus file)"
    )
    p.add_argument(
        "--init",
        dest="init_model",  # an input checked by its name (`cli.INPUTS`); TAMT's --init is a method
        metavar="MODEL",
        help="continue MLM pre-training of this checkpoint (directory or hub id; its tokenizer unless "
        "--tokenizer; a fresh MLM head when it has none) instead of starting from scratch",
    )
    tok = p.add_mutually_exclusive_group()  # one of them, or --init
    tok.add_argument("--tokenizer", metavar="DIR", help="an existing tokenizer (e.g. a model directory)")
    tok.add_argument(
        "--build-tokenizer",
        nargs="?",
        const=DEFAULT_KIND,
        choices=KINDS,
        help="train a tokenizer on the corpus: wordpiece (default) or word (its most frequent words)",
    )
    p.add_argument("--vocab-size", type=int_value, default=8192, help="with --build-tokenizer (default 8192)")
    add_config_arguments(p, PretrainConfig, SHAPE)
    budget = p.add_mutually_exclusive_group()  # one of them, unless --write-tokens
    add_config_arguments(budget, PretrainConfig, ["steps", "time_budget"])
    add_config_arguments(p, PretrainConfig, TRAINING)
    add_deprecated_alias(p, "--precision", "--mixed-precision")  # the name every other verb uses
    fused = p.add_mutually_exclusive_group()
    fused.add_argument("--fused", dest="fused", action="store_true", default=None, help="fused AdamW")
    fused.add_argument("--no-fused", dest="fused", action="store_false", help="(default: fused on a GPU)")
    add_config_arguments(p, PretrainConfig, ["compile", "max_minutes", "save_dtype", "progress"])
    p.add_argument(
        "--write-tokens",
        action="store_true",
        help="only tokenize --corpus (and --dev) into --out as token files with the tokenizer",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=CORPUS_CACHE_HELP,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output model directory")


def run(args: argparse.Namespace) -> int:
    if args.init_model is not None and args.build_tokenizer:
        raise ConfigError("--init brings its own tokenizer: drop --build-tokenizer")
    if args.init_model is None and not args.tokenizer and not args.build_tokenizer:
        raise ConfigError("give --tokenizer DIR, --build-tokenizer or --init MODEL")
    if args.write_tokens:
        return _write_tokens(args)
    fields = [
        *SHAPE,
        "steps",
        "time_budget",
        *TRAINING,
        "fused",
        "compile",
        "max_minutes",
        "save_dtype",
        "progress",
    ]
    config = config_from_args(PretrainConfig, args, fields, max_grad_norm=args.max_grad_norm or None)
    result = tl.pretrain(
        config,
        args.corpus,
        args.out,
        tokenizer=args.tokenizer,  # None with --build-tokenizer
        vocab_size=args.vocab_size,
        dev=args.dev,
        cache_dir=args.cache_dir,
        tokenizer_kind=args.build_tokenizer or DEFAULT_KIND,
        init=args.init_model,
    )
    print(("already trained: " if result.cached else "") + result.summary())
    if not result.stopped:
        print(f"model -> {args.out}")
    return 0


def _write_tokens(args: argparse.Namespace) -> int:
    info = tl.write_tokens(
        args.corpus,
        args.out,
        tokenizer=args.tokenizer or args.init_model,
        tokenizer_kind=args.build_tokenizer or DEFAULT_KIND,
        vocab_size=args.vocab_size,
        max_length=args.max_length,
        dev=args.dev,
        cache_dir=args.cache_dir,
    )
    for name in ("corpus", "dev"):
        if name in info:
            print(f"{name}: {info[name]['tokens']:,} tokens of {info[name]['sources']} sources")
    print(f"token files and tokenizer -> {args.out}")
    return 0
