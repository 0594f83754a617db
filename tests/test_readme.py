"""The README's examples run as written.

Every ```python block runs, in order, in one namespace, in a fresh working directory, against a tiny
model; then every command of the ```bash blocks runs there, in order (they read what the Python
examples write: `tickets/r50`), but those `SKIPPED` says why not. The blocks name the reproduction's
files (`../shared/...` and `examples/sweep.yaml`); the `stand_ins` fixture replaces exactly those
strings with a tiny random BERT (with the positions a 128-token example needs), a small corpus, a
toy SST-2 and MRPC and a sweep spec of five runs, and nothing else: the model is the one variable
the README names for it (`M=` in the shell, `M = ` in Python). What a command's shown output says
("`ticketlab info masks/omp70` prints:") is compared with what it prints, line by line, where a
line does not depend on the model's size (the headers; not the per-matrix tables). Every
`ticketlab ...` line must also name a verb and flags the command line has, and parse when complete.
"""

from __future__ import annotations

import contextlib
import glob
import io
import random
import re
import shlex
from pathlib import Path

import pytest
import yaml
from transformers import BertForMaskedLM

from conftest import make_model, tiny_bert_config, write_tokenizer
from test_runner import write_sst2
from ticketlab.cli import build_parser, main
from ticketlab.methods.registry import load as registry
from ticketlab.models.arch import ARCHS

README = Path(__file__).resolve().parents[1] / "README.md"
WORDS = "the a cat dog bird man woman king queen runs sees likes eats good bad big small red blue .".split()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.M | re.S)


@pytest.fixture()
def stand_ins(tmp_path) -> dict[str, str]:
    model = tmp_path / "model"
    # bert-mini-ref's units (4 layers of 4 heads, FFN 4x hidden): a ticket's counts are the README's
    layout = dict(
        num_hidden_layers=4, num_attention_heads=4, intermediate_size=128, max_position_embeddings=130
    )
    make_model(BertForMaskedLM, tiny_bert_config(**layout), seed=0).save_pretrained(model)
    write_tokenizer(model)
    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(40)) + "\n")
    write_sst2(tmp_path / "glue", n_train=64, n_dev=16)
    write_mrpc(tmp_path / "glue", n=16)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "readme",
                "model": str(model),
                "corpus": {"train": str(corpus), "dev": str(corpus)},
                "tasks": {"sst2": {"data": str(tmp_path / "glue")}},
                "methods": ["full", "omp"],
                "sparsities": [0.5],
                "seeds": {"search": [0], "finetune": [0]},
                "finetune": {"steps": 2, "max_length": 16, "eval_every": 2},
                "pretrain_eval": {"max_blocks": 2},
            }
        )
    )
    return {
        '"../shared/models/bert-mini-ref"': repr(str(model)),
        '"../shared/data/wikitext-2/valid.txt"': repr(str(corpus)),
        '"../shared/data/wikitext-2/test.txt"': repr(str(corpus)),
        '"../shared/data/glue"': repr(str(tmp_path / "glue")),
        '"examples/sweep.yaml"': repr(str(spec)),
    }


def write_mrpc(root: Path, n: int) -> None:
    (root / "MRPC").mkdir(parents=True)
    rows = [
        f"{i % 2}\t{i}\t{i + 1}\tthe cat is {WORDS[i % 9]} .\tthe dog is {WORDS[i % 7]} ." for i in range(n)
    ]
    for split in ("train", "dev"):
        (root / "MRPC" / f"{split}.tsv").write_text(
            "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "\n".join(rows) + "\n"
        )


def examples() -> list[tuple[str, str]]:
    """The ```python and ```bash blocks, (language, code), in the README's order; a shell block whose
    first line says it reads what "the Python example below" writes runs after that example."""
    text = README.read_text(encoding="utf-8")
    found, waiting = [], []
    for language, code in re.findall(r"^```(python|bash)\n(.*?)^```", text, flags=re.M | re.S):
        if language == "bash" and "the Python example below" in code.split("\n", 1)[0]:
            waiting.append(code)
            continue
        found.append((language, code))
        if language == "python":
            found += [("bash", c) for c in waiting]
            waiting = []
    assert not waiting, "a shell block waits for a Python example that does not follow it"
    return found


