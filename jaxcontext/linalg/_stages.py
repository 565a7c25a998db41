"""Stage timing of a solve (``svds(..., profile=True)``): where the time goes.

A profiled solve runs each stage of its method (products, orthonormalisation, Rayleigh-Ritz,
restarts, probes, certificate) as its own compiled call and waits for it, so each stage's wall
time is measured apart. The first call of each distinct (stage, function, shapes) is run once
untimed beforehand (compilation), on copies of donated arguments. The stages then add up to the
work of the solve without its compile time; the fused solve (one ``jit``) is usually somewhat
faster than the sum, since XLA overlaps and fuses across stage boundaries and no host round trip
separates them.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np


def _signature(args: tuple, kw: dict) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten((args, kw))
    sig = []
    for x in leaves:
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            sig.append((tuple(x.shape), str(x.dtype)))
        else:
            sig.append((type(x).__name__, x if isinstance(x, (int, float, str, bool)) else None))
    return str(tree), tuple(sig)


def _copy(x: Any) -> Any:
    return x.copy() if isinstance(x, jax.Array) else x


class StageTimer:
    """Accumulates wall time and calls per stage name (see the module docstring).

    Attributes:
        seconds: stage -> summed wall time of its timed calls.
        calls: stage -> number of calls.
        warmup_s: time spent in the untimed first calls (compilation and one run).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.warmup_s = 0.0
        self._seen: set = set()

    def run(self, stage: str, fn, *args, donate: bool = False, **kw):
        """``fn(*args, **kw)``, waited for and timed under ``stage``.

        ``donate``: ``fn`` donates its array arguments; the untimed first call then runs on
        copies.
        """
        out, seconds = self.timed(stage, fn, *args, donate=donate, **kw)
        self.add(stage, seconds)
        return out

    def timed(self, stage: str, fn, *args, donate: bool = False, **kw):
        """``(fn(*args, **kw), seconds)`` as :meth:`run`, without recording the time."""
        key = (stage, id(fn), _signature(args, kw))
        if key not in self._seen:
            self._seen.add(key)
            t0 = time.perf_counter()
            warm = jax.tree_util.tree_map(_copy, (args, kw)) if donate else (args, kw)
            jax.block_until_ready(fn(*warm[0], **warm[1]))
            self.warmup_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kw))
        return out, time.perf_counter() - t0

    def add(self, stage: str, seconds: float, calls: int = 1) -> None:
        """Record ``seconds`` (and ``calls``) under ``stage`` (for stages measured elsewhere)."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + float(seconds)
        self.calls[stage] = self.calls.get(stage, 0) + int(calls)

    def measure(self, fn, *args, repeats: int = 3, **kw) -> float:
        """Median wall time of ``fn(*args, **kw)`` after one untimed call; not recorded."""
        jax.block_until_ready(fn(*args, **kw))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args, **kw))
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    def summary(self, wall_s: float | None = None) -> dict:
        """``{stage: {"s": seconds, "calls": n}}`` plus totals.

        ``"total_s"`` (sum of the stages), ``"warmup_s"`` and, given the profiled call's
        ``wall_s``, ``"other_s"`` (host work and dispatch between stages:
        ``wall - total - warmup``).
        """
        out: dict[str, Any] = {
            k: {"s": float(self.seconds[k]), "calls": int(self.calls[k])} for k in self.seconds
        }
        total = float(sum(self.seconds.values()))
        out["total_s"] = total
        out["warmup_s"] = float(self.warmup_s)
        if wall_s is not None:
            out["other_s"] = max(0.0, float(wall_s) - total - float(self.warmup_s))
        return out


def format_stages(stages: dict | None) -> str:
    """One line: ``stage seconds (share, calls)`` by decreasing time, then the total."""
    if not stages:
        return ""
    items = [(k, v) for k, v in stages.items() if isinstance(v, dict)]
    total = float(stages.get("total_s", sum(v["s"] for _, v in items))) or 1.0
    items.sort(key=lambda kv: -kv[1]["s"])
    parts = [
        f"{k} {v['s']:.3g} s ({100 * v['s'] / total:.0f}%, {v['calls']} calls)" for k, v in items
    ]
    line = ", ".join(parts) + f"; stages total {total:.3g} s"
    if "other_s" in stages:
        line += f", host/other {stages['other_s']:.3g} s"
    return line
