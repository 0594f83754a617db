"""Start-up time of the CLI: `ticketlab --help`, every verb's `--help`, `ticketlab info MASK` and the
refusal of a mistyped path (`refuse: ...`, exit 2) against `import torch` alone.

    python benchmarks/bench_startup.py                 # 5 interleaved rounds, median and minimum
    python benchmarks/bench_startup.py --reps 9 --mask masks/omp70
    python benchmarks/bench_startup.py --importtime    # also: the slowest imports of each command
    python benchmarks/bench_startup.py --only "prune omp --help" "finetune --help"

Every command runs in a fresh interpreter (`sys.executable`, so the same environment and PYTHONPATH),
interleaved round by round, so a busy machine slows all of them alike; `import torch` alone is the
reference a command that touches tensors cannot beat. On a shared machine the minimum is the steadier
estimate (contention only ever adds time). Without --mask, a tiny random BERT is pruned once into a
temporary directory (not timed) to give `info` a mask to read.
Targets: `--help` well under 1 s, `info` under 2 s on an idle machine; every verb's `--help`
under 0.5 s (a verb imports torch and transformers when it runs, not when its options are parsed),
and a mistyped model, mask, spec or study directory refused as fast (checked before those imports).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = "import sys; from ticketlab.cli import main; sys.exit(main())"


def verb_helps() -> list[list[str]]:
    """`VERB --help` for every verb; `search METHOD --help` for each registered search method and
    `prune omp --help` (a verb with sub-commands parses its options only below them)."""
    from ticketlab.cli import verbs

    out = []
    for name in verbs():
        sub = {"prune": ["omp"], "search": ["tamt", "imp"]}.get(name, [None])
        out += [[name, *([s] if s else []), "--help"] for s in sub]
    return out


def commands(mask: str) -> dict[str, list[str]]:
    py = [sys.executable, "-c"]
    return {
        "import torch": [*py, "import torch"],
        "import ticketlab": [*py, "import ticketlab"],
        "ticketlab --help": [*py, CLI, "--help"],
        **{" ".join(argv): [*py, CLI, *argv] for argv in verb_helps()},
        "ticketlab info MASK": [*py, CLI, "info", mask],
        **{f"refuse: {line}": [*py, CLI, *line.split()] for line in REFUSALS},
    }


# A mistyped path per kind of input (none of them exists): each verb refuses it with exit 2.
REFUSALS = (
    "sweep ./nowhere/spec.yaml --out ./nowhere/sweep",
    "report ./nowhere/sweep",
    "finetune --model ./nowhere/model --task sst2 --out ./nowhere/run",
    "info ./nowhere/mask",
    "importance ./nowhere/study --out ./nowhere/out",
)


def tiny_mask(root: Path) -> str:
    """A 50% random mask of a tiny BERT, made with the CLI itself (set-up, not timed)."""
    from transformers import BertConfig, BertForMaskedLM

    from ticketlab.cli import main

    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertForMaskedLM(config).save_pretrained(root / "model")
    argv = ["prune", "random", "--model", str(root / "model"), "--sparsity", "0.5"]
    if main([*argv, "--out", str(root / "mask")]) != 0:
        raise SystemExit("could not make the tiny mask")
    return str(root / "mask")


def wall(argv: list[str], expected: int = 0) -> float:
    """Seconds of one run, which must exit with `expected` (2 for a refusal)."""
    start = time.perf_counter()
    code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    elapsed = time.perf_counter() - start
    if code != expected:
        raise SystemExit(f"{' '.join(argv[3:])}: exit {code}, not {expected}")
    return elapsed


def slowest_imports(argv: list[str], top: int) -> list[tuple[float, str]]:
    """The `top` top-level packages (torch, transformers, ...) with the largest cumulative import time
    under `python -X importtime`."""
    out = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, check=True
    ).stderr
    rows = []
    for line in out.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if m and "." not in m.group(2):
            rows.append((int(m.group(1)) / 1e6, m.group(2)))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--mask", help="a mask directory for `info` (default: a tiny one, made once)")
    parser.add_argument("--importtime", action="store_true", help="print each command's slowest imports")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="time only these rows (their names)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        needs_mask = not args.only or "ticketlab info MASK" in args.only
        cmds = commands(args.mask or (tiny_mask(Path(tmp)) if needs_mask else "MASK"))
        cmds = {k: v for k, v in cmds.items() if not args.only or k in args.only}
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.reps):
            for name, argv in cmds.items():
                times[name].append(wall(argv, 2 if name.startswith("refuse: ") else 0))
        print(f"{'command':<40} {'median s':>9} {'min s':>7}   ({args.reps} interleaved runs)")
        for name, ts in times.items():
            print(f"{name[:40]:<40} {statistics.median(ts):>9.2f} {min(ts):>7.2f}")
        if args.importtime:
            for name, argv in cmds.items():
                print(f"\n{name}: slowest imports (cumulative s)")
                for secs, module in slowest_imports(argv, 8):
                    print(f"  {secs:6.2f}  {module}")


if __name__ == "__main__":
    main()