@pytest.mark.slow
def test_examples_run_as_written(stand_ins, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    namespace: dict[str, object] = {"__name__": "readme"}
    env: dict[str, str] = {}
    printed: dict[str, str] = {}
    # the examples register a family and a search method of their own: not for the tests after this
    archs, methods = dict(ARCHS), dict(registry())
    python = [code for language, code in examples() if language == "python"]
    assert len(python) >= 3, "the README's Python examples were not found"
    assert any("register_method(" in b for b in python), "the README shows no method of one's own"
    try:
        for i, (language, code) in enumerate(examples()):
            if language == "python":
                run_python_block(code, i, namespace, stand_ins)
            else:
                printed.update(run_shell_block(code, env, stand_ins))
    finally:
        ARCHS.clear()
        ARCHS.update(archs)
        registry().clear()
        registry().update(methods)
    assert len(printed) >= 10, f"only {len(printed)} README commands ran"
    shown = shown_outputs()
    assert len(shown) >= 2, "the README's shown outputs were not found"
    for command, output in shown.items():
        assert command in printed, f"`{command}`: shown in the README, not run"
        check_shown(command, output, printed[command], stand_ins)


def run_python_block(code: str, i: int, namespace: dict[str, object], stand_ins: dict[str, str]) -> None:
    for name, stand_in in stand_ins.items():
        code = code.replace(name, stand_in)
    assert "../shared" not in code, f"block {i + 1} names a file the test has no stand-in for"
    # dont_inherit: run as a script would, not under this file's `from __future__ import annotations`
    compiled = compile(code, f"README.md block {i + 1} (python)", "exec", dont_inherit=True)
    exec(compiled, namespace)  # noqa: S102


# Commands of the README's shell blocks the test does not run (a fragment of the command -> why). A
# command added to the README runs unless it is listed here.
SKIPPED = {
    "make ": "sets up .venv, or runs this suite",
    "accelerate launch": "several processes: tests/test_distributed.py launches them",
    "python benchmarks/": "a benchmark: minutes, and timings are never tested",
    "ticketlab search ": "500-2,000 optimizer steps (tests/test_tamt.py, test_imp.py search tiny models)",
    "ticketlab evaluate-pretrain ": "reads the masks of the searches above",
    "ticketlab super ": "8 levels x 3 tickets per seed, each fine-tuned (tests/test_super.py)",
    "ticketlab report super/": "reads the super-ticket study above",
    "ticketlab mtl ": "reads the super tickets above (tests/test_mtl.py)",
    "ticketlab pretrain ": "a corpus of your own (books/, wiki-2015/) and minutes of training",
    "--launcher slurm": "needs Slurm (sbatch, srun)",
    "/shared/sweeps/": "the directory of the Slurm sweep above",
    "--jobs 4": "4 worker processes (tests/test_launchers.py)",
    "--run 3f2a9c0d1e4b5a69": "a run id of the reproduction's sweep, not of the stand-in's",
    " ...": "an elided command (its options left to the reader)",
}


def shell_commands(block: str) -> list[str]:
    """The commands of a bash block, in order: continuation lines joined, comments dropped."""
    lines = (line.split(" #")[0].strip() for line in block.replace("\\\n", " ").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run_shell_block(block: str, env: dict[str, str], stand_ins: dict[str, str]) -> dict[str, str]:
    """Run a shell example (`M=` set to the tiny model, the shared files to their stand-ins) with the
    command line's `main`; what each command printed, by its README text."""
    printed = {}
    for command in shell_commands(block):
        if any(fragment in command for fragment in SKIPPED):
            continue
        if m := re.fullmatch(r"(\w+)=(\S+)", command):  # `M=../shared/models/bert-mini-ref`
            env[m[1]] = stand_ins.get(f'"{m[2]}"', m[2]).strip("'")
            continue
        assert command.startswith("ticketlab "), f"`{command}`: not a ticketlab command (add it to SKIPPED)"
        line = command
        for name, stand_in in stand_ins.items():
            line = line.replace(name.strip('"'), stand_in.strip("'"))
        for name, value in env.items():
            line = line.replace(f"${name}", value)
        argv = [w for word in shlex.split(line)[1:] for w in (sorted(glob.glob(word)) or [word])]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(argv)
        assert code == 0, f"`{command}` exited {code}"
        printed[command] = out.getvalue()
    return printed


def shown_outputs() -> dict[str, str]:
    """What the README says a command prints: "`ticketlab ...` (...) prints:" and the block after it."""
    found = re.findall(
        r"`(ticketlab [^`]+)`[^`\n]*prints:\n\n```\n(.*?)^```",
        README.read_text(encoding="utf-8"),
        re.M | re.S,
    )
    return dict(found)


# The lines of `info` that do not depend on the model's size, by their label.
MODEL_FREE = ("mask:", "method:", "sparsity:", "pattern:", "units:", "level:")
BASE = re.compile(r"base model: (/\S+) \[bert\] sha256:[0-9a-f]{12}")


def check_shown(command: str, shown: str, printed: str, stand_ins: dict[str, str]) -> None:
    """Each model-free line the README shows is printed as shown; its `base model:` line has the form
    printed (an absolute path, the family, the hash)."""
    lines = printed.splitlines()
    for want in shown.splitlines():
        if want.startswith(MODEL_FREE):
            assert want in lines, f"`{command}`: the README shows {want!r}; it printed:\n{printed}"
        elif want.startswith("base model:"):
            got = next((g for g in lines if g.startswith("base model:")), "")
            assert BASE.fullmatch(want) and BASE.fullmatch(got), f"`{command}`: {want!r} vs {got!r}"
            model = stand_ins['"../shared/models/bert-mini-ref"'].strip("'")
            assert BASE.fullmatch(got)[1] == str(Path(model).resolve()), got


def _commands() -> list[str]:
    """Every `ticketlab ...` command of the bash blocks, continuation lines joined, comments dropped."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if "ticketlab " in line and not line.startswith("#"):
                found.append(line[line.index("ticketlab ") :])
    return found


def test_bash_examples_use_verbs_and_flags_that_exist():
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    commands = _commands()
    assert len(commands) > 20, "the README's commands were not found"
    for command in commands:
        words = shlex.split(command.replace("$M", "model"))[1:]
        sub = verbs.get(words[0])
        assert sub is not None, f"{command}: no verb {words[0]!r}"
        if words[0] == "search":
            sub = next(a for a in sub._actions if a.dest == "method").choices[words[1]]
        flags = {s for a in sub._actions for s in a.option_strings}
        unknown = [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in flags]
        assert not unknown, f"{command}: unknown flags {unknown}"
        if "..." not in words:
            try:
                parser.parse_args(words)
            except SystemExit:
                pytest.fail(f"{command}: does not parse")
