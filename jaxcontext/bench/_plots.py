"""PNG figures of a benchmark report (``python -m jaxcontext.bench --plots DIR``).

One figure per suite: the median time of every implementation per case (log scale, IQR as error
bars, the baseline hatched) beside jaxcontext's speedup over the baseline; for the ``alignment``
suite also the held-out ``R2_CCA`` against training step of every objective. Every figure's title
names the device, JAX version and dtype the numbers were measured with, so a PNG copied out of
context still says where it came from.

matplotlib is optional (the ``bench`` and ``plot`` extras install it); it is imported here only,
with the non-interactive ``Agg`` backend, so plotting works on a headless machine.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["plot_report"]


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "--plots needs matplotlib: pip install 'jaxcontext[plot]' (or matplotlib)"
        ) from e
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _as_dict(report: Any) -> dict:
    """A report as the JSON dict :func:`jaxcontext.bench.to_json` writes (or reads a path)."""
    if isinstance(report, (str, os.PathLike)):
        with open(report) as f:
            return json.load(f)
    if isinstance(report, Mapping):
        return dict(report)
    from ._harness import to_json

    return to_json(report)


def _title(env: Mapping, suite: str) -> str:
    plat, kind = env.get("platform", "?"), env.get("device_kind", "")
    dev = plat if kind.lower() in ("", plat.lower()) else f"{plat} {kind}"
    if env.get("cpu_model") and plat == "cpu":
        dev += f" ({env['cpu_model']}, {env.get('cpus_usable', '?')} cores)"
    if env.get("device_count", 1) > 1:
        dev += f" x{env['device_count']}"
    return f"{suite} | {dev} | jax {env.get('jax', '?')} | {env.get('dtype', '?')}" + (
        " (x64)" if env.get("jax_enable_x64") else ""
    )


def _short(text: str, n: int = 38) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _times_figure(plt: Any, entries: Sequence[dict], title: str) -> Any:
    cases = list(dict.fromkeys(e["case"] for e in entries))
    rows: list[tuple[float, dict | None, str]] = []  # (y, entry, case header) one bar per entry
    y = 0.0
    for c in cases:
        rows.append((y, None, c))
        y += 1.0
        for e in (e for e in entries if e["case"] == c):
            rows.append((y, e, c))
            y += 1.0
        y += 0.4
    fig, (ax_t, ax_s) = plt.subplots(
        1, 2, figsize=(13, 0.24 * y + 1.6), gridspec_kw={"width_ratios": [3, 1.2]}
    )
    labels_y, labels = [], []
    speed_y, speed = [], []
    for yy, e, c in rows:
        labels_y.append(yy)
        if e is None:
            labels.append(_short(c, 44))
            continue
        labels.append("    " + _short(e["impl"], 40))
        ok = e.get("status") == "ok" and e.get("time_median_s")
        if not ok:
            ax_t.text(
                0.0,
                yy,
                f" {e.get('status')}",
                va="center",
                fontsize=7,
                color="tab:red",
                transform=ax_t.get_yaxis_transform(),
            )
            continue
        t = float(e["time_median_s"])
        times = sorted(float(v) for v in e.get("times_s") or [t])
        q1, q3 = times[len(times) // 4], times[(3 * len(times)) // 4]
        ours = e["impl"].startswith("jaxcontext")
        ax_t.barh(
            yy,
            t,
            height=0.75,
            xerr=[[max(t - q1, 0.0)], [max(q3 - t, 0.0)]],
            color="tab:blue" if ours else "tab:gray",
            hatch="//" if e.get("baseline") else None,
            edgecolor="k" if e.get("baseline") else None,
            lw=0.5,
            error_kw={"elinewidth": 0.8, "capsize": 1.5},
        )
        ax_t.text(
            t * 1.08 if not q3 else max(t, q3) * 1.08, yy, _fmt_s(t), va="center", fontsize=6.5
        )
        if ours and e.get("speedup") and not e.get("baseline"):
            speed_y.append(yy)
            speed.append(float(e["speedup"]))
    ax_t.set_xscale("log")
    ax_t.set_yticks(labels_y, labels, fontsize=7)
    for lab, (_, e, _) in zip(ax_t.get_yticklabels(), rows, strict=True):
        if e is None:
            lab.set_fontweight("bold")
    ax_t.set_ylim(y, -1.0)
    ax_t.set_xlabel("median time per call, s (log; bars: IQR; hatched: baseline; blue: jaxcontext)")
    ax_t.grid(axis="x", which="both", alpha=0.3)
    if speed:
        ax_s.barh(
            speed_y, speed, height=0.75, color=["tab:green" if v >= 1 else "tab:red" for v in speed]
        )
        for yy, v in zip(speed_y, speed, strict=True):
            ax_s.text(v, yy, f" {v:.2f}x", va="center", fontsize=6.5)
        ax_s.set_xscale("log")
        ax_s.set_xlim(min(min(speed), 1.0) / 1.6, max(max(speed), 1.0) * 1.6)
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax_s.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax_s.xaxis.set_minor_formatter(NullFormatter())
    ax_s.axvline(1.0, color="k", lw=0.8)
    ax_s.set_yticks([])
    ax_s.set_ylim(ax_t.get_ylim())
    ax_s.set_xlabel("speedup over the case's baseline\n(baseline median / median)")
    ax_s.grid(axis="x", which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _fmt_s(t: float) -> str:
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def _alignment_figure(plt: Any, entries: Sequence[dict], title: str) -> Any | None:
    curves = [
        e
        for e in entries
        if e.get("status") == "ok" and (e.get("details") or {}).get("evals_r2_cca")
    ]
    if not curves:
        return None
    cases = list(dict.fromkeys(e["case"] for e in curves))
    cols = min(len(cases), 3)
    rows = math.ceil(len(cases) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, c in zip(axes.flat, cases, strict=False):
        for e in (e for e in curves if e["case"] == c):
            det = e["details"]
            ax.plot(det["evals_step"], det["evals_r2_cca"], marker=".", label=_short(e["impl"]))
        target = next((e["params"].get("target_r2") for e in curves if e["case"] == c), None)
        if target is not None:
            ax.axhline(float(target), color="k", ls=":", lw=0.8)
        ax.set_title(_short(c, 50), fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("held-out R2_CCA to exact top-d")
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(cases) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_report(report: Any, out_dir: str, *, prefix: str = "") -> list[str]:
    """Write the report's figures as PNG files into ``out_dir`` (created if missing).

    Args:
        report: a :class:`~jaxcontext.bench.Report`, its JSON dict, or the path of its JSON file.
        out_dir: folder of the PNGs.
        prefix: prepended to every file name (e.g. ``"quick-"``).

    Returns:
        The paths written: ``<suite>-times.png`` for every suite with a timed entry, and
        ``alignment-curves.png`` when the alignment suite recorded training curves.
    """
    plt = _matplotlib()
    rep = _as_dict(report)
    env = rep.get("environment", {})
    os.makedirs(out_dir, exist_ok=True)
    paths: list[str] = []
    suites = list(dict.fromkeys(e["suite"] for e in rep.get("entries", [])))
    for suite in suites:
        entries = [e for e in rep["entries"] if e["suite"] == suite]
        if not any(e.get("status") == "ok" and e.get("time_median_s") for e in entries):
            continue
        figs = {"times": _times_figure(plt, entries, _title(env, suite))}
        if suite == "alignment":
            figs["curves"] = _alignment_figure(plt, entries, _title(env, suite))
        for kind, fig in figs.items():
            if fig is None:
                continue
            path = os.path.join(out_dir, f"{prefix}{suite}-{kind}.png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths
