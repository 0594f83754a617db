"""What the training loop reports as it goes: the losses, tokens and time it accumulates between two
log lines or over one piece (`Window`: the throughput in tokens per second), and the one console line
of each dev evaluation (`eval_line`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def eval_line(desc: str, record: dict[str, Any], max_steps: int, tokens_per_s: float | None = None) -> str:
    """One short line per dev evaluation: `search tamt step 50/300 dev: mlm_loss 6.712, kd_loss 0.0612`
    (and the training throughput so far, e.g. `; 51,200 tokens/s`)."""
    shown = [f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)]  # not step, counts
    speed = f"; {tokens_per_s:,.0f} tokens/s" if tokens_per_s else ""
    return f"{desc} step {record['step']}/{max_steps} dev: {', '.join(shown[:4])}{speed}"


@dataclass
class Window:
    """What the loop accumulates between two log lines (losses per key) or over one piece (tokens,
    time: the console's throughput)."""

    values: dict[str, list[float]] = field(default_factory=dict)
    tokens: int = 0
    time: float = 0.0

    def add(self, tokens: int, took: float) -> None:
        self.tokens, self.time = self.tokens + tokens, self.time + took

    def tokens_per_s(self) -> float | None:
        return self.tokens / self.time if self.time > 0 else None

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of it, so that a resumed run's next log line averages the steps
        an uninterrupted run's does."""
        values = {k: list(v) for k, v in self.values.items()}
        return {"values": values, "tokens": self.tokens, "time": self.time}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Window:
        """The window a checkpoint kept (checked by `checkpoint.check_loop_checkpoint`); empty if none."""
        if state is None:
            return cls()
        return cls({k: list(v) for k, v in state["values"].items()}, state["tokens"], state["time"])
