r"""Learned against exact: train encoders on a context and measure them against its contexture.

The bridge between the exact path (:func:`jaxcontext.contexture`) and the learned path
(:func:`jaxcontext.fit`) on one problem, as plain JSON-serialisable records, for comparisons on
real data, scaling studies over encoder sizes, and benchmark suites:

* :func:`problem` -- a data set split into training and held-out rows and a context (kNN, RBF, or
  any builder) on the training rows;
* :func:`exact` -- the exact top-``d`` contexture, certified by the solver's residuals, its
  values at the held-out rows by its out-of-sample extension (:meth:`Contexture.evaluate`), and
  its own record (singular values, solve time, downstream probe);
* :func:`assess` -- the measures of any encoder against the reference: ``R2_CCA`` and subspace
  distance on the held-out rows (and at the training samples), and the test error of a ridge
  probe (:func:`jaxcontext.evaluation.ridge_probe`) on the data set's own target;
* :func:`model_sizes` -- encoder sizes (``(width, depth)`` pairs or a width x depth grid) as
  :class:`jaxcontext.models.ModelSpec`;
* :func:`train` -- one encoder (one objective, size and seed) trained with :func:`jaxcontext.fit`
  and assessed; :func:`compare` -- every objective x size x seed, with the reference solved once;
* :func:`summarize` -- mean, spread and extremes over seeds per objective and size;
  :func:`best` -- its top row; :func:`table` -- a markdown table of a :func:`compare` result;
* :func:`environment` -- device, versions, dtype and date, to store beside the numbers;
  :func:`parse_size` and :func:`override` -- ``"WIDTHxDEPTH"`` sizes and flags over a preset grid,
  for the command-line scripts.

Nothing here re-implements a solver, an objective, a metric or a probe: those are
:func:`~jaxcontext.spectrum.contexture`, :func:`~jaxcontext.training.fit`,
:func:`~jaxcontext.evaluation.cca`, :func:`~jaxcontext.evaluation.subspace_distance` and
:func:`~jaxcontext.evaluation.ridge_probe`. Every encoder, the exact one included, goes through the
same :func:`assess`, so the exact contexture against itself scores ``R2_CCA = 1`` by construction
of the measure, not by a special case.

Measures (REFERENCE.md section 5): with ``Phi`` the learned encoder and ``mu_1..mu_d`` the exact
singular functions (the constant ``mu_0`` excluded; both sides centred),
``R2_CCA = |Q_Phi^T Q_mu|_F^2 / d`` and the subspace distance ``1 - R2_CCA`` computed from the
principal angles (accurate near 0). The probe error is the held-out relative squared error
``SSE / SST`` for regression targets (``1 - R^2``) and the error rate for classes.

Example:
    >>> from jaxcontext import bridge
    >>> prob = bridge.problem("iris", context="knn", k=10, test_fraction=0.3, seed=0)
    >>> ref = bridge.exact(prob, 3, key=0)
    >>> round(ref.record["self_r2_cca"], 6)                    # exact against exact
    1.0
    >>> out = bridge.compare(prob, d=3, objectives=["kise"], sizes=[(32, 1)], seeds=[0],
    ...                      steps=20, batch_size=64, reference=ref)
    >>> run = out["runs"][0]
    >>> run["objective"], run["width"], run["depth"], 0.0 <= run["r2_cca"] <= 1.0
    ('kise', 32, 1, True)
"""

from __future__ import annotations

import datetime
import math
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import contexts as C
from . import datasets as D
from . import evaluation as E
from . import models as M
from . import training as T
from .spectrum import Contexture, contexture

__all__ = [
    "Problem",
    "problem",
    "Reference",
    "exact",
    "assess",
    "model_sizes",
    "train",
    "compare",
    "summarize",
    "best",
    "table",
    "environment",
    "parse_size",
    "override",
]


