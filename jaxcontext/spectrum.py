r"""The contexture of a context, and the spectrum metrics of REFERENCE.md section 4.

* :func:`contexture` -- the top-``d`` non-trivial singular values ``s_1..s_d`` and singular functions
  ``mu_1..mu_d`` of a :class:`~jaxcontext.contexts.Context` (the trivial pair ``s_0 = 1``, ``mu_0 = 1``
  removed by exact deflation, so a degenerate ``s_1 = 1`` is kept), their values at the samples with
  unit norm in ``L2(P_X)``, and evaluation at new inputs where ``P+(a|x)`` can be evaluated there.
* :func:`tau` -- the usefulness metric ``tau_d`` (Eq. 4) and ``tau = min_{d <= d0} tau_d``.
* :func:`decay_rate` -- the fit ``s_i^2 = exp(-lambda i)``.
* :func:`compatibility` -- ``rho(f)`` of a target given by its values at the samples.
* :func:`worst_case_error` -- Theorem 16's ``min err`` over the compatible class ``F_eps``.
* :func:`ratio_trace` -- ``RT = tr(C^{-1} B)`` of an arbitrary encoder (Lemma 22).

Example:
    >>> import numpy as np
    >>> from jaxcontext.spectrum import tau
    >>> s = 0.9 ** np.arange(1, 40)                   # s_1, s_2, ...
    >>> r = tau(s, d0=32)
    >>> int(r.d), round(float(r.tau), 3)
    (10, 1.989)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validation as V
from . import operators as ops

__all__ = [
    "Contexture",
    "contexture",
    "TauResult",
    "tau",
    "decay_rate",
    "compatibility",
    "worst_case_error",
    "ratio_trace",
]

HIGHEST = jax.lax.Precision.HIGHEST
# Contexture.evaluate: new points are processed in chunks whose conditional rows (chunk x M, dense)
# hold at most this many entries (64 MB in float32), so evaluating 10,000 points of a 100,000-point
# kNN context never builds a 10,000 x 100,000 array.
EVAL_CHUNK_ENTRIES = 2**24


class Contexture(NamedTuple):
    """The top-``d`` contexture of a context (trivial pair removed).

    Attributes:
        s: ``(d,)`` singular values ``s_1 >= ... >= s_d`` (estimates of the population ``s_i``).
        mu: ``(m, d)`` left singular functions at the samples, ``E_{P_X}[mu_i mu_j] = delta_ij``
            (with uniform weights: ``mu_i(x_j) = sqrt(m) U[j, i]``).
        nu: ``(M, d)`` right singular functions at the context values (unit norm in ``L2(P_A)``),
            or None for contexts given by their dual kernel.
        spectrum: the solver's :class:`~jaxcontext.linalg.Spectrum` on the deflated operator
            (residual certificates and solver info; its ``s`` are squared for kernel contexts).
        context: the context it came from (used by :meth:`evaluate`).
    """

    s: jax.Array
    mu: jax.Array
    nu: Any
    spectrum: Any
    context: Any

    def evaluate(self, x_new: Any, *, y: Any = None) -> jax.Array:
        r"""Evaluate ``mu_1..mu_d`` at new inputs: ``mu_i(x) = (T nu_i)(x) / s_i``.

        ``T nu_i (x) = sum_j P+(a_j | x) nu_i(a_j)`` needs the context to evaluate ``P+(a|x)`` at new
        points (kNN, RBF, labels, kernels: ``Context.conditional_rows``). A label context's
        conditional at a new point is its label: pass the new points' labels as ``y`` (regression
        targets likewise; mixtures with a label part too). For a context given by its
        dual kernel this is the Nystrom extension ``mu_i(x) = E_{x'}[k(x, x') mu_i(x')] / s_i^2``.
        Memory stays bounded for any number of points: kNN contexts average ``nu`` over each
        point's neighbours (no dense row), others build their dense rows in chunks of at most
        ``EVAL_CHUNK_ENTRIES`` entries (:meth:`~jaxcontext.contexts.Context.conditional_rows_times`).
        """
        if self.nu is None:  # dual-kernel context: rows are k(x, x_l)
            w = jnp.asarray(self.context.weights)
            M = w[:, None] * self.mu
            return self.context.conditional_rows_times(
                x_new, M, y=y, max_entries=EVAL_CHUNK_ENTRIES) / self.s**2
        return self.context.conditional_rows_times(
            x_new, self.nu, y=y, max_entries=EVAL_CHUNK_ENTRIES) / self.s

    @property
    def d(self) -> int:
        """The number of singular pairs held."""
        return int(self.s.shape[0])

    def truncate(self, d: int) -> Contexture:
        r"""The top-``d`` contexture contained in this one (no new solve, no compile).

        For a sweep over ``d`` (``tau_d``, probes at several dimensions), solve once at the largest
        ``d`` and slice: the top-``d`` triplets of a certified top-``D`` solve are the certified
        top-``d`` ones (each keeps its own residual). Solving per ``d`` would trace and compile the
        solver again for every new ``d``.

        Example:
            >>> import jaxcontext as jc
            >>> ct = jc.contexture(jc.datasets.cycle(64).context, 8, key=0)
            >>> ct.truncate(3).mu.shape
            (64, 3)
        """
        d = V.check_positive_int(d, "d", upper=self.d)
        sp = self.spectrum
        spec = sp._replace(
            s=sp.s[:d], U=sp.U[:, :d], V=sp.V[:, :d], residuals=sp.residuals[:d],
            info=sp.info._replace(converged=np.asarray(sp.info.converged)[:d]),
        )
        nu = None if self.nu is None else self.nu[:, :d]
        return self._replace(s=self.s[:d], mu=self.mu[:, :d], nu=nu, spectrum=spec)


def contexture(
    context: Any,
    d: int,
    *,
    key: Any = None,
    method: str = "auto",
    tol: float | None = None,
    **svds_kwargs: Any,
) -> Contexture:
    r"""Top-``d`` non-trivial singular values and functions of a context.

    The context's normalised operator ``Z = diag(sqrt w) P diag(p)^{-1/2}`` has the trivial pair
    ``s_0 = 1`` with left vector ``sqrt(w)`` and right vector ``sqrt(p)``; it is removed exactly by
    deflation (``Z - sqrt(w) sqrt(p)^T``), and :func:`jaxcontext.linalg.svds` computes the top ``d``
    of what remains. Left vectors ``u`` become functions ``mu = u / sqrt(w)``, right vectors
    ``v`` become ``nu = v / sqrt(p)``.

    Args:
        context: a :class:`~jaxcontext.contexts.Context`.
        d: number of non-trivial singular pairs (``1 <= d < min(m, M)``).
        key, method, tol, **svds_kwargs: passed to :func:`jaxcontext.linalg.svds`.

    Returns:
        A :class:`Contexture`.
    """
    from .linalg import svds

    Z = context.operator()
    m, M = Z.shape
    d = V.check_positive_int(d, "d", upper=min(m, M) - 1)
    w = jnp.asarray(context.weights, Z.dtype)
    u0 = jnp.asarray(context.trivial_left(), Z.dtype)
    squared = bool(getattr(context, "squared", False))
    v0 = u0 if squared else jnp.asarray(context.trivial_right(), Z.dtype)
    Zd = ops.deflate(Z, u0, v0, 1.0)
    if squared or getattr(context, "symmetric", False):
        svds_kwargs.setdefault("hermitian", True)
    spec = svds(Zd, d, key=key, method=method, tol=tol, **svds_kwargs)
    s = jnp.sqrt(jnp.maximum(spec.s, 0.0)) if squared else spec.s
    sw = jnp.sqrt(w)
    mu = spec.U / jnp.where(sw > 0, sw, 1.0)[:, None]
    nu = None
    if not squared and getattr(context, "p", None) is not None:  # teacher contexts have no p
        sp = jnp.sqrt(jnp.asarray(context.marginal(), Z.dtype))
        nu = jnp.where(sp[:, None] > 0, spec.V / jnp.where(sp > 0, sp, 1.0)[:, None], 0.0)
    return Contexture(s=s, mu=mu, nu=nu, spectrum=spec, context=context)


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def _singular_values(s: Any, name: str = "s") -> np.ndarray:
    a = np.asarray(s, np.float64).ravel()
    V.check_nonempty(a, name)
    V.check_finite(a, name)
    if a.min() < 0 or a.max() > 1 + 1e-5:
        raise ValueError(
            f"{name}: singular values of a context lie in [0, 1], got range [{a.min():.4g}, {a.max():.4g}]"
        )
    if np.any(np.diff(a) > 1e-6 * max(1.0, a.max())):
        raise ValueError(f"{name}: singular values must be sorted in descending order")
    return np.minimum(a, 1.0)


class TauResult(NamedTuple):
    """``tau = min_d tau_d``, the minimising ``d``, and the whole curve ``tau_d`` for d = 1..d0."""

    tau: float
    d: int
    tau_d: np.ndarray


def tau(s: Any, *, d0: int | None = None, beta: float = 1.0) -> TauResult:
    r"""Context usefulness (REFERENCE.md section 4, Eq. 4).

    ``tau_d = 1 / (1 - s_{d+1}^2) + beta * (s_1^2 + ... + s_d^2) / (s_1^2 + ... + s_{d0}^2)`` and
    ``tau = min_{d <= d0} tau_d`` (smaller is better). Do not trust it near ``tau ~ beta + 1``
    (extreme association).

    Args:
        s: non-trivial singular values ``s_1, s_2, ...`` in descending order; at least ``d0 + 1``
            of them (``tau_{d0}`` needs ``s_{d0+1}``).
        d0: largest dimension considered; default ``len(s) - 1``, the most the given values allow.
            The paper uses ``d0 = 512`` (compute ``s_1..s_513`` for its setting).
        beta: weight of the second term.
    """
    a = _singular_values(s)
    if d0 is None:
        if a.size < 2:
            raise ValueError(f"s: tau needs at least two values (s_1, s_2), got {a.size}")
        d0 = a.size - 1
    d0 = V.check_positive_int(d0, "d0")
    if a.size < d0 + 1:
        raise ValueError(
            f"s: tau with d0={d0} needs s_1..s_{d0 + 1} ({d0 + 1} values), got {a.size}"
        )
    s2 = a**2
    total = s2[:d0].sum()
    if total <= 0:
        raise ValueError("s: all of s_1..s_d0 are zero; A is independent of X and tau is undefined")
    d = np.arange(1, d0 + 1)
    with np.errstate(divide="ignore"):
        first = np.where(s2[d] < 1.0, 1.0 / (1.0 - s2[d]), np.inf)
    curve = first + beta * np.cumsum(s2[:d0]) / total
    best = int(np.argmin(curve))
    return TauResult(tau=float(curve[best]), d=best + 1, tau_d=curve)


def decay_rate(s: Any, *, start: int = 1) -> tuple[float, float]:
    r"""Fit ``s_i^2 = exp(-lambda i)`` by least squares on ``log s_i^2`` (through the origin).

    Args:
        s: non-trivial singular values ``s_1, s_2, ...`` (descending); zeros are excluded.
        start: index of the first value (1 for ``s_1``).

    Returns:
        ``(lambda, r2)``: the decay rate (large means weak association) and the fit's coefficient of
        determination on the log scale.
    """
    a = _singular_values(s)
    i = np.arange(start, start + a.size, dtype=np.float64)
    keep = a > 0
    if keep.sum() < 2:
        raise ValueError("s: need at least two non-zero singular values to fit a decay rate")
    i, y = i[keep], np.log(a[keep] ** 2)
    lam = -float(i @ y / (i @ i))
    resid = y + lam * i
    ss = ((y - y.mean()) ** 2).sum()
    r2 = float(1 - (resid**2).sum() / ss) if ss > 0 else 1.0
    return lam, r2


def _features(values: Any, w: jax.Array, name: str) -> jax.Array:
    """Check ``values`` (``(m,)`` or ``(m, k)`` real numbers) and return them as ``(m, k)`` floats.

    Shape and dtype checks always run (they are static); the finiteness check only on concrete
    values, so the metrics stay traceable.
    """
    f = values if isinstance(values, jax.Array) else np.asarray(values)
    if jnp.iscomplexobj(f):
        raise TypeError(f"{name}: expected real values, got complex dtype {f.dtype}")
    if f.dtype == object or not (jnp.issubdtype(f.dtype, jnp.number) or f.dtype == bool):
        raise TypeError(f"{name}: expected a numeric array, got dtype {f.dtype}")
    f = jnp.asarray(f)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2 or f.shape[0] != w.shape[0]:
        raise ValueError(
            f"{name}: expected shape ({w.shape[0]},) or ({w.shape[0]}, k), "
            f"got {tuple(jnp.shape(values))}"
        )
    V.check_nonempty(f, name)
    V.check_finite(f, name)
    if jnp.issubdtype(f.dtype, jnp.floating):
        return f.astype(jnp.result_type(f.dtype, w.dtype))
    return f.astype(w.dtype)


def _centred(f: jax.Array, w: jax.Array) -> jax.Array:
    return f - jnp.sum(w[:, None] * f, axis=0, keepdims=True)


def compatibility(context: Any, f: Any) -> jax.Array:
    r"""Compatibility ``rho(f)`` of targets with a context (REFERENCE.md section 4).

    ``rho(f)^2 = sum_{i>=1} s_i^2 u_i^2 / sum_{i>=1} u_i^2`` for ``f = sum_i u_i mu_i``, computed
    exactly without a spectrum: ``sum_i s_i^2 u_i^2 = <f~, T T* f~> = |Z^T (sqrt(w) f~)|^2`` and
    ``sum_{i>=1} u_i^2 = |f~|^2`` in ``L2(P_X)``, where ``f~`` is ``f`` centred under ``P_X``.

    Traceable (``jit``, ``grad`` with respect to ``f``): the check for constant targets runs only on
    concrete values; a traced constant target gives NaN.

    Args:
        context: a Context (not one given by a dual kernel).
        f: ``(m,)`` or ``(m, k)`` real target values at the samples.

    Returns:
        ``rho`` per target column (``()`` for a vector).

    Raises:
        TypeError: complex or non-numeric ``f``.
        ValueError: wrong shape, NaN/Inf, or a constant target (concrete input).
    """
    Z = context.operator()
    w = jnp.asarray(context.weights, Z.dtype)
    f2 = _features(f, w, "f")
    w = w.astype(f2.dtype)
    g = jnp.sqrt(w)[:, None] * _centred(f2, w)
    norm2 = jnp.sum(g * g, axis=0)
    if V.is_concrete(norm2):
        raw2 = jnp.sum(w[:, None] * f2 * f2, axis=0)  # E[f^2]: the scale that rounding works at
        if np.any(np.asarray(norm2) <= (1e2 * jnp.finfo(g.dtype).eps) ** 2 * np.asarray(raw2)):
            raise ValueError("f: a target is constant under P_X; rho is undefined for it")
    if getattr(context, "squared", False):  # operator is Z Z^T itself
        num = jnp.sum(g * Z.matmat(g.astype(Z.dtype)), axis=0)
    else:
        h = Z.rmatmat(g.astype(Z.dtype))
        num = jnp.sum(h * h, axis=0)
    rho = jnp.sqrt(jnp.clip(num / norm2, 0.0, 1.0))
    return rho[0] if jnp.ndim(f) == 1 else rho


def worst_case_error(s: Any, d: int, eps: float) -> float:
    r"""Theorem 16: the smallest worst-case error over ``F_eps`` of any ``d``-dimensional encoder.

    ``min err = (s_1^2 - (1 - eps)^2) / (s_1^2 - s_{d+1}^2)``, attained by the contexture, valid for
    ``1 - s_1 <= eps <= 1 - sqrt((s_1^2 + s_2^2) / 2)``.

    Args:
        s: non-trivial singular values ``s_1, s_2, ...`` (descending, at least ``d + 1``).
        d: encoder dimension.
        eps: compatibility level of the class ``F_eps = {f : E f = 0, rho(f) >= 1 - eps}``.
    """
    a = _singular_values(s)
    d = V.check_positive_int(d, "d")
    if a.size < max(d + 1, 2):
        raise ValueError(f"s: need s_1..s_{max(d + 1, 2)}, got {a.size} values")
    lo, hi = 1.0 - a[0], 1.0 - np.sqrt((a[0] ** 2 + a[1] ** 2) / 2.0)
    if not (lo - 1e-12 <= eps <= hi + 1e-12):
        raise ValueError(
            f"eps: Theorem 16 holds for {lo:.6g} <= eps <= {hi:.6g} (1 - s_1 .. "
            f"1 - sqrt((s_1^2 + s_2^2)/2)), got {eps}"
        )
    den = a[0] ** 2 - a[d] ** 2
    if den <= 0:
        raise ValueError(f"s: s_1 = s_{d + 1}; the bound is undefined (no spectral gap)")
    return float((a[0] ** 2 - (1.0 - eps) ** 2) / den)


def ratio_trace(context: Any, phi: Any) -> jax.Array:
    r"""Ratio trace ``RT = tr(C^{-1} B)`` of an encoder given by its values at the samples.

    ``C = Cov[Phi]`` and ``B[i, j] = <phi_i~, T T* phi_j~>`` under ``P_X``; ``RT <= s_1^2 + ... + s_d^2``
    with equality iff ``Phi`` learns the contexture (Lemma 22). Invariant to invertible linear maps of
    ``Phi``.

    Traceable and differentiable in ``phi`` (``jax.grad`` of the ratio trace is a training signal):
    ``C^{-1} B`` is solved through ``C``'s Cholesky factor; the check for a singular ``C`` runs only
    on concrete values (a traced collapsed encoder gives NaN or Inf).

    Args:
        context: a Context.
        phi: ``(m, d)`` real encoder outputs at the samples (full column rank after centring).

    Raises:
        ValueError: wrong shape, NaN/Inf, or a (numerically) singular covariance (concrete input).
    """
    Z = context.operator()
    w = jnp.asarray(context.weights, Z.dtype)
    f = _features(phi, w, "phi")
    w = w.astype(f.dtype)
    g = jnp.sqrt(w)[:, None] * _centred(f, w)
    C = jnp.matmul(g.T, g, precision=HIGHEST)
    if getattr(context, "squared", False):
        B = jnp.matmul(g.T, Z.matmat(g.astype(Z.dtype)), precision=HIGHEST)
    else:
        h = Z.rmatmat(g.astype(Z.dtype))
        B = jnp.matmul(h.T, h, precision=HIGHEST)
    if V.is_concrete(C):
        ev = np.linalg.eigvalsh(np.asarray(C, np.float64))
        if ev[0] <= ev[-1] * 1e3 * np.finfo(np.dtype(C.dtype)).eps:
            raise ValueError(
                f"phi: covariance is (numerically) singular, eigenvalues [{ev[0]:.3g}, {ev[-1]:.3g}];"
                " the encoder has collapsed dimensions"
            )
    factor = jax.scipy.linalg.cho_factor(C)
    return jnp.trace(jax.scipy.linalg.cho_solve(factor, B.astype(C.dtype)))
