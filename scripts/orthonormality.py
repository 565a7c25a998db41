r"""Orthonormality beyond VICReg (issue 10 item 4; the thesis's open problem 1).

Trains the same encoder with the same optimiser and number of steps under different ways of
enforcing ``Cov[Phi] = I`` (or of avoiding the constraint), at several batch sizes and seeds, and
measures each learned encoder against the exact contexture on held-out points.

Methods (all pair access, ``(x, a) ~ P+``, a separate ``Psi`` on the context variable):

* ``vicreg1``, ``vicreg3``: SVME with the authors' VICReg penalty, ``c_std = c_cov = 1`` / ``3``;
* ``vicreg10``: the same with a larger weight, ``c_std = c_cov = 10``;
* ``whiten``: SVME with Cholesky batch whitening (the library default);
* ``newton_schulz``: SVME with a Cholesky- and QR-free symmetric batch whitening, ``C^{-1/2}`` by
  20 coupled Newton-Schulz iterations on the Frobenius-normalised covariance (in the spirit of
  IterNorm, Huang et al. 2019), matmuls only (defined here, :func:`newton_schulz_svme`);
* ``lowrank`` (not in the default grid, ``--methods`` adds it): the NeuralSVD low-rank objective
  without nesting (no constraint at all);
* ``nested_joint``, ``nested_sequential``: the nested low-rank objectives.

Problems:

* ``mehler``: Gaussian noise (Mehler), D = 2, rho = 0.6, d = 5 (total degrees 1 and 2), SVME-type
  objectives on the transformation context as in ``scripts/learned_path_acceptance.py``; reference:
  the exact Hermite products on held-out N(0, I) points.
* ``fair``: statsmodels ``fair`` (6,366 rows, 8 standardised features), a train / test split,
  the kNN context (K = 30) on the training rows, the exact contexture by ``jaxcontext.contexture``;
  reference: its out-of-sample extension on the held-out rows.

Per run: subspace distance and R2_CCA to the exact top-d (held-out), the off-diagonal of the
features' correlation matrix on held-out points (max |.| and Frobenius norm), the post-hoc
singular-value error (Rayleigh-Ritz of the learned span; for Mehler through the Hermite expansion
of the features, exact up to degree ``MEHLER_POSTHOC_DEGREE``), the nested objectives' own
singular-value estimates, the ridge-probe gap to the exact encoder, wall time.

Usage::

    python scripts/orthonormality.py --out benchmarks/orthonormality            # full grid
    python scripts/orthonormality.py --quick --out /tmp/ortho-quick              # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jaxcontext as jc  # noqa: E402
from jaxcontext import contexts, datasets, evaluation, models, objectives  # noqa: E402

HIGHEST = jax.lax.Precision.HIGHEST

#: Every method of the study, in table order.
METHODS_ALL = (
    "vicreg1",
    "vicreg3",
    "vicreg10",
    "whiten",
    "newton_schulz",
    "lowrank",
    "nested_joint",
    "nested_sequential",
)
#: The default grid (``lowrank`` left out to fit the CPU budget).
METHODS = (
    "vicreg1",
    "vicreg3",
    "vicreg10",
    "whiten",
    "newton_schulz",
    "nested_joint",
    "nested_sequential",
)
#: The authors' VICReg grid (the baseline of the acceptance ratio).
VICREG_BASELINE = ("vicreg1", "vicreg3")
MEHLER_POSTHOC_DEGREE = 7

RECORD_FIELDS = (
    "problem", "method", "batch", "seed", "steps", "d", "encoder", "subspace_distance", "r2_cca",
    "offdiag_max", "offdiag_fro", "s_err_posthoc", "s_err_objective", "probe_learned",
    "probe_exact", "probe_gap", "wall_s", "compile_s", "train_s", "eval_s", "final_loss",
)


# ------------------------------------------------------------------------------------------------
# the Cholesky/QR-free whitening variant


def newton_schulz_inv_sqrt(C: jax.Array, iters: int = 20) -> jax.Array:
    r"""``C^{-1/2}`` of a symmetric positive definite ``C`` by Newton-Schulz iterations (matmuls).

    With ``Cn = C / |C|_F`` (eigenvalues in ``(0, 1]``), the coupled iteration ``Y_0 = Cn``,
    ``Z_0 = I``, ``T = (3 I - Z Y) / 2``, ``Y <- Y T``, ``Z <- T Z`` takes ``Z`` to ``Cn^{-1/2}``
    (IterNorm uses the uncoupled ``P <- (3 P - P^3 Cn) / 2`` and the trace; that form is unstable
    in float32 for ill-conditioned ``C``, measured: NaN at condition 1e4, while the coupled one
    converges; the Frobenius norm is a tighter bound on the largest eigenvalue). Returns
    ``Z_T / sqrt(|C|_F)`` (symmetrised). Each
    iteration multiplies the gain of a low-variance direction by at most 1.5, so ``iters``
    iterations whiten directions with ``lambda / |C|_F`` above about ``1.5^(-2 iters)`` and
    under-amplify the rest (a soft whitening: with too few iterations collapse becomes cheap,
    measured at 8 iterations on fair, d = 32, batch 128); the gradient is that of the unrolled
    matmuls.
    """
    d = C.shape[0]
    tr = jnp.sqrt(jnp.sum(C * C))
    Cn = C / tr
    eye = jnp.eye(d, dtype=C.dtype)
    Y, Z = Cn, eye
    for _ in range(int(iters)):
        T = 1.5 * eye - 0.5 * jnp.matmul(Z, Y, precision=HIGHEST)
        Y = jnp.matmul(Y, T, precision=HIGHEST)
        Z = jnp.matmul(T, Z, precision=HIGHEST)
    return 0.5 * (Z + Z.T) / jnp.sqrt(tr)


def newton_schulz_svme(batch: objectives.Batch, iters: int = 20, eps: float = 1e-6):
    """SVME with ``Phi`` whitened by :func:`newton_schulz_inv_sqrt` of its batch covariance."""
    phi = batch.phi
    psi = batch.psi
    b, d = phi.shape
    B = phi - jnp.mean(phi, axis=0)
    C = jnp.matmul(B.T, B, precision=HIGHEST) / b
    C = 0.5 * (C + C.T)
    C = C + (eps * jnp.trace(C) / d) * jnp.eye(d, dtype=C.dtype)
    z = jnp.matmul(B, newton_schulz_inv_sqrt(C, iters), precision=HIGHEST)
    diff = z - (psi - jnp.mean(psi, axis=0))
    loss = jnp.sum(diff * diff) / (b * d)
    return loss, {"svme": loss}


def make_objective(method: str) -> Any:
    """The objective of a method name (see :data:`METHODS`)."""
    if method.startswith("vicreg"):
        c = float(method[len("vicreg"):])
        return objectives.get("svme", constraint="vicreg", c_std=c, c_cov=c)
    if method == "whiten":
        return objectives.get("svme", constraint="whiten")
    if method == "newton_schulz":
        return objectives.get(newton_schulz_svme, data="pairs", psi="separate")
    if method in ("lowrank", "nested_joint", "nested_sequential"):
        return objectives.get(method)
    raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


# ------------------------------------------------------------------------------------------------
# metrics


def offdiag_stats(f: Any) -> tuple[float, float]:
    """Max |.| and Frobenius norm of the off-diagonal of the features' correlation matrix."""
    R = np.corrcoef(np.asarray(f, np.float64), rowvar=False)
    off = R - np.diag(np.diag(R))
    return float(np.max(np.abs(off))), float(np.sqrt(np.sum(off * off)))