# ------------------------------------------------------------------------------------------------
# Problems
# ------------------------------------------------------------------------------------------------
class Problem(NamedTuple):
    """A context on training rows, with held-out rows and the data set's own target.

    Attributes:
        name: a label, e.g. ``"fair/knn-k30"``.
        context: the :class:`~jaxcontext.contexts.Context` built on ``x``.
        x: ``(m, D)`` training inputs (the context's samples).
        x_test: ``(n, D)`` held-out inputs.
        y: ``(m,)`` training targets, or None (no probe).
        y_test: ``(n,)`` held-out targets, or None.
        task: ``"regression"``, ``"classification"`` or None.
        info: JSON-serialisable description (data set, context and its settings, sizes, split
            seed, build time).
    """

    name: str
    context: Any
    x: Any
    x_test: Any
    y: Any
    y_test: Any
    task: str | None
    info: dict


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction: expected a fraction in (0, 1), got {test_fraction!r}")
    n_test = int(round(n * float(test_fraction)))
    if n_test < 1 or n - n_test < 2:
        raise ValueError(f"test_fraction={test_fraction}: {n} rows leave no training or test rows")
    perm = np.asarray(jax.random.permutation(jax.random.key(seed), n))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _rbf_gamma(x: np.ndarray) -> float:
    """scikit-learn's ``gamma="scale"``: ``1 / (D * Var[x])``."""
    v = float(np.var(np.asarray(x, np.float64)))
    return 1.0 / (x.shape[1] * (v if v > 0 else 1.0))


def problem(
    data: Any,
    *,
    context: str | Callable[[Any], Any] = "knn",
    k: int = 30,
    gamma: float | None = None,
    test_fraction: float = 0.2,
    max_rows: int | None = None,
    standardize: bool = True,
    seed: int = 0,
    name: str | None = None,
) -> Problem:
    r"""Split a data set and build a context on its training rows.

    Args:
        data: a name of :func:`jaxcontext.datasets.available` (loaded with ``standardize``), a
            :class:`~jaxcontext.datasets.Dataset`, or an ``(x, y)`` pair of arrays (``y`` may be
            None: no probe).
        context: ``"knn"`` (:func:`~jaxcontext.contexts.knn` with ``k`` neighbours), ``"rbf"``
            (:func:`~jaxcontext.contexts.rbf` with ``gamma``), or a callable ``x_train ->
            Context``.
        k: neighbours of the kNN context.
        gamma: RBF bandwidth; default scikit-learn's ``"scale"``, ``1 / (D Var[x_train])``.
        test_fraction: share of the rows held out (a random split drawn from ``seed``).
        max_rows: use a random subset of at most this many rows first (None: all).
        standardize: for a data set given by name, scale features to zero mean, unit variance.
        seed: seed of the subset and the split.
        name: label of the problem (default ``"<data set>/<context>"``).

    Returns:
        A :class:`Problem`.
    """
    if isinstance(data, str):
        data = D.load(data, standardize=standardize)
    if isinstance(data, D.Dataset):
        dname, x, y, task = data.name, np.asarray(data.x), data.y, data.task
    else:
        x, y = data
        dname, x = "data", np.asarray(x)
        task = None
    if x.ndim != 2:
        raise ValueError(f"data: expected (rows, features) inputs, got shape {x.shape}")
    y = None if y is None else np.asarray(y)
    rows = np.arange(x.shape[0])
    if max_rows is not None and max_rows < x.shape[0]:
        sub = jax.random.permutation(jax.random.fold_in(jax.random.key(seed), 1), x.shape[0])
        rows = np.sort(np.asarray(sub)[: int(max_rows)])
    tr, te = _split(rows.size, test_fraction, seed)
    tr, te = rows[tr], rows[te]
    xtr, xte = x[tr], x[te]
    t0 = time.perf_counter()
    if callable(context):
        ctx, cname, settings = context(xtr), getattr(context, "__name__", "custom"), {}
    elif context == "knn":
        ctx, cname, settings = C.knn(xtr, k), f"knn-k{int(k)}", {"k": int(k)}
    elif context == "rbf":
        g = _rbf_gamma(xtr) if gamma is None else float(gamma)
        ctx, cname, settings = C.rbf(xtr, g), f"rbf-g{g:.4g}", {"gamma": g}
    else:
        raise ValueError(f"context: expected 'knn', 'rbf' or a callable, got {context!r}")
    build = time.perf_counter() - t0
    info = {
        "data": dname,
        "context": cname.split("-")[0] if not callable(context) else cname,
        **settings,
        "rows": int(rows.size),
        "train_rows": int(tr.size),
        "test_rows": int(te.size),
        "features": int(x.shape[1]),
        "task": task,
        "test_fraction": float(test_fraction),
        "split_seed": int(seed),
        "standardize": bool(standardize),
        "dtype": str(np.asarray(xtr).dtype),
        "context_build_s": build,
    }
    return Problem(
        name=name or f"{dname}/{cname}",
        context=ctx,
        x=xtr,
        x_test=xte,
        y=None if y is None else y[tr],
        y_test=None if y is None else y[te],
        task=task,
        info=info,
    )


