r"""Mixing contexts that are too strong or too weak (REFERENCE.md section 4; the thesis).

A context with *too strong* an association (``A`` nearly determines ``X``: kNN with very few
neighbours, RBF with a huge bandwidth ``gamma``; nearly the identity) has a spectrum that decays
too slowly; one with *too weak* an association (kNN over a large share of the data, RBF with a
tiny ``gamma``, or a context that sees only part of the input) has a spectrum that decays too
fast. The thesis mixes them:

* **convolution** ``P = P_1 P_2`` (:func:`jaxcontext.contexts.convolve`) weakens contexts that
  are all too strong (two steps of a random walk);
* **convex combination** ``P = sum_k lambda_k P_k`` (:func:`jaxcontext.contexts.combine`)
  balances a strong and a weak one;
* **concatenation** ``A = (A_1, A_2)`` (:func:`jaxcontext.contexts.concat`) strengthens contexts
  that are all too weak.

:func:`run_dataset` builds such parts and mixes on the training rows of a real data set and, for
each, records the exact spectrum, ``tau`` and its arg-min ``d*``, and the downstream probe error
of the exact encoder (the same measurements as :mod:`jaxcontext.workflows.usefulness`: error at
the best ``d`` and at ``d*``); then it says which mixes beat *each* of their parts.
:func:`known_spectra` mixes bit-flip contexts on the hypercube, whose mixed spectra are known in
closed form, and compares the solved spectra with them (a check of the mixing operators).

Example:
    >>> from jaxcontext.workflows import mixing
    >>> [p.label for p in mixing.default_plan(1000)][:3]
    ['knn-k2', 'rbf-g5x', 'knn-k125']
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from .. import bridge
from .. import contexts as C
from .. import datasets as D
from ..spectrum import contexture
from ..spectrum import tau as tau_metric
from . import usefulness as U

__all__ = [
    "MixSpec",
    "default_plan",
    "build",
    "outcomes",
    "run_dataset",
    "known_spectra",
    "run",
    "table",
    "plot",
]

DEFAULT_DATASETS = ("digits",)


class MixSpec(NamedTuple):
    """One context of a mixing plan.

    Attributes:
        label: its name, e.g. ``"knn-k2"`` or ``"conv(knn-k2,knn-k2)"``.
        role: ``"strong"``, ``"weak"``, ``"partial"`` (sees part of the input), ``"moderate"``
            (a reference, not a part) or ``"mix"``.
        kind: ``"knn"`` (``arg = K``), ``"rbf"`` (``arg`` = multiple of ``gamma="scale"``),
            ``"half_knn"`` (``arg = (K, mask seed)``: kNN on a random half of the features,
            :func:`jaxcontext.contexts.masked` with one mask hiding ``ratio`` of them),
            ``"convolve"``, ``"combine"`` or ``"concat"``.
        arg: the setting (see ``kind``); for ``"combine"`` the mixing weights.
        parts: labels of the parts (mixes only).
    """

    label: str
    role: str
    kind: str
    arg: Any = None
    parts: tuple = ()


def default_plan(
    m: int,
    *,
    strong_k: int = 2,
    weak_k: int | None = None,
    strong_gamma: float = 5.0,
    weak_gamma: float = 0.03,
    moderate_k: int = 10,
    moderate_gamma: float = 1.0,
    half_k: int = 10,
    weight: float = 0.5,
    kinds: Sequence[str] = ("convolve", "combine", "concat"),
    references: bool = True,
) -> list[MixSpec]:
    r"""Parts, references and mixes for ``m`` training rows.

    Parts: too strong ``knn-k{strong_k}`` and ``rbf-g{strong_gamma}x`` (multiples of
    ``gamma="scale"``; at 30x on digits the RBF context is the identity to float32 precision,
    a degenerate spectrum of ones); too weak ``knn-k{weak_k}`` (default ``m // 8``) and
    ``rbf-g{weak_gamma}x``; *partial* ``half-a``, ``half-b``: kNN on two random halves of the
    features (each sees half of the input; weak in information, though not necessarily in the
    decay of its spectrum). References: ``knn-k{moderate_k}``, ``rbf-g{moderate_gamma}x``.
    Mixes: the strong ones convolved with themselves and with each other; each strong one
    combined with the weak one of its family (weights ``weight``, ``1 - weight``); the two halves
    concatenated (concatenation multiplies the entries per row, so it needs sparse parts: two
    dense RBF contexts or a kNN with ``m // 8`` neighbours would need ``m^3`` or ``m^3 / 64``
    stored pairs). ``kinds`` keeps the mixes of those operators only (and the parts they use);
    ``references=False`` leaves the references out.
    """
    wk = int(weak_k) if weak_k is not None else max(2 * int(moderate_k), int(m) // 8)
    ks, kw = f"knn-k{int(strong_k)}", f"knn-k{wk}"
    gs, gw = f"rbf-g{float(strong_gamma):g}x", f"rbf-g{float(weak_gamma):g}x"
    ha, hb = f"half-a-k{int(half_k)}", f"half-b-k{int(half_k)}"
    w = float(weight)
    bad = sorted(set(kinds) - {"convolve", "combine", "concat"})
    if bad:
        raise ValueError(f"kinds: expected 'convolve', 'combine' or 'concat', got {bad}")
    plan = [
        MixSpec(ks, "strong", "knn", int(strong_k)),
        MixSpec(gs, "strong", "rbf", float(strong_gamma)),
        MixSpec(kw, "weak", "knn", wk),
        MixSpec(gw, "weak", "rbf", float(weak_gamma)),
        MixSpec(ha, "partial", "half_knn", (int(half_k), 1)),
        MixSpec(hb, "partial", "half_knn", (int(half_k), 2)),
        MixSpec(f"knn-k{int(moderate_k)}", "moderate", "knn", int(moderate_k)),
        MixSpec(f"rbf-g{float(moderate_gamma):g}x", "moderate", "rbf", float(moderate_gamma)),
        MixSpec(f"conv({ks},{ks})", "mix", "convolve", None, (ks, ks)),
        MixSpec(f"conv({gs},{gs})", "mix", "convolve", None, (gs, gs)),
        MixSpec(f"conv({ks},{gs})", "mix", "convolve", None, (ks, gs)),
        MixSpec(f"comb({ks},{kw})", "mix", "combine", (w, 1 - w), (ks, kw)),
        MixSpec(f"comb({gs},{gw})", "mix", "combine", (w, 1 - w), (gs, gw)),
        MixSpec(f"concat({ha},{hb})", "mix", "concat", None, (ha, hb)),
    ]
    mixes = [p for p in plan if p.role == "mix" and p.kind in kinds]
    used = {q for p in mixes for q in p.parts}
    return [p for p in plan if p.label in used or (references and p.role == "moderate")] + mixes


def build(
    spec: MixSpec,
    x: Any,
    built: dict,
    *,
    gamma_scale: float,
    key: Any,
    half_ratio: float = 0.5,
) -> Any:
    """Build one context of a plan on ``x`` (parts already built are looked up in ``built``)."""
    if spec.kind == "knn":
        return C.knn(x, int(spec.arg))
    if spec.kind == "rbf":
        return C.rbf(x, float(spec.arg) * gamma_scale)
    if spec.kind == "half_knn":
        k, seed = spec.arg
        return C.masked(
            x,
            "knn",
            key=jax.random.fold_in(key, int(seed)),
            k=int(k),
            ratio=half_ratio,
            num_masks=1,
        )
    missing = [p for p in spec.parts if p not in built]
    if missing:
        raise ValueError(f"{spec.label}: parts {missing} must come earlier in the plan")
    parts = [built[p] for p in spec.parts]
    if spec.kind == "convolve":
        return C.convolve(*parts)
    if spec.kind == "combine":
        return C.combine(parts, list(spec.arg))
    if spec.kind == "concat":
        return C.concat(*parts)
    raise ValueError(f"kind: unknown {spec.kind!r}")


def _spec_record(spec: MixSpec, gamma_scale: float, half_ratio: float) -> dict:
    out: dict[str, Any] = {"role": spec.role, "kind": spec.kind}
    if spec.kind == "knn":
        out["k"] = int(spec.arg)
    elif spec.kind == "rbf":
        out.update(gamma_factor=float(spec.arg), gamma=float(spec.arg) * gamma_scale)
    elif spec.kind == "half_knn":
        out.update(k=int(spec.arg[0]), mask_seed=int(spec.arg[1]), mask_ratio=float(half_ratio))
    else:
        out["parts"] = list(spec.parts)
        if spec.kind == "combine":
            out["weights"] = [float(v) for v in spec.arg]
    return out


def outcomes(records: Sequence[dict], plan: Sequence[MixSpec]) -> list[dict]:
    r"""For every mix: its error and ``tau`` beside its parts', and whether it beats each part.

    ``beats_all_parts`` compares the error at the best ``d`` (``probe_error``);
    ``beats_all_parts_at_tau_d`` the error at each context's own ``d*``. ``margin`` is the best
    part's error minus the mix's (positive: the mix is better).
    """
    by = {r["label"]: r for r in records}
    out = []
    for sp in plan:
        if sp.role != "mix" or sp.label not in by:
            continue
        r = by[sp.label]
        parts = [by[p] for p in dict.fromkeys(sp.parts)]
        row: dict[str, Any] = {
            "mix": sp.label,
            "kind": sp.kind,
            "parts": [p["label"] for p in parts],
            "tau": r["tau"],
            "argmin_d": r["argmin_d"],
            "part_tau": {p["label"]: p["tau"] for p in parts},
            "decay_rate": r.get("decay_rate"),
            "part_decay_rate": {p["label"]: p.get("decay_rate") for p in parts},
        }
        for err, suffix in (("probe_error", ""), ("probe_error_at_tau_d", "_at_tau_d")):
            if err not in r:
                continue
            pe = {p["label"]: p[err] for p in parts}
            best_part = min(pe, key=pe.get)
            row[f"error{suffix}"] = r[err]
            row[f"part_error{suffix}"] = pe
            row[f"best_part{suffix}"] = best_part
            row[f"margin{suffix}"] = float(pe[best_part] - r[err])
            row[f"beats_all_parts{suffix}"] = bool(all(r[err] < v for v in pe.values()))
        out.append(row)
    return out


def run_dataset(
    name: str = "digits",
    *,
    plan: Sequence[MixSpec] | None = None,
    max_rows: int | None = 2000,
    test_fraction: float = 0.2,
    seed: int = 0,
    d0: int = 64,
    beta: float = 1.0,
    classification: str = "ridge",
    half_ratio: float = 0.5,
    plan_options: dict | None = None,
    on_record: Callable[[dict], Any] | None = None,
) -> dict:
    r"""Parts and mixes on one real data set: spectra, ``tau``, probe errors, outcomes.

    Args:
        name: a :data:`jaxcontext.workflows.usefulness.DATASETS` name.
        plan: the contexts (default :func:`default_plan` for the training rows, with
            ``plan_options``); parts must come before the mixes that use them.
        max_rows: subsample larger data sets to this many rows first.
        test_fraction: held-out share.
        seed: seed of the subsample, split, masks, solver and probe folds.
        d0: ``tau``'s largest ``d``; the solve is at ``d0 + 1``.
        beta: ``tau``'s weight.
        classification: the class probe (:func:`jaxcontext.workflows.usefulness.probe_error`).
        half_ratio: share of the features hidden from each ``half_knn`` part.
        plan_options: keyword arguments of :func:`default_plan`.
        on_record: called with each record when it is done.

    Returns:
        ``{"dataset": facts, "records": [one per context, as
        :func:`jaxcontext.workflows.usefulness.evaluate_context` plus label, settings, build
        time], "outcomes": :func:`outcomes`, "wall_s"}``.
    """
    t_start = time.perf_counter()
    ds, info = U.prepare(name, max_rows=max_rows, test_fraction=test_fraction, seed=seed)
    m = info["train_rows"]
    plan = list(plan) if plan is not None else default_plan(m, **(plan_options or {}))
    g_scale = info["gamma_scale"]
    key = jax.random.fold_in(jax.random.key(seed), 11)
    built: dict[str, Any] = {}
    records = []
    for sp in plan:
        if sp.kind in ("knn", "half_knn"):
            k = sp.arg if sp.kind == "knn" else sp.arg[0]
            if int(k) >= m:
                raise ValueError(f"{sp.label}: K={k} needs more than {m} training rows")
        t0 = time.perf_counter()

        def make(x: Any, sp: MixSpec = sp) -> Any:
            ctx = build(sp, x, built, gamma_scale=g_scale, key=key, half_ratio=half_ratio)
            built[sp.label] = ctx
            return ctx

        prob = U.problem_for(ds, info, sp.label, make)
        rec = U.evaluate_context(prob, d0=d0, beta=beta, key=seed, classification=classification)
        rec = {
            "dataset": info["name"],
            "label": sp.label,
            "settings": _spec_record(sp, g_scale, half_ratio),
            "context_shape": list(prob.context.shape),
            "build_s": prob.info["context_build_s"],
            **rec,
            "wall_s": time.perf_counter() - t0,
        }
        records.append(rec)
        if on_record is not None:
            on_record(rec)
    return {
        "dataset": info,
        "records": records,
        "outcomes": outcomes(records, plan),
        "wall_s": time.perf_counter() - t_start,
    }


# ------------------------------------------------------------------------------------------------
# Known spectra: bit flips on the hypercube
# ------------------------------------------------------------------------------------------------
def _flip_values(dim: int, per_coordinate: float) -> np.ndarray:
    """``sigma^|S|`` over all subsets ``S`` of ``dim`` coordinates, descending, ``|S| >= 1``."""
    v = np.concatenate([np.full(math.comb(dim, k), per_coordinate**k) for k in range(1, dim + 1)])
    return np.sort(v)[::-1]


def _concat_coordinate(p1: float, p2: float) -> float:
    """One coordinate's non-trivial singular value under two independent flips ``(A1, A2)``.

    The second singular value of the ``2 x 4`` normalised conditional of a uniform bit.
    """
    q = lambda p: np.array([[1 - p, p], [p, 1 - p]])  # noqa: E731
    P = np.einsum("xa,xb->xab", q(p1), q(p2)).reshape(2, 4)
    w = np.full(2, 0.5)
    pa = w @ P
    Z = np.sqrt(w)[:, None] * P / np.sqrt(pa)[None, :]
    return float(np.linalg.svd(Z, compute_uv=False)[1])


def known_spectra(
    *,
    dim: int = 6,
    p_strong: float = 0.05,
    p_weak: float = 0.3,
    weight: float = 0.5,
    d0: int = 32,
    beta: float = 1.0,
) -> dict:
    r"""Mix bit-flip contexts on ``{-1, 1}^dim``, whose mixed spectra are known exactly.

    With flips of probability ``p`` the singular values are ``(1 - 2p)^|S|`` over the subsets
    ``S`` of coordinates (:func:`jaxcontext.datasets.hypercube`). Every mix below factorises over
    coordinates, so its spectrum is ``sigma^|S|`` (or a sum of such terms) as well:

    * ``conv(strong, strong)``: flips applied twice, ``(1 - 2 p_s)^{2|S|}``;
    * ``comb(strong, weak)``: ``P = lambda P_s + (1 - lambda) P_w``, both diagonal in the parity
      basis: ``lambda (1 - 2 p_s)^|S| + (1 - lambda) (1 - 2 p_w)^|S|``;
    * ``concat(weak, weak)``: two independent flips ``A = (A_1, A_2)`` of each bit:
      ``sigma^|S|`` with ``sigma`` the non-trivial singular value of one coordinate's ``2 x 4``
      conditional (computed with numpy; larger than ``1 - 2 p_w``: concatenation strengthens).

    Returns:
        ``{"dim", "p_strong", "p_weak", "weight", "contexts": [{"label", "role", "expected",
        "s", "max_abs_error", "tau", "argmin_d"}]}`` with all ``2^dim - 1`` non-trivial values.
    """
    n = 2**dim - 1
    strong = D.hypercube(dim, p_strong).context
    weak = D.hypercube(dim, p_weak).context
    a_s, a_w = 1 - 2 * p_strong, 1 - 2 * p_weak
    lam = float(weight)
    cases = [
        ("strong", "strong", strong, _flip_values(dim, a_s)),
        ("weak", "weak", weak, _flip_values(dim, a_w)),
        ("conv(strong,strong)", "mix", C.convolve(strong, strong), _flip_values(dim, a_s**2)),
        (
            "comb(strong,weak)",
            "mix",
            C.combine([strong, weak], [lam, 1 - lam]),
            np.sort(lam * _flip_values(dim, a_s) + (1 - lam) * _flip_values(dim, a_w))[::-1],
        ),
        (
            "concat(weak,weak)",
            "mix",
            C.concat(weak, weak),
            _flip_values(dim, _concat_coordinate(p_weak, p_weak)),
        ),
    ]
    out = []
    for label, role, ctx, expected in cases:
        ct = contexture(ctx, n, key=0, method="dense")
        s = np.asarray(ct.s, np.float64)
        tr = tau_metric(s, d0=min(d0, n - 1), beta=beta)
        out.append(
            {
                "label": label,
                "role": role,
                "context_shape": list(ctx.shape),
                "expected": [float(v) for v in expected],
                "s": [float(v) for v in s],
                "max_abs_error": float(np.max(np.abs(s - expected))),
                "tau": float(tr.tau),
                "argmin_d": int(tr.d),
            }
        )
    return {
        "dim": int(dim),
        "p_strong": float(p_strong),
        "p_weak": float(p_weak),
        "weight": lam,
        "d0": int(min(d0, n - 1)),
        "dtype": str(np.asarray(ct.mu).dtype),
        "contexts": out,
    }


# ------------------------------------------------------------------------------------------------
# Driver and reports
# ------------------------------------------------------------------------------------------------
def run(
    datasets: Sequence[str] = DEFAULT_DATASETS,
    *,
    known: bool = True,
    known_options: dict | None = None,
    on_record: Callable[[dict], Any] | None = None,
    **options: Any,
) -> dict:
    r"""Mixing on real data sets and, with ``known``, on the hypercube.

    ``options`` go to :func:`run_dataset`, ``known_options`` to :func:`known_spectra`.

    Returns:
        ``{"environment", "settings", "known", "datasets": [run_dataset results], "summary":
        per data set the mixes that beat each of their parts (at the best d and at d*), whether
        any did, and if none did, why; "wall_s", "cpu_s", "load_average"}``,
        JSON-serialisable.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    res: dict[str, Any] = {
        "environment": bridge.environment(),
        "settings": {
            "datasets": list(datasets),
            "known": bool(known),
            **{
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in options.items()
                if k != "plan"
            },
        },
    }
    if known:
        res["known"] = known_spectra(**(known_options or {}))
    per = [run_dataset(name, on_record=on_record, **options) for name in datasets]
    res["datasets"] = per
    res["summary"] = [_summary(d) for d in per]
    res["wall_s"] = time.perf_counter() - t0
    res["cpu_s"] = time.process_time() - c0
    res["load_average"] = U._load()
    return res


def _summary(d: dict) -> dict:
    oc = d["outcomes"]
    win = [o["mix"] for o in oc if o.get("beats_all_parts")]
    win_t = [o["mix"] for o in oc if o.get("beats_all_parts_at_tau_d")]
    out: dict[str, Any] = {
        "dataset": d["dataset"]["name"],
        "mixes": len(oc),
        "beat_all_parts": win,
        "beat_all_parts_at_tau_d": win_t,
        "accepted": bool(win),
    }
    if not win:
        out["why_not"] = [
            f"{o['mix']}: its best part {o['best_part']} has error "
            f"{o['part_error'][o['best_part']]:.4f} <= the mix's {o['error']:.4f} (tau "
            f"{o['tau']:.3f} vs parts "
            + ", ".join(f"{k} {v:.3f}" for k, v in o["part_tau"].items())
            + ")"
            for o in oc
            if "error" in o
        ]
    ref = [r for r in d["records"] if r["settings"]["role"] == "moderate" and "probe_error" in r]
    if ref:
        best_ref = min(ref, key=lambda r: r["probe_error"])
        out["best_reference"] = {
            "label": best_ref["label"],
            "error": best_ref["probe_error"],
            "tau": best_ref["tau"],
        }
        out["mixes_beating_best_reference"] = [
            o["mix"] for o in oc if "error" in o and o["error"] < best_ref["probe_error"]
        ]
    return out


def _f(v: Any, fmt: str = ".4f") -> str:
    return U._f(v, fmt)


def table(result: dict) -> str:
    """A markdown report of a :func:`run` result."""
    lines = []
    kn = result.get("known")
    if kn:
        lines += [
            f"Known spectra: bit flips on {{-1, 1}}^{kn['dim']}, p_strong = {kn['p_strong']}, "
            f"p_weak = {kn['p_weak']}, weight {kn['weight']} ({kn['dtype']}):",
            "",
            "| context | role | s_1 | s_2..s_4 | max abs error vs closed form | tau | d* |",
            "|---|---|---:|---|---:|---:|---:|",
        ]
        for c in kn["contexts"]:
            lines.append(
                f"| {c['label']} | {c['role']} | {c['s'][0]:.4f} | "
                f"{', '.join(f'{v:.4f}' for v in c['s'][1:4])} | {c['max_abs_error']:.1e} | "
                f"{c['tau']:.3f} | {c['argmin_d']} |"
            )
        lines.append("")
    for d in result["datasets"]:
        i = d["dataset"]
        lines += [
            f"{i['name']} ({i['task']}, target {i['target']}; {i['rows_used']:,} of "
            f"{i['rows_total']:,} rows, {i['train_rows']:,} for the contexts, {i['test_rows']:,} "
            f"held out; d0 = {d['records'][0]['d0'] if d['records'] else '-'}):",
            "",
            "| context | role | s_1 | s_8 | s_32 | decay rate | tau | d* | error at d* | "
            "best d | error at best d |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in d["records"]:
            s = r["spectrum"]["s"]

            def at(i: int, s: list = s) -> str:
                return f"{s[i - 1]:.3f}" if len(s) >= i else "-"

            lines.append(
                f"| {r['label']} | {r['settings']['role']} | {at(1)} | {at(8)} | {at(32)} | "
                f"{_f(r.get('decay_rate'), '.3f')} | {r['tau']:.3f} | {r['argmin_d']} | "
                f"{_f(r.get('probe_error_at_tau_d'))} | {r.get('best_d', '-')} | "
                f"{_f(r.get('probe_error'))} |"
            )
        lines += [
            "",
            "| mix | parts | error (best d) | best part's error | beats each part | "
            "error at d* | beats each part at d* |",
            "|---|---|---:|---:|---|---:|---|",
        ]
        for o in d["outcomes"]:
            lines.append(
                f"| {o['mix']} | {', '.join(o['parts'])} | {_f(o.get('error'))} | "
                f"{_f(o['part_error'][o['best_part']]) if 'best_part' in o else '-'} "
                f"({o.get('best_part', '-')}) | {'yes' if o.get('beats_all_parts') else 'no'} | "
                f"{_f(o.get('error_at_tau_d'))} | "
                f"{'yes' if o.get('beats_all_parts_at_tau_d') else 'no'} |"
            )
        lines.append("")
    for s in result.get("summary", []):
        lines.append(
            f"{s['dataset']}: {len(s['beat_all_parts'])} of {s['mixes']} mixes beat each of "
            f"their parts at the best d ({', '.join(s['beat_all_parts']) or 'none'}); at d*: "
            f"{', '.join(s['beat_all_parts_at_tau_d']) or 'none'}."
        )
        if "best_reference" in s:
            br = s["best_reference"]
            lines.append(
                f"Best moderate reference: {br['label']} (error {br['error']:.4f}); mixes below "
                f"it: {', '.join(s['mixes_beating_best_reference']) or 'none'}."
            )
        for w in s.get("why_not", []):
            lines.append(f"- {w}")
    return "\n".join(lines)


def plot(result: dict, path: str, *, dataset: int = 0) -> str:
    """Draw the spectra of each mix beside its parts, and the probe errors (one PNG).

    With a known-spectrum section, a last panel shows the hypercube spectra beside their closed
    forms.
    """
    plt = U.pyplot()
    d = result["datasets"][dataset]
    recs = {r["label"]: r for r in d["records"]}
    mixes = d["outcomes"]
    panels = len(mixes) + 1 + (1 if result.get("known") else 0)
    cols = 4
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.2 * rows), squeeze=False)
    ax_it = iter(axes.ravel())
    for o in mixes:
        ax = next(ax_it)
        for p, col in zip(o["parts"], ["tab:red", "tab:blue"], strict=False):
            role = recs[p]["settings"]["role"]
            s = np.asarray(recs[p]["spectrum"]["s"])
            ax.plot(
                np.arange(1, s.size + 1),
                s,
                "--",
                color=col,
                lw=1.1,
                label=f"{p}, {role} (tau {recs[p]['tau']:.3g}, err "
                f"{recs[p].get('probe_error', float('nan')):.3f})",
            )
        s = np.asarray(recs[o["mix"]]["spectrum"]["s"])
        ax.plot(
            np.arange(1, s.size + 1),
            s,
            "k-",
            lw=1.6,
            label=f"mix (tau {o['tau']:.3g}, err {o.get('error', float('nan')):.3f})",
        )
        ax.set_title(
            o["mix"] + (" beats its parts" if o.get("beats_all_parts") else ""), fontsize=8
        )
        ax.set_ylim(0, 1.03)
        ax.set_xlabel("i")
        ax.set_ylabel("s_i")
        ax.legend(fontsize=6, loc="lower left")
    ax = next(ax_it)
    labels = [r["label"] for r in d["records"] if "probe_error" in r]
    roles = [recs[lb]["settings"]["role"] for lb in labels]
    cmap = {
        "strong": "tab:red",
        "weak": "tab:blue",
        "partial": "tab:cyan",
        "moderate": "tab:gray",
        "mix": "black",
    }
    ax.barh(
        range(len(labels)),
        [recs[lb]["probe_error"] for lb in labels],
        color=[cmap.get(r, "k") for r in roles],
    )
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=6)
    ax.invert_yaxis()
    metric = d["records"][0].get("probe_metric", "error") if d["records"] else "error"
    ax.set_xlabel(f"{metric} at the best d")
    ax.set_title(
        f"{d['dataset']['name']}: red strong, blue weak, cyan partial, grey moderate, black mixes",
        fontsize=7,
    )
    kn = result.get("known")
    if kn:
        ax = next(ax_it)
        for c, col in zip(
            kn["contexts"],
            itertools.cycle(["tab:red", "tab:blue", "tab:purple", "tab:green", "tab:brown"]),
            strict=False,
        ):
            s = np.asarray(c["s"])
            ax.semilogy(np.arange(1, s.size + 1), s, color=col, lw=1.3, label=c["label"])
            ax.semilogy(np.arange(1, s.size + 1), np.asarray(c["expected"]), ":", color="k", lw=0.8)
        ax.set_title(
            f"hypercube D={kn['dim']}: solved (colour) vs closed form (dotted)", fontsize=8
        )
        ax.set_xlabel("i")
        ax.legend(fontsize=6)
    for ax in ax_it:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
