"""The type checks on a sweep spec's raw YAML (`load_spec`'s reader): each value of the type its key
takes, every refusal one `ConfigError` naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.checks import SEED_RANGE, Range, is_int, is_number
from ...core.errors import ConfigError, TicketlabError, did_you_mean
from ...core.files.inputs import read_bytes
from ...core.outputs import safe_component
from ...models.source import path_hint
from ...tasks.registry import get_task


class Reader:
    """Type checks on the raw YAML with errors that name the file and the key."""

    def __init__(self, source: str, base_dir: Path):
        self.source, self.base_dir = source, base_dir

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {msg}")

    def mapping(self, v: Any, key: str, allowed=None) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(key, f"expected a mapping, got {type(v).__name__}")
        for k in v:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if allowed is not None and k not in allowed:
                raise self.fail(f"{key}.{k}" if key else k, f"unknown key{did_you_mean(k, allowed)}")
        return dict(v)

    def listing(self, v: Any, key: str) -> list:
        if v is None:
            return []
        return list(v) if isinstance(v, (list, tuple)) else [v]

    def sparsity(self, v: Any, key: str) -> float:
        if isinstance(v, str) and v.strip().endswith("%"):
            try:
                v = float(v.strip()[:-1]) / 100
            except ValueError:
                raise self.fail(key, f"not a number: {v!r}") from None
        if not is_number(v):
            raise self.fail(key, f"{v!r} is not a number")
        return round(float(v), 6)

    def ints(self, v: Any, key: str, bound: Range | None = None) -> list[int]:
        out = self.listing(v, key)
        for x in out:
            if not is_int(x):
                raise self.fail(key, f"{x!r} is not an integer")
            if bound is not None and not bound.holds(x):
                raise self.fail(key, f"{x} is out of range: must be {bound}")
        return out

    def seeds(self, v: Any, key: str) -> list[int]:
        return self.ints(v, key, SEED_RANGE)

    def finetune_seeds(self, v: Any, key: str) -> list[int] | int:
        """A list of seeds (pinned: every mask fine-tuned with each) or a number of them (drawn per
        mask: no seed serves two masks; `sweep_spec.mask_seeds`)."""
        if is_int(v):
            return v  # its range is checked with the spec's (`SweepSpec._check_seeds`)
        return self.seeds(v, key)

    def task(self, task: str, data: str | None, key: str) -> None:
        """The task must be known: built in, registered in code, or described by a task.json in its data."""
        try:
            get_task(task, data)
        except TicketlabError as e:
            raise self.fail(key, str(e)) from None

    def path(self, v: Any, key: str, *, hub_ok: bool = False) -> str:
        """A path relative to the spec's directory, made absolute; with `hub_ok`, a hub id passes."""
        if not isinstance(v, str) or not v:
            raise self.fail(key, f"expected a path, got {v!r}")
        p = Path(v).expanduser()
        p = p if p.is_absolute() else self.base_dir / p
        if p.exists():
            return str(p.resolve())
        if hub_ok and not v.startswith((".", "/", "~")) and v.count("/") <= 1:
            return v  # a hub id (needs network at run time)
        raise self.fail(key, f"{v}: not found (looked for {p}{path_hint(p, files=key != 'model')})")

    def name(self, raw: Any) -> str:
        """`name:` (default: the file's stem): one path component, the default sweep folder's."""
        if raw is None or raw == "":
            return Path(self.source).stem
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):  # `name: 2024` is a name
            raise self.fail("name", f"expected a string, got {raw!r}")
        return safe_component(str(raw), f"{self.source}: name", ConfigError)

    def output(self, raw: Any) -> str | None:
        """`output:`, the default sweep directory, relative to the spec's folder (made absolute)."""
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise self.fail("output", f"expected a path, got {raw!r}")
        return str((self.base_dir / Path(raw).expanduser()).resolve())

    def recipe(self, raw: Any) -> str:
        """A `recipes:` entry: a Python file that compiles, checked now, not once every run is done."""
        path = self.path(raw, "recipes")
        if not path.endswith(".py") or not Path(path).is_file():
            raise self.fail(
                "recipes", f"{path}: a report recipe is a Python file (.py) that defines ANALYSIS"
            )
        try:  # its bytes, as the import reads them (a BOM, a coding line)
            compile(read_bytes(Path(path), "report recipe", ConfigError), path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:  # ValueError: a null byte
            where = f", line {e.lineno}" if getattr(e, "lineno", None) else ""
            raise self.fail("recipes", f"{path}{where}: not valid Python ({getattr(e, 'msg', e)})") from None
        return path