# ------------------------------------------------------------------------------------------------
# Measures of one encoder
# ------------------------------------------------------------------------------------------------
class Reference(NamedTuple):
    """The exact contexture of a :class:`Problem`, with its values where encoders are measured.

    Attributes:
        contexture: the :class:`~jaxcontext.spectrum.Contexture` (top ``d``).
        mu: ``(m, d)`` its singular functions at the training samples.
        mu_test: ``(n, d)`` at the held-out rows (out-of-sample extension).
        record: JSON-serialisable facts: ``d``, ``s``, ``max_residual``, ``converged``,
            ``method``, ``solve_s`` (compile included), ``evaluate_s``, and the exact encoder's
            own measures from :func:`assess` (``self_r2_cca`` = 1, ``probe_error``, ...).
    """

    contexture: Contexture
    mu: Any
    mu_test: Any
    record: dict


def _probe(prob: Problem, f_train: Any, f_test: Any, key: Any) -> dict:
    if prob.y is None:
        return {}
    r = E.ridge_probe(f_train, prob.y, f_test, prob.y_test, task=prob.task or "auto", key=key)
    err = r.test["rel_mse"] if r.task == "regression" else r.test["error"]
    return {
        "probe_error": float(err),
        "probe_metric": "rel_mse" if r.task == "regression" else "error",
        "probe_test": {k: float(v) for k, v in r.test.items()},
        "probe_alpha": float(r.alpha),
    }


def assess(prob: Problem, ref: Reference, f_train: Any, f_test: Any, *, key: Any = 0) -> dict:
    r"""Measure an encoder's outputs against the exact contexture and on the probe.

    Args:
        prob: the :class:`Problem`.
        ref: its :class:`Reference`.
        f_train: ``(m, d')`` the encoder at ``prob.x``.
        f_test: ``(n, d')`` the encoder at ``prob.x_test``.
        key: seed of the probe's cross-validation folds.

    Returns:
        ``{"r2_cca", "subspace_distance"}`` on the held-out rows, ``"r2_cca_train"`` at the
        training samples, ``"rank"`` (numerical rank of the held-out outputs) and, when the
        problem has a target, ``"probe_error"`` (held-out ``SSE/SST`` or error rate),
        ``"probe_metric"``, ``"probe_test"`` (every test metric) and ``"probe_alpha"``.
    """
    c = E.cca(f_test, ref.mu_test)
    out = {
        "r2_cca": float(c.r2),
        "subspace_distance": float(E.subspace_distance(f_test, ref.mu_test)),
        "r2_cca_train": float(E.cca(f_train, ref.mu).r2),
        "rank": int(c.rank_a),
    }
    out.update(_probe(prob, f_train, f_test, key))
    return out


def exact(prob: Problem, d: int, *, key: Any = 0, **contexture_kwargs: Any) -> Reference:
    r"""Solve the exact top-``d`` contexture of ``prob.context`` and assess it as an encoder.

    Args:
        prob: the :class:`Problem`.
        d: number of non-trivial singular functions.
        key: the solver's key (and the probe's fold seed).
        **contexture_kwargs: passed to :func:`jaxcontext.contexture` (``method``, ``tol``, ...).

    Returns:
        A :class:`Reference`; ``record["solve_s"]`` includes the solver's compilation.
    """
    t0 = time.perf_counter()
    ct = contexture(prob.context, int(d), key=key, **contexture_kwargs)
    jax.block_until_ready(ct.mu)
    solve = time.perf_counter() - t0
    t0 = time.perf_counter()
    mu_t = jax.block_until_ready(ct.evaluate(prob.x_test))
    evaluate = time.perf_counter() - t0
    ref = Reference(ct, ct.mu, mu_t, {})
    sp = ct.spectrum
    rec = {
        "kind": "exact",
        "d": int(d),
        "s": np.asarray(ct.s, np.float64).tolist(),
        "max_residual": float(np.max(np.asarray(sp.residuals))),
        "converged": bool(np.all(np.asarray(sp.info.converged))),
        "method": str(getattr(sp.info, "method", "")),
        "solve_s": solve,
        "evaluate_s": evaluate,
        "dtype": str(ct.mu.dtype),
    }
    own = assess(prob, ref, ct.mu, mu_t, key=key)
    rec["self_r2_cca"] = own.pop("r2_cca")
    rec["self_subspace_distance"] = own.pop("subspace_distance")
    rec.update({k: v for k, v in own.items() if k not in ("r2_cca_train", "rank")})
    if prob.y is not None:
        raw = _probe(prob, prob.x, prob.x_test, key)
        rec["raw_features_probe_error"] = raw["probe_error"]
    return ref._replace(record=rec)


# ------------------------------------------------------------------------------------------------
# Encoders
# ------------------------------------------------------------------------------------------------
def model_sizes(
    in_dim: int,
    out_dim: int,
    pairs: Iterable[Any] = (),
    *,
    widths: Sequence[int] = (),
    depths: Sequence[int] = (),
    kind: str = "mlp",
    **options: Any,
) -> list[M.ModelSpec]:
    r"""Encoder sizes as :class:`~jaxcontext.models.ModelSpec`, sorted by parameter count.

    Args:
        in_dim: input dimension.
        out_dim: output dimension ``d``.
        pairs: ``(width, depth)`` pairs (or ready :class:`~jaxcontext.models.ModelSpec`).
        widths: widths of a full width x depth grid as well (:func:`jaxcontext.models.family`).
        depths: depths of that grid.
        kind: ``"mlp"`` or ``"resmlp"`` (:func:`jaxcontext.models.family`).
        **options: passed to the models (``activation``, ``skip``, ``param_dtype``, ...).

    Example:
        >>> [(s.width, s.depth) for s in model_sizes(8, 4, [(64, 2), (16, 1)])]
        [(16, 1), (64, 2)]
    """
    out: list[M.ModelSpec] = []
    for p in pairs:
        if isinstance(p, M.ModelSpec):
            out.append(p)
        else:
            w, dp = p
            out += M.family(in_dim, out_dim, widths=[w], depths=[dp], kind=kind, **options)
    if len(widths) or len(depths):
        out += M.family(in_dim, out_dim, widths=widths, depths=depths, kind=kind, **options)
    if not out:
        raise ValueError("sizes: give (width, depth) pairs or widths and depths")
    return sorted(out, key=lambda s: (s.params, s.name))


def _apply(encoder: Any, x: Any, chunk: int = 8192) -> np.ndarray:
    """The encoder on ``x`` in row chunks (bounded memory for wide encoders), as numpy."""
    parts = [np.asarray(encoder(jnp.asarray(x[i : i + chunk]))) for i in range(0, len(x), chunk)]
    return np.concatenate(parts)


def train(
    prob: Problem,
    ref: Reference,
    *,
    objective: str,
    spec: M.ModelSpec,
    seed: int,
    steps: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    objective_options: dict | None = None,
    eval_every: int | None = None,
    log_every: int = 250,
    measures: Callable[[Problem, Reference, Any, Any], dict] | None = None,
) -> dict:
    r"""Train one encoder with :func:`jaxcontext.fit` and :func:`assess` it against ``ref``.

    The encoder is ``spec.make(nnx.Rngs(seed))`` with ``d = ref``'s dimension outputs; ``fit`` runs
    with ``key=seed`` and :func:`~jaxcontext.training.default_optimizer` (``learning_rate``).
    A run whose loss turns NaN or Inf is recorded (``diverged`` = the step), not raised.

    Args:
        prob: the :class:`Problem`.
        ref: its :class:`Reference`.
        objective: a name of :data:`jaxcontext.objectives.NAMES`.
        spec: the encoder size (:func:`model_sizes`).
        seed: initialisation and batch seed.
        steps: optimiser steps (:func:`~jaxcontext.training.fit`).
        batch_size: samples per step (:func:`~jaxcontext.training.fit`).
        learning_rate: peak learning rate of the default optimiser.
        objective_options: options of the objective (``objectives.get(name, **options)``).
        eval_every: record the held-out ``R2_CCA`` every this many steps (``fit(reference=)``;
            returned as ``"curve"``); None: only at the end.
        log_every: steps per compiled call.
        measures: extra measures, ``measures(prob, ref, f_train, f_test) -> dict`` of the trained
            encoder's outputs at ``prob.x`` and ``prob.x_test`` (e.g. mutual kNN), merged into the
            record; called only when the outputs are finite.

    Returns:
        A JSON-serialisable dict: ``objective``, ``model``, ``width``, ``depth``, ``params``,
        ``seed``, ``steps``, ``batch_size``, ``learning_rate``, ``dtype``, the measures of
        :func:`assess`, ``final_loss``, ``diverged``, ``train_s``, ``compile_s``, ``wall_s``
        and, with ``eval_every``, ``curve``.
    """
    from . import objectives as O

    obj = O.get(objective, **(objective_options or {}))
    enc = spec.make(nnx.Rngs(int(seed)))
    kw: dict[str, Any] = {}
    if eval_every is not None:
        kw = {"reference": ref.mu_test, "eval_x": prob.x_test, "eval_every": int(eval_every)}
    rec: dict[str, Any] = {
        "objective": objective,
        "objective_options": dict(objective_options or {}),
        "model": spec.name,
        "width": int(spec.width),
        "depth": int(spec.depth),
        "params": int(spec.params),
        "seed": int(seed),
        "steps": int(steps),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "d": int(ref.mu.shape[1]),
    }
    t0 = time.perf_counter()
    diverged = None
    try:
        res = T.fit(
            enc,
            prob.context,
            objective=obj,
            steps=int(steps),
            batch_size=int(batch_size),
            key=int(seed),
            progress=False,
            optimizer=T.default_optimizer(int(steps), learning_rate=learning_rate),
            log_every=int(log_every),
            **kw,
        )
    except T.TrainingDiverged as e:
        diverged, res = int(e.step), e.result
    wall = time.perf_counter() - t0
    rec["diverged"] = diverged
    nan = float("nan")
    if res is None:
        rec.update(
            r2_cca=nan,
            subspace_distance=nan,
            r2_cca_train=nan,
            final_loss=nan,
            wall_s=wall,
            train_s=nan,
            compile_s=nan,
            dtype=None,
        )
        return rec
    h = res.history
    f_tr, f_te = _apply(res.encoder, prob.x), _apply(res.encoder, prob.x_test)
    rec["dtype"] = str(f_te.dtype)
    loss = np.asarray(h["loss"], np.float64)
    rec["final_loss"] = float(np.mean(loss[-max(1, len(loss) // 20) :])) if loss.size else None
    if np.all(np.isfinite(f_tr)) and np.all(np.isfinite(f_te)):
        rec.update(assess(prob, ref, f_tr, f_te, key=int(seed)))
        if measures is not None:
            rec.update(measures(prob, ref, f_tr, f_te))
    else:  # a diverged run's last state can still map some inputs to Inf
        rec.update(r2_cca=nan, subspace_distance=nan, r2_cca_train=nan)
    rec.update(train_s=float(h.train_time), compile_s=float(h.compile_time), wall_s=wall)
    if eval_every is not None and h.evals:
        rec["curve"] = {k: np.asarray(h.evals[k]).tolist() for k in ("step", "r2_cca")}
    return rec


def compare(
    prob: Problem,
    *,
    d: int,
    objectives: Sequence[str],
    sizes: Sequence[Any],
    seeds: Sequence[int],
    steps: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    objective_options: dict[str, dict] | None = None,
    model_options: dict | None = None,
    reference: Reference | None = None,
    key: Any = 0,
    eval_every: int | None = None,
    on_record: Callable[[dict], Any] | None = None,
) -> dict:
    r"""The exact contexture beside encoders trained with every objective x size x seed.

    Args:
        prob: the :class:`Problem`.
        d: dimension of the contexture and of every encoder's output.
        objectives: objective names (:data:`jaxcontext.objectives.NAMES`).
        sizes: ``(width, depth)`` pairs or :class:`~jaxcontext.models.ModelSpec` (see
            :func:`model_sizes`).
        seeds: one run per seed (initialisation and batches).
        steps: optimiser steps per run (:func:`train`).
        batch_size: samples per step.
        learning_rate: peak learning rate of the default optimiser.
        eval_every: record the held-out ``R2_CCA`` during training every this many steps.
        objective_options: ``{objective name: options}``.
        model_options: passed to the encoders (``activation``, ``skip``, ``kind``, ...);
            ``param_dtype`` defaults to the inputs' dtype.
        reference: a solved :class:`Reference` at this ``d`` (None: solved here with ``key``).
        key: the exact solver's key.
        on_record: called with each record as soon as it exists (progress, incremental saving).

    Returns:
        ``{"problem": prob.info, "exact": reference record, "runs": [train records],
        "summary": summarize(runs)}``, JSON-serialisable.
    """
    ref = reference if reference is not None else exact(prob, d, key=key)
    if ref.mu.shape[1] != int(d):
        raise ValueError(f"reference: solved at d={ref.mu.shape[1]}, expected d={d}")
    if on_record is not None:
        on_record(ref.record)
    opts = dict(model_options or {})
    kind = opts.pop("kind", "mlp")
    opts.setdefault("param_dtype", jnp.dtype(np.asarray(prob.x).dtype))
    specs = model_sizes(prob.x.shape[1], int(d), sizes, kind=kind, **opts)
    runs = []
    for objective in objectives:
        for spec in specs:
            for seed in seeds:
                rec = train(
                    prob,
                    ref,
                    objective=objective,
                    spec=spec,
                    seed=seed,
                    steps=steps,
                    batch_size=batch_size,
                    learning_rate=learning_rate,
                    objective_options=(objective_options or {}).get(objective),
                    eval_every=eval_every,
                )
                runs.append(rec)
                if on_record is not None:
                    on_record(rec)
    return {
        "problem": dict(prob.info),
        "exact": ref.record,
        "runs": runs,
        "summary": summarize(runs),
    }


# ------------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------------
_MEASURES = ("r2_cca", "subspace_distance", "r2_cca_train", "probe_error", "train_s")


def summarize(runs: Sequence[dict], measures: Sequence[str] = _MEASURES) -> list[dict]:
    r"""Mean, standard deviation (ddof 1), min and max over seeds per objective and model.

    A run that diverged (its loss turned NaN or Inf; measured at its last finite parameters)
    counts in ``n`` and ``diverged`` but not in the statistics, nor does a NaN measure; each
    measure's ``"count"`` is the number of runs its statistics come from. Rows are sorted by mean
    held-out ``R2_CCA``, best first.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["objective"], r["model"]), []).append(r)
    rows = []
    for (objective, model), rs in groups.items():
        row = {
            "objective": objective,
            "model": model,
            "width": rs[0]["width"],
            "depth": rs[0]["depth"],
            "params": rs[0]["params"],
            "n": len(rs),
            "seeds": [r["seed"] for r in rs],
            "diverged": sum(r.get("diverged") is not None for r in rs),
        }
        ok = [r for r in rs if r.get("diverged") is None]
        for m in measures:
            v = np.asarray([r.get(m, np.nan) for r in ok], np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                row[m] = {
                    "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                    "min": float(v.min()),
                    "max": float(v.max()),
                    "count": int(v.size),
                }
        rows.append(row)
    key = lambda r: -r.get("r2_cca", {}).get("mean", -math.inf)  # noqa: E731
    return sorted(rows, key=key)


def best(summary: Sequence[dict]) -> dict | None:
    """The summary row with the highest mean held-out ``R2_CCA`` (None for no runs)."""
    rows = [r for r in summary if "r2_cca" in r]
    return max(rows, key=lambda r: r["r2_cca"]["mean"]) if rows else None


def table(result: dict) -> str:
    r"""A markdown table of a :func:`compare` result: the exact row, then one row per summary row.

    Columns: encoder, objective, parameters, seeds, held-out ``R2_CCA`` (mean +- std [min, max]),
    subspace distance (mean), probe error (mean), training seconds (mean).
    """

    def stat(row: dict, m: str, full: bool = False) -> str:
        v = row.get(m)
        if not v:
            return "-"
        if full:
            return f"{v['mean']:.3f} +- {v['std']:.3f} [{v['min']:.3f}, {v['max']:.3f}]"
        return f"{v['mean']:.3g}"

    ex = result["exact"]
    lines = [
        "| encoder | objective | params | seeds | R2_CCA held-out | subspace dist. | probe error "
        "| train s |",
        "|---|---|---:|---:|---|---:|---:|---:|",
        f"| exact contexture (d = {ex['d']}) | {ex['method']} | - | - | "
        f"{ex['self_r2_cca']:.3f} (itself) | {ex['self_subspace_distance']:.2g} | "
        f"{ex.get('probe_error', float('nan')):.3g} | {ex['solve_s']:.1f} (solve) |",
    ]
    for r in result["summary"]:
        lines.append(
            f"| {r['model']} | {r['objective']} | {r['params']:,} | {r['n']} | "
            f"{stat(r, 'r2_cca', True)} | {stat(r, 'subspace_distance')} | "
            f"{stat(r, 'probe_error')} | {stat(r, 'train_s')} |"
        )
    return "\n".join(lines)


def environment() -> dict:
    """Device, versions, dtype policy and date of this process, for a results file."""
    import flax
    import optax

    dev = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device": dev.device_kind,
        "devices": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "x64": bool(jax.config.jax_enable_x64),
        "dtype": "float64" if jax.config.jax_enable_x64 else "float32",
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
    }


# ------------------------------------------------------------------------------------------------
# Command lines
# ------------------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """An encoder size ``"WIDTHxDEPTH"`` as the ``(width, depth)`` pair :func:`model_sizes` takes.

    Case and surrounding spaces do not matter. The width must be at least 1 and the depth at least
    0 (``0``: a linear map, as in :class:`~jaxcontext.models.MLP`).

    Raises:
        ValueError: ``text`` is not two integers joined by ``x``, or one of them is out of range.

    Example:
        >>> parse_size("256x3")
        (256, 3)
    """
    try:
        width, depth = (int(part) for part in str(text).strip().lower().split("x"))
    except ValueError:
        raise ValueError(
            f"expected an encoder size WIDTHxDEPTH such as 256x2, got {text!r}"
        ) from None
    if width < 1 or depth < 0:
        raise ValueError(f"encoder size {text!r}: the width must be >= 1 and the depth >= 0")
    return width, depth


def override(preset: Mapping[str, Any], **values: Any) -> dict:
    """A copy of ``preset`` with each of ``values`` that is not None in place of the preset's.

    Command-line flags over a preset grid: a flag left unset (None) keeps the preset's value.

    Raises:
        ValueError: a name the preset does not have (it would silently change nothing).

    Example:
        >>> override({"steps": 600, "seeds": [0, 1]}, steps=None, seeds=[7])
        {'steps': 600, 'seeds': [7]}
    """
    unknown = sorted(set(values) - set(preset))
    if unknown:
        raise ValueError(f"override: {unknown} not in the preset (it has {sorted(preset)})")
    return {**preset, **{k: v for k, v in values.items() if v is not None}}
