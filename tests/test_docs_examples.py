"""The examples of the README and of the documentation site run as written.

The pages are read in the site's order: README.md, then the pages of mkdocs.yml's nav (the study
records under docs/results and the generated command-line reference have no examples). Every
```python block runs, in order, in one namespace, and every command of the ```bash blocks runs with
the command line's `main`, in one working directory that holds what the repository ships, made
tiny: `models/minilm-mlm` is a tiny random BERT of its layout (6 layers of 12 heads) and
`examples/synthetic-sweep.yaml` is the shipped spec with budgets of a few steps. Nothing in the
examples is replaced: they make their data themselves (the tutorial writes the synthetic language
into `data/`), and the pages after the tutorial read what it wrote. A command runs unless
`skip_reason` names why not (long searches, several processes, Slurm, a command reading what a
skipped one writes). What a command's shown output says ("`ticketlab info masks/omp70` prints:") is
compared with what it prints, line by line, where a line does not depend on the model's size (the
headers; not the per-matrix tables). Every `ticketlab ...` line must also name a verb and flags the
command line has, and parse when complete.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from transformers import BertForMaskedLM

from conftest import make_model, tiny_bert_config, write_tokenizer
from ticketlab.cli import build_parser, main
from ticketlab.methods.registry import load as registry
from ticketlab.models.arch import ARCHS

ROOT = Path(__file__).resolve().parents[1]
MODEL = "models/minilm-mlm"
SWEEP = "examples/synthetic-sweep.yaml"


def pages() -> list[Path]:
    """README.md and the site's pages with examples, in the site's order."""

    def walk(items) -> list[str]:
        found = []
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            found += walk(value) if isinstance(value, list) else [value]
        return found

    nav = walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"])
    generated = ("results/", "reference/cli/", "reference/configs.md")  # records, and pages of the hooks
    site = [ROOT / "docs" / p for p in nav if not p.startswith(generated)]
    return [ROOT / "README.md", *site]


def examples(page: Path) -> list[tuple[str, str]]:
    """A page's ```python and ```bash blocks, (language, code), in its order; a shell block whose
    first line says it reads what "the Python example below" writes runs after that example."""
    text = page.read_text(encoding="utf-8")
    found, waiting = [], []
    for language, code in re.findall(r"^```(python|bash)\n(.*?)^```", text, flags=re.M | re.S):
        if language == "bash" and "the Python example below" in code.split("\n", 1)[0]:
            waiting.append(code)
            continue
        found.append((language, code))
        if language == "python":
            found += [("bash", c) for c in waiting]
            waiting = []
    assert not waiting, f"{page.name}: a shell block waits for a Python example that does not follow it"
    return found


def make_tiny_repository(work: Path) -> None:
    """What the examples read from the repository, tiny: the model and the synthetic sweep's spec (and
    the recipes it names)."""
    model = work / MODEL
    # minilm-mlm's units (6 layers of 12 heads, FFN 4x hidden), 130 positions for 128-token examples
    layout = dict(
        hidden_size=24,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=96,
        max_position_embeddings=130,
    )
    make_model(BertForMaskedLM, tiny_bert_config(**layout), seed=0).save_pretrained(model)
    write_tokenizer(model)
    spec = yaml.safe_load((ROOT / SWEEP).read_text(encoding="utf-8"))
    spec["search"] = {**spec.get("search", {}), "steps": 4, "max_length": 32, "dev_blocks": 2}
    spec["finetune"] = {**spec.get("finetune", {}), "steps": 2, "max_length": 16, "eval_every": 2}
    spec["pretrain_eval"] = {"max_blocks": 2}
    spec["seeds"] = {"search": [0], "finetune": [0]}
    (work / "examples").mkdir()
    (work / SWEEP).write_text(yaml.safe_dump(spec))
    for recipe in spec.get("recipes") or []:  # the report's recipes, where the spec names them
        (work / "examples" / recipe).parent.mkdir(parents=True, exist_ok=True)
        (work / "examples" / recipe).write_bytes((ROOT / "examples" / recipe).read_bytes())


@pytest.mark.slow
def test_examples_run_as_written(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    make_tiny_repository(work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    namespace: dict[str, object] = {"__name__": "docs"}
    env: dict[str, str] = {}
    printed: dict[str, str] = {}
    skipped_outputs: list[str] = []
    # the examples register a family and a method of their own: not for the tests after this (the
    # task they register is forgotten by conftest's fixture, as every test's)
    archs, methods = dict(ARCHS), dict(registry())
    try:
        for page in pages():
            for i, (language, code) in enumerate(examples(page)):
                if language == "python":
                    run_python_block(code, f"{page.relative_to(ROOT)} block {i + 1}", namespace)
                else:
                    printed.update(run_shell_block(code, env, skipped_outputs))
    finally:
        ARCHS.clear()
        ARCHS.update(archs)
        registry().clear()
        registry().update(methods)
    assert len(printed) >= 20, f"only {len(printed)} commands of the pages ran"
    shown = shown_outputs()
    assert len({command for command, _ in shown}) >= 2, "the pages' shown outputs were not found"
    for command, output in shown:
        assert command in printed, f"`{command}`: its output is shown, but it did not run"
        check_shown(command, output, printed[command], work)


def test_the_pages_have_examples():
    """The site's pages are found, and the tutorial's examples are among them."""
    found = {p.relative_to(ROOT).as_posix(): len(examples(p)) for p in pages()}
    assert found["docs/tutorials/first-ticket.md"] >= 8, found
    python = [c for p in pages() for lang, c in examples(p) if lang == "python"]
    assert any("register_method(" in b for b in python), "the pages show no method of one's own"
    assert sum(found.values()) > 40, found


def run_python_block(code: str, where: str, namespace: dict[str, object]) -> None:
    # dont_inherit: run as a script would, not under this file's `from __future__ import annotations`
    compiled = compile(code, f"{where} (python)", "exec", dont_inherit=True)
    exec(compiled, namespace)  # noqa: S102


# Commands of the pages' shell blocks the test does not run (a fragment of the command -> why). A
# command added to a page runs unless it is listed here or `skip_reason` says why.
SKIPPED = {
    "make ": "sets up .venv, or runs this suite",
    "pip install": "installs packages",
    "accelerate launch": "several processes: tests/test_distributed.py launches them",
    "python benchmarks/": "a benchmark: minutes, and timings are never tested",
    "ticketlab super ": "8 levels x 3 tickets per seed, each fine-tuned (tests/test_super.py)",
    "--launcher slurm": "needs Slurm (sbatch, srun)",
    "$SCRATCH": "the directory of the Slurm sweep above",
    "--jobs 4": "4 worker processes (tests/test_launchers.py)",
    "--run 3f2a9c0d1e4b5a69": "a run id of a sweep of the paper's size, not of the tiny one",
    " ...": "an elided command (its options left to the reader)",
    "--model google-bert/": "a model by its hub id: the network (test_hub_offline.py covers the cache)",
    "--model models/bert-base-uncased": "a local copy of BERT-base, which the tests do not have",
}
# Searches and pre-training longer than this many steps are not run (tests/test_tamt.py,
# test_imp.py and test_pretrain.py cover them on tiny models), nor fine-tunings without --max-steps;
# the tutorial's are shorter.
MAX_STEPS = 50


def skip_reason(command: str, skipped_outputs: list[str]) -> str | None:
    """Why a command of a page is not run, or None: it runs."""
    if reason := next((why for fragment, why in SKIPPED.items() if fragment in command), None):
        return reason
    words = command.split()
    if any(w.startswith(out) for w in words for out in skipped_outputs):
        return "reads what a command not run writes"
    if words[1] in ("search", "pretrain"):
        steps = re.search(r"--steps (\d+)", command)
        if steps is None or int(steps[1]) > MAX_STEPS:
            return f"longer than {MAX_STEPS} steps"
    if words[1] == "finetune" and "--max-steps" not in words:
        return "the task's whole schedule (tests/test_finetune.py fine-tunes tiny models)"
    return None


def shell_commands(block: str) -> list[str]:
    """The commands of a bash block, in order: continuation lines joined, comments dropped."""
    lines = (line.split(" #")[0].strip() for line in block.replace("\\\n", " ").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run_shell_block(block: str, env: dict[str, str], skipped_outputs: list[str]) -> dict[str, str]:
    """Run a shell example (`M=...` sets a variable) with the command line's `main`, and a
    `python -c CODE` line as Python; what each command printed, by its text on the page."""
    printed = {}
    for command in shell_commands(block):
        if m := re.fullmatch(r"(\w+)=(\S+)", command):  # `M=models/minilm-mlm`
            env[m[1]] = m[2]
            continue
        line = command
        for name, value in env.items():
            line = line.replace(f"${name}", value)
        if skip_reason(line, skipped_outputs):
            if out := re.search(r"--out (\S+)", line):
                skipped_outputs.append(out[1])
            continue
        if line.startswith("python -c "):  # the tutorial's data step: its code, in a namespace of its own
            run_python_block(shlex.split(line)[2], f"`{command}`", {"__name__": "__main__"})
            printed[command] = ""
            continue
        assert line.startswith("ticketlab "), f"`{command}`: not a ticketlab command (add it to SKIPPED)"
        argv = [w for word in shlex.split(line)[1:] for w in (sorted(glob.glob(word)) or [word])]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(argv)
        assert code == 0, f"`{command}` exited {code}"
        printed[command] = out.getvalue()
    return printed


def shown_outputs() -> list[tuple[str, str]]:
    """What the pages say a command prints, (command, output): "`ticketlab ...` (...) prints:" and the
    block after it (a command may be shown on several pages)."""
    found = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        found += re.findall(r"`(ticketlab [^`]+)`[^`\n]*prints:\n\n```\n(.*?)^```", text, re.M | re.S)
    return found


# The lines of `info` that do not depend on the model's size, by their label.
MODEL_FREE = ("mask:", "method:", "sparsity:", "pattern:", "units:", "level:")
BASE = re.compile(r"base model: (/\S+) \[bert\]")
HASH = re.compile(r"hash: +sha256:[0-9a-f]{12} \(of the weights the mask prunes; other targets hash others\)")


def check_shown(command: str, shown: str, printed: str, work: Path) -> None:
    """Each model-free line a page shows is printed as shown; its `base model:` and `hash:` lines have
    the form printed (an absolute path and the family; the hash and what it covers)."""
    lines = printed.splitlines()
    for want in shown.splitlines():
        if want.startswith(MODEL_FREE):
            assert want in lines, f"`{command}`: the page shows {want!r}; it printed:\n{printed}"
        elif want.startswith("base model:"):
            got = next((g for g in lines if g.startswith("base model:")), "")
            assert BASE.fullmatch(want) and BASE.fullmatch(got), f"`{command}`: {want!r} vs {got!r}"
            assert BASE.fullmatch(got)[1] == str((work / MODEL).resolve()), got
        elif want.startswith("hash:"):
            got = next((g for g in lines if g.startswith("hash:")), "")
            assert HASH.fullmatch(want) and HASH.fullmatch(got), f"`{command}`: {want!r} vs {got!r}"


def _commands() -> list[str]:
    """Every `ticketlab ...` command of the pages' bash blocks, continuation lines joined, comments
    dropped."""
    found = []
    for page in pages():
        for language, block in examples(page):
            if language == "bash":
                found += [c[c.index("ticketlab ") :] for c in shell_commands(block) if "ticketlab " in c]
    return found


def test_bash_examples_use_verbs_and_flags_that_exist():
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    commands = _commands()
    assert len(commands) > 40, "the pages' commands were not found"
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


def test_shipped_sweep_spec_names_what_ships():
    """The synthetic sweep's spec names the shipped model and the tutorial's data, relative to it."""
    spec = yaml.safe_load((ROOT / SWEEP).read_text(encoding="utf-8"))
    assert (ROOT / "examples" / spec["model"]).resolve() == (ROOT / MODEL).resolve()
    for path in [*spec["corpus"].values(), *(t["data"] for t in spec["tasks"].values())]:
        assert (ROOT / "examples" / path).resolve().is_relative_to(ROOT / "data"), path


def test_data_examples_parse():
    """The pages' ```json and ```yaml blocks (a task.json, a sweep spec's part) are what they say."""
    found = 0
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for language, block in re.findall(r"^```(json|yaml)\n(.*?)^```", text, flags=re.M | re.S):
            parsed = json.loads(block) if language == "json" else yaml.safe_load(block)
            assert isinstance(parsed, dict), f"{page.name}: a {language} block is no mapping"
            found += 1
    assert found >= 2
