"""The package as a user installs it: the wheel built from this checkout, installed into a clean
virtual environment, runs `ticketlab --help` and a verb on a tiny model, imported from that
environment (not from the checkout), and carries its licence and its short description.

The wheel goes in with --no-deps: its heavy dependencies (torch, transformers) come from this
interpreter's site-packages through a .pth file of the clean environment, offline and without
reinstalling them. Only a site directory's own .pth files are read, so this environment's
editable install of ticketlab (a .pth in its site-packages) is not seen there."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "LICENSE", "PYPI.md", "src")  # what a wheel is built from


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the checkout's build inputs (the checkout gets no build/ or egg-info)."""
    src = tmp_path / "source"
    src.mkdir()
    for name in BUILD_INPUTS:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(
            ROOT / name,
            src / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if name == "src" else {}),
        )
    dist = tmp_path / "dist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        dist,
        src,
        cwd=src,
    )
    (wheel,) = dist.glob("ticketlab-*.whl")
    return wheel


def _clean_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed and this interpreter's packages visible."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    )
    (site / "dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.mark.slow  # builds a wheel and a virtual environment, then imports torch in two fresh Pythons
def test_the_wheel_installs_into_a_clean_venv_and_runs_a_verb(tmp_path, tiny_bert_dir):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(f"{info}/METADATA").decode())
    assert f"{info}/licenses/LICENSE" in names
    assert meta["License-Expression"] == "Apache-2.0" and meta["Author"] == "ticketlab developers"
    assert (
        meta.get_payload().startswith("# ticketlab") and "](" not in meta.get_payload()
    )  # no relative links
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("submitit") and 'extra == "slurm"' in r for r in requires)  # an extra, not core
    assert not any(n.startswith("tests/") for n in names)

    venv = _clean_venv(tmp_path, wheel)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the checkout's src/ stays out
    where = _run(
        venv / "bin" / "python", "-c", "import ticketlab; print(ticketlab.__file__)", cwd=tmp_path, env=env
    )
    assert Path(where.strip()).is_relative_to(venv)
    assert "prune" in _run(venv / "bin" / "ticketlab", "--help", cwd=tmp_path, env=env)
    out = tmp_path / "omp50"
    args = ("prune", "omp", "--model", tiny_bert_dir, "--sparsity", "0.5", "--out", out)
    _run(venv / "bin" / "ticketlab", *args, cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"})
    assert "sparsity" in _run(venv / "bin" / "ticketlab", "info", out, cwd=tmp_path, env=env)