def rel_s_error(s_hat: Any, s_ref: Any) -> float:
    """``max_i |s_hat_i - s_i| / s_i``, both sorted descending."""
    a = np.sort(np.asarray(s_hat, np.float64))[::-1]
    b = np.sort(np.asarray(s_ref, np.float64))[::-1]
    return float(np.max(np.abs(a - b) / b))


def _hermite_degrees(dim: int, n: int) -> np.ndarray:
    deg, k = [], 0
    while len(deg) < n:
        deg += [k] * math.comb(k + dim - 1, dim - 1)
        k += 1
    return np.asarray(deg[:n])


def mehler_posthoc_s(f: Any, x: Any, rho: float, degree: int = MEHLER_POSTHOC_DEGREE) -> np.ndarray:
    r"""Post-hoc singular values of a learned span on the Mehler problem, via Hermite projection.

    The features are least-squares fitted on the normalised Hermite products up to total degree
    ``degree`` (``f = c 1 + H A + r``); ``T T*`` is diagonal in that basis (``rho^{2 |alpha|}``),
    so ``B = A^T diag(rho^{2 deg}) A``, ``C = A^T A + r^T r / n`` (population inner products of the
    fitted part; the residual's ``T T*`` weight is at most ``rho^{2 (degree + 1)}``, dropped), and
    the generalised eigenvalues of ``B v = lambda C v`` estimate ``s_i^2``. Exact features give the
    exact values.
    """
    f = np.asarray(f, np.float64)
    x = np.asarray(x, np.float64)
    n, dim = x.shape
    nb = math.comb(degree + dim, dim)
    H = datasets.hermite_functions(x, nb)
    deg = _hermite_degrees(dim, nb)
    coef, *_ = np.linalg.lstsq(H, f, rcond=None)
    r = f - H @ coef
    A = coef[1:]
    C = A.T @ A + r.T @ r / n
    B = (A * (rho ** (2.0 * deg[1:]))[:, None]).T @ A
    L = np.linalg.cholesky(C + 1e-12 * np.trace(C) * np.eye(C.shape[0]))
    Li = np.linalg.inv(L)
    lam = np.linalg.eigvalsh(Li @ B @ Li.T)[::-1]
    return np.sqrt(np.maximum(lam, 0.0))


def probe_error(ftr: Any, ytr: Any, fte: Any, yte: Any) -> float:
    """Held-out relative MSE (SSE / SST) of a cross-validated ridge probe."""
    res = evaluation.ridge_probe(np.asarray(ftr), np.asarray(ytr), np.asarray(fte), np.asarray(yte),
                                 key=0, task="regression")
    return float(res.test["rel_mse"])


# ------------------------------------------------------------------------------------------------
# problems


@dataclasses.dataclass
class Problem:
    """A learning problem with its exact reference.

    Attributes:
        name: problem name.
        context: the training context (pair sampler).
        in_dim, d: input dimension, number of singular functions.
        x_eval: held-out inputs; ``ref_eval`` the exact top-d functions there.
        s_exact: ``(d,)`` exact singular values.
        posthoc: ``posthoc(encoder) -> (d,)`` post-hoc singular values of the learned span.
        probe: ``(x_tr, y_tr, x_te, y_te)`` for the ridge probe; ``ref_probe`` the exact encoder's
            features at ``x_tr`` and ``x_te``.
        info: description for the JSON.
        probe_exact: the exact encoder's probe error (computed once, on first use).
    """

    name: str
    context: Any
    in_dim: int
    d: int
    x_eval: np.ndarray
    ref_eval: np.ndarray
    s_exact: np.ndarray
    posthoc: Callable[[Callable], np.ndarray]
    probe: tuple
    ref_probe: tuple
    info: dict
    probe_exact: float | None = None


def mehler_problem(*, m: int = 20000, n_eval: int = 20000, n_probe: int = 5000, rho: float = 0.6,
                   seed: int = 0) -> Problem:
    """Gaussian noise (Mehler), D = 2, d = 5: the setting of ``learned_path_acceptance.py``."""
    dim, d = 2, 5
    prob = datasets.gaussian_noise(m, dim, rho, key=jax.random.key(seed))
    x = np.asarray(prob.x)
    ctx = contexts.transformation(x, prob.info["pair_sampler"])
    xt = np.asarray(jax.random.normal(jax.random.key(seed + 1), (n_eval, dim)))
    H = datasets.hermite_functions(xt, d + 1)[:, 1:]
    deg = _hermite_degrees(dim, d + 1)[1:]
    s = rho ** deg.astype(np.float64)
    # synthetic target He_1(x_1) + He_2(x_2) / sqrt(2) + noise 0.1, inside the exact span
    rng = np.random.default_rng(seed + 2)

    def target(z):
        z = np.asarray(z, np.float64)
        return z[:, 0] + (z[:, 1] ** 2 - 1) / math.sqrt(2) + 0.1 * rng.normal(size=len(z))

    xtr, xte = x[:n_probe], xt[:n_probe]
    probe = (xtr, target(xtr), xte, target(xte))
    Hp = datasets.hermite_functions(xtr, d + 1)[:, 1:]
    xph = xt[: min(n_eval, 20000)]
    return Problem(
        name="mehler", context=ctx, in_dim=dim, d=d, x_eval=xt, ref_eval=H, s_exact=s,
        posthoc=lambda enc: mehler_posthoc_s(np.asarray(enc(xph)), xph, rho),
        probe=probe, ref_probe=(Hp, H[:n_probe]),
        info={"problem": f"Gaussian noise (Mehler) D=2 rho={rho} d=5, transformation context "
                         f"(pair sampler), m={m} training points, {n_eval} held-out N(0, I) "
                         "points; "
                         "probe target He_1(x_1) + He_2(x_2)/sqrt(2) + 0.1 noise",
              "s_exact": s.tolist()},
    )


def fair_problem(*, d: int = 32, k: int = 30, n_train: int = 5000, seed: int = 0,
                 contexture_d: int | None = None) -> Problem:
    """statsmodels ``fair``, standardised, kNN (K = ``k``) on ``n_train`` rows, exact top-``d``."""
    data = datasets.load("fair", standardize=True)
    x = np.asarray(data.x)
    y = np.asarray(data.y, np.float64)
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, te = perm[:n_train], perm[n_train:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = contexts.knn(x[tr], k)
    t0 = time.perf_counter()
    ct = jc.contexture(ctx, max(d, contexture_d or d) + 1, key=0)
    t_exact = time.perf_counter() - t0
    s_all = np.asarray(ct.s, np.float64)
    ct_d = ct.truncate(d)
    mu_te = np.asarray(ct_d.evaluate(x[te]))
    mu_tr = np.asarray(ct_d.mu)
    xtr = x[tr]
    return Problem(
        name="fair", context=ctx, in_dim=x.shape[1], d=d, x_eval=x[te], ref_eval=mu_te,
        s_exact=s_all[:d],
        posthoc=lambda enc: np.asarray(
            evaluation.posthoc_spectrum(np.asarray(enc(xtr)), context=ctx).s),
        probe=(xtr, y[tr], x[te], y[te]), ref_probe=(mu_tr, mu_te),
        info={"problem": f"statsmodels fair (standardised, {x.shape[1]} features), kNN K={k} "
                         f"context on {n_train} training rows, exact top-{d} contexture, "
                         f"{len(te)} held-out rows; probe target 'affairs'",
              "s_exact": s_all[:d].tolist(), "s_next": float(s_all[d]),
              "gap_s_d_over_s_d+1": float(s_all[d - 1] / s_all[d] - 1),
              "exact_residual_max": float(np.max(np.asarray(ct.spectrum.residuals))),
              "exact_method": str(ct.spectrum.info.method), "exact_time_s": t_exact},
    )


# ------------------------------------------------------------------------------------------------
# one run


def run_one(problem: Problem, method: str, *, batch: int, seed: int, steps: int, width: int = 128,
            depth: int = 2, learning_rate: float = 1e-3, log_every: int = 250) -> dict:
    """Train one encoder and measure it against the exact reference: one record."""
    enc = models.MLP(problem.in_dim, problem.d, width=width, depth=depth, rngs=nnx.Rngs(seed))
    obj = make_objective(method)
    t0 = time.perf_counter()
    res = jc.fit(enc, problem.context, objective=obj, steps=steps, batch_size=batch, key=seed,
                 progress=False, log_every=min(log_every, steps),
                 optimizer=jc.training.default_optimizer(steps, learning_rate=learning_rate))
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    return _measure(problem, res.encoder, res.history, method=method, batch=batch, seed=seed,
                    steps=steps, desc=f"MLP({problem.in_dim}, {problem.d}, width={width}, "
                    f"depth={depth})", wall=wall, t_eval0=t1)


def _measure(problem: Problem, encoder: Callable, history: Any, *, method: str, batch: int,
             seed: int, steps: int, desc: str = "", wall: float = 0.0,
             t_eval0: float | None = None) -> dict:
    t_eval0 = time.perf_counter() if t_eval0 is None else t_eval0
    f = np.asarray(encoder(problem.x_eval), np.float64)
    ref = problem.ref_eval
    rec = {
        "problem": problem.name, "method": method, "batch": int(batch), "seed": int(seed),
        "steps": int(steps), "d": problem.d, "encoder": desc,
        "subspace_distance": float(evaluation.subspace_distance(f, ref)),
        "r2_cca": float(evaluation.cca(f, ref).r2),
    }
    rec["offdiag_max"], rec["offdiag_fro"] = offdiag_stats(f)
    rec["s_err_posthoc"] = rel_s_error(problem.posthoc(encoder), problem.s_exact)
    s_obj = None
    if history is not None and "s" in history.keys():
        s_hist = np.asarray(history["s"], np.float64)
        s_obj = s_hist[-min(100, len(s_hist)):].mean(axis=0)
    rec["s_err_objective"] = None if s_obj is None else rel_s_error(s_obj, problem.s_exact)
    rec["s_objective"] = None if s_obj is None else s_obj.tolist()
    xtr, ytr, xte, yte = problem.probe
    rec["probe_learned"] = probe_error(encoder(xtr), ytr, encoder(xte), yte)
    if problem.probe_exact is None:
        problem.probe_exact = probe_error(problem.ref_probe[0], ytr, problem.ref_probe[1], yte)
    rec["probe_exact"] = problem.probe_exact
    rec["probe_gap"] = rec["probe_learned"] - rec["probe_exact"]
    rec["wall_s"] = float(wall)
    rec["compile_s"] = float(getattr(history, "compile_time", 0.0) or 0.0)
    rec["train_s"] = float(getattr(history, "train_time", 0.0) or 0.0)
    rec["final_loss"] = (float(np.mean(np.asarray(history["loss"])[-50:]))
                         if history is not None else None)
    rec["eval_s"] = time.perf_counter() - t_eval0
    return rec


def measure_features(problem: Problem, encoder: Callable, *, method: str = "exact") -> dict:
    """The metrics of an encoder with no training history (e.g. the exact one, for checks)."""
    return _measure(problem, encoder, None, method=method, batch=0, seed=0, steps=0,
                    desc=method)


# ------------------------------------------------------------------------------------------------
# grid, summary, plot


def run_grid(problems: Sequence[Problem], methods: Sequence[str], batches: Sequence[int],
             seeds: Sequence[int], *, steps: int, width: int, depth: int,
             jsonl: str | None = None, done: Sequence[dict] = ()) -> list[dict]:
    """Every (problem, method, batch, seed) run; appends each record to ``jsonl`` as it finishes
    and skips the ones already in ``done`` (resume)."""
    have = {(r["problem"], r["method"], r["batch"], r["seed"]) for r in done}
    recs = list(done)
    for prob in problems:
        for batch in batches:
            for method in methods:
                for seed in seeds:
                    if (prob.name, method, batch, seed) in have:
                        continue
                    try:
                        rec = run_one(prob, method, batch=batch, seed=seed, steps=steps,
                                      width=width, depth=depth)
                    except jc.training.TrainingDiverged as e:
                        rec = {"problem": prob.name, "method": method, "batch": batch,
                               "seed": seed, "steps": steps, "d": prob.d,
                               "diverged_at": int(e.step), "subspace_distance": None}
                    recs.append(rec)
                    print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v)
                                      for k, v in rec.items() if k != "s_objective"}),
                          flush=True)
                    if jsonl:
                        with open(jsonl, "a") as fh:
                            fh.write(json.dumps(rec) + "\n")
    return recs


def summarise(recs: Sequence[dict]) -> dict:
    """Median / min / max of every metric per (problem, method, batch)."""
    out: dict = {}
    keys = ("subspace_distance", "r2_cca", "offdiag_max", "offdiag_fro", "s_err_posthoc",
            "s_err_objective", "probe_gap", "wall_s", "train_s")
    for r in recs:
        out.setdefault(r["problem"], {}).setdefault(r["method"], {}).setdefault(
            str(r["batch"]), []).append(r)
    summ: dict = {}
    for p, by_m in out.items():
        for m, by_b in by_m.items():
            for b, rs in by_b.items():
                cell = {"n": len(rs)}
                for k in keys:
                    v = [r.get(k) for r in rs if r.get(k) is not None]
                    if v:
                        cell[k] = {"median": float(np.median(v)), "min": float(np.min(v)),
                                   "max": float(np.max(v))}
                summ.setdefault(p, {}).setdefault(m, {})[b] = cell
    return summ


def acceptance(summ: dict, *, targets: dict | None = None) -> dict:
    """Best method against the authors' VICReg grid, at each batch size (equal budget).

    ``ratio_median`` = best VICReg median / best other median; ``ratio_conservative`` = best VICReg
    seed (min) / the best method's worst seed (max).
    """
    targets = targets or {"mehler": 5.0, "fair": 2.0}
    res: dict = {}
    for p, by_m in summ.items():
        batches = sorted({b for m in by_m.values() for b in m}, key=int)
        rows = []
        for b in batches:
            def med(m, by_m=by_m, b=b):
                c = by_m.get(m, {}).get(b, {}).get("subspace_distance")
                return c if c else None
            vic = [(m, med(m)) for m in VICREG_BASELINE if med(m)]
            oth = [(m, med(m)) for m in by_m if m not in VICREG_BASELINE and med(m)]
            if not vic or not oth:
                continue
            vm, vc = min(vic, key=lambda t: t[1]["median"])
            bm, bc = min(oth, key=lambda t: t[1]["median"])
            rows.append({
                "batch": int(b), "vicreg_best": vm, "vicreg_median": vc["median"],
                "best_method": bm, "best_median": bc["median"],
                "ratio_median": vc["median"] / bc["median"],
                "ratio_conservative": vc["min"] / bc["max"],
            })
        tgt = targets.get(p)
        met = bool(rows) and tgt is not None and all(r["ratio_median"] >= tgt for r in rows)
        res[p] = {"target": tgt, "per_batch": rows, "met_all_batches_median": met,
                  "met_any_batch_conservative": bool(
                      tgt is not None and any(r["ratio_conservative"] >= tgt for r in rows))}
    return res


def plot(recs: Sequence[dict], path: str, methods: Sequence[str]) -> None:
    """Subspace distance vs batch size per method (median, min-max bars), one panel per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = [p for p in ("mehler", "fair") if any(r["problem"] == p for r in recs)]
    fig, axes = plt.subplots(1, len(probs), figsize=(6.5 * len(probs), 4.8), squeeze=False)
    for ax, p in zip(axes[0], probs, strict=True):
        for i, m in enumerate(methods):
            rs = [r for r in recs if r["problem"] == p and r["method"] == m
                  and r.get("subspace_distance") is not None]
            bs = sorted({r["batch"] for r in rs})
            if not bs:
                continue
            vals = [[r["subspace_distance"] for r in rs if r["batch"] == b] for b in bs]
            med = np.array([np.median(v) for v in vals])
            lo = med - np.array([np.min(v) for v in vals])
            hi = np.array([np.max(v) for v in vals]) - med
            xs = np.array(bs) * (1.0 + 0.03 * (i - len(methods) / 2))
            ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=m,
                        linestyle="--" if m.startswith("vicreg") else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("subspace distance to exact top-d (held-out)")
        d = next(r["d"] for r in recs if r["problem"] == p)
        st = sorted({r["steps"] for r in recs if r["problem"] == p})
        ax.set_title(f"{p} (d = {d}, {'/'.join(map(str, st))} steps); median, min-max over seeds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def markdown_tables(summ: dict, methods: Sequence[str]) -> str:
    """Markdown: per problem, subspace distance median [min, max] per method and batch, then the
    medians of the other metrics."""
    lines = []
    for p, by_m in summ.items():
        batches = sorted({b for m in by_m.values() for b in m}, key=int)
        lines += [f"**{p}**: subspace distance to the exact top-d, median [min, max] over seeds",
                  "",
                  "| method | " + " | ".join(f"batch {b}" for b in batches) + " |",
                  "|---|" + "---|" * len(batches)]
        for m in methods:
            if m not in by_m:
                continue
            cells = []
            for b in batches:
                c = by_m[m].get(b, {}).get("subspace_distance")
                cells.append(f"{_fmt(c['median'])} [{_fmt(c['min'])}, {_fmt(c['max'])}]"
                             if c else "-")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        bl = " / ".join(batches)
        lines += ["", f"**{p}**: other metrics, median over seeds (batch {bl})", "",
                  "| method | R2_CCA | offdiag max | offdiag Frobenius | s error (post-hoc) | "
                  "s error (objective) | probe gap | train s |",
                  "|---|---|---|---|---|---|---|---|"]
        for m in methods:
            if m not in by_m:
                continue
            row = []
            for k in ("r2_cca", "offdiag_max", "offdiag_fro", "s_err_posthoc", "s_err_objective",
                      "probe_gap", "train_s"):
                vals = []
                for b in batches:
                    c = by_m[m].get(b, {}).get(k)
                    vals.append(_fmt(c["median"]) if c else "-")
                row.append(" / ".join(vals))
            lines.append(f"| {m} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def environment(argv: Sequence[str]) -> dict:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "dtype": "float32",
        "x64": bool(jax.config.jax_enable_x64),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(argv),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv if argv is None else ["scripts/orthonormality.py", *argv])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--problems", default="mehler,fair")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--batches", default="128,512,2048")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--fair-d", type=int, default=32)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 methods, batch 128, 1 seed, 60 steps, small problems")
    p.add_argument("--out", default="benchmarks/orthonormality", help="output folder")
    p.add_argument("--resume", action="store_true", help="skip runs already in OUT/runs.jsonl")
    p.add_argument("--cache", default="/tmp/jaxcontext-ortho-cache",
                   help="JAX persistent compilation cache ('' to disable)")
    p.add_argument("--report", action="store_true",
                   help="print the markdown tables of OUT/results.json and exit")
    a = p.parse_args(argv[1:])
    if a.report:
        with open(os.path.join(a.out, "results.json")) as fh:
            res = json.load(fh)
        print(markdown_tables(res["summary"], res["config"]["methods"]))
        print(json.dumps(res["acceptance"], indent=1))
        return res
    if a.cache:
        jax.config.update("jax_compilation_cache_dir", a.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    env = environment(argv)  # date and load average at the start of the grid
    methods = a.methods.split(",")
    for m in methods:
        make_objective(m)
    batches = [int(b) for b in a.batches.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    steps, width, fair_d = a.steps, a.width, a.fair_d
    names = a.problems.split(",")
    if a.quick:
        methods, batches, seeds, steps, width, fair_d = (
            ["vicreg1", "nested_sequential"], [128], [0], 60, 32, 8)
    os.makedirs(a.out, exist_ok=True)
    probs = []
    t0 = time.perf_counter()
    for n in names:
        if n == "mehler":
            probs.append(mehler_problem(m=4000 if a.quick else 20000,
                                        n_eval=4000 if a.quick else 20000,
                                        n_probe=1000 if a.quick else 5000))
        elif n == "fair":
            probs.append(fair_problem(d=fair_d, n_train=2000 if a.quick else 5000))
        else:
            raise SystemExit(f"unknown problem {n!r}")
    setup_s = time.perf_counter() - t0
    jsonl = os.path.join(a.out, "runs.jsonl")
    done = []
    if a.resume and os.path.exists(jsonl):
        with open(jsonl) as fh:
            done = [json.loads(line) for line in fh if line.strip()]
    elif os.path.exists(jsonl):
        os.remove(jsonl)
    exact = [measure_features(pr, _fixed(pr), method="exact") for pr in probs]
    recs = run_grid(probs, methods, batches, seeds, steps=steps, width=width, depth=a.depth,
                    jsonl=jsonl, done=done)
    summ = summarise(recs)
    out = {
        "environment": env,
        "config": {"methods": methods, "batches": batches, "seeds": seeds, "steps": steps,
                   "encoder": f"MLP(width={width}, depth={a.depth}, relu)",
                   "optimizer": "jaxcontext default: AdamW lr 1e-3, wd 1e-5, warm-up + cosine, "
                                "clip 1", "setup_s": setup_s,
                   "problems": {pr.name: pr.info for pr in probs}},
        "exact_sanity": exact,
        "records": recs,
        "summary": summ,
        "acceptance": acceptance(summ),
    }
    out["environment"]["load_average_end"] = list(os.getloadavg())
    prev = os.path.join(a.out, "results.json")
    if done and os.path.exists(prev):  # a resumed run keeps the environment of the first one
        with open(prev) as fh:
            first = json.load(fh).get("environment")
        if first:
            out["environment_resumed"] = out["environment"]
            out["environment"] = first
    with open(os.path.join(a.out, "results.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    plot(recs, os.path.join(a.out, "subspace_distance.png"), methods)
    print(json.dumps(out["acceptance"], indent=1))
    return out


def _fixed(problem: Problem) -> Callable:
    """The exact encoder as a function of the evaluation / probe points (lookup by identity)."""
    table = [(problem.x_eval, problem.ref_eval), (problem.probe[0], problem.ref_probe[0]),
             (problem.probe[2], problem.ref_probe[1])]

    def enc(x):
        x = np.asarray(x)
        for xs, fs in table:
            if x.shape == xs.shape and np.array_equal(x, xs):
                return fs
        if problem.name == "mehler":
            return datasets.hermite_functions(x, problem.d + 1)[:, 1:]
        raise ValueError("exact encoder: unknown points")

    return enc


if __name__ == "__main__":
    main()
