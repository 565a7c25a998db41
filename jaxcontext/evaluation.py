r"""Evaluate learned representations against the exact contexture (REFERENCE.md section 5).

Alignment of two representations of the same ``n`` points (rows), e.g. a trained encoder's outputs
and the exact singular functions ``mu_1..mu_d`` from :func:`jaxcontext.contexture`:

* :func:`cca` -- ``R2_CCA = |Q_b^T Q_a|_F^2 / d`` and the canonical correlations;
* :func:`principal_angles` -- the angles between the two spans, accurate for small angles;
* :func:`subspace_distance` -- ``1 - |Q_a^T Q_b|_F^2 / d`` (NeuralSVD's metric), accurate near 0;
* :func:`mutual_knn` -- the fraction of shared ``k`` nearest neighbours on whitened features.

All four centre each representation first (the first three under optional sample weights ``w``,
e.g. a context's ``P_X``): the constant function is the trivial singular function ``mu_0`` and not
part of the contexture, and a learned encoder's offset carries no information. The first three
share one orthonormal-basis helper (a QR of the weighted, centred data followed by an SVD of the
small triangular factor, rank-revealing), so there is exactly one CCA in the code base; the
whitening of :func:`mutual_knn` and of the post-hoc spectrum is the project's one whitening
routine, :func:`jaxcontext._whiten.whiten`.

Downstream and spectrum estimates of a learned encoder:

* :func:`ridge_probe` -- standardise, closed-form ridge over a penalty grid with ``k``-fold
  cross-validation (multinomial logistic regression for classes), refit, test metrics;
* :func:`posthoc_spectrum` -- App. D: solve ``B v = lambda C v`` with ``C = Cov[Phi]`` and
  ``B[i, j] = <phi_i~, T T* phi_j~>``; ``sqrt(lambda)`` estimate the singular values and
  ``phi~ V`` the ordered singular functions (Rayleigh-Ritz alignment of a learned span);
* :func:`top_eigenfunctions` -- the dimensional-collapse remedy: keep the top ``d`` generalised
  eigenvectors of a wider (``d1 > d``) learned representation.

Inputs may be numpy or JAX arrays; float64 stays float64 under x64. :func:`cca`,
:func:`principal_angles`, :func:`subspace_distance`, :func:`mutual_knn` (``k`` static),
:func:`posthoc_spectrum` and :func:`top_eigenfunctions` (``d`` static) trace under ``jax.jit``;
value checks (NaN/Inf, ranks) run only on concrete inputs. :func:`ridge_probe` is a host-level
driver (it maps labels and chooses the task) built on jitted kernels.

Example:
    >>> import numpy as np
    >>> from jaxcontext import evaluation
    >>> x = np.random.default_rng(0).normal(size=(200, 3))
    >>> mix = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 3.0]])
    >>> r = evaluation.cca(x, x @ mix + 5.0)       # same span: invariant to invertible maps
    >>> round(float(r.r2), 6)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validation as V
from ._whiten import whiten

__all__ = [
    "CCAResult",
    "cca",
    "principal_angles",
    "subspace_distance",
    "mutual_knn",
    "ProbeResult",
    "ridge_probe",
    "PosthocSpectrum",
    "posthoc_spectrum",
    "top_eigenfunctions",
]

HIGHEST = jax.lax.Precision.HIGHEST
DEFAULT_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=HIGHEST)


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------
def _array(x: Any, name: str) -> Any:
    """A numeric array (jax arrays and tracers kept as they are; anything else via numpy)."""
    arr = x if isinstance(x, jax.Array) else np.asarray(x)
    if arr.dtype == object:
        raise TypeError(f"{name}: expected a numeric array, got an object array")
    if jnp.iscomplexobj(arr):
        raise TypeError(f"{name}: expected real values, got complex dtype {arr.dtype}")
    if not (jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == bool):
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return arr


def _features(x: Any, name: str) -> Any:
    """Check features: ``(n,)`` (one feature) or ``(n, d)``, non-empty, finite (when concrete)."""
    arr = _array(x, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"{name}: expected an (n, d) array of features (or (n,)), got shape {tuple(arr.shape)}"
        )
    V.check_nonempty(arr, name)
    V.check_finite(arr, name)
    return arr


def _float_dtype(*arrays: Any) -> np.dtype:
    """The working float dtype of some arrays (``_validation.float_dtype``), at least float32.

    Half precision is promoted to float32: QR, SVD and eigh need it.
    """
    return V.float_dtype(*(a.dtype for a in arrays), min_single=True)


def _check_tall(n: int, d: int, name: str) -> None:
    if n <= d:
        raise ValueError(
            f"{name}: need more rows (samples) than columns (features) after centring, got "
            f"n={n} <= d={d}"
        )


def _weights(weights: Any, n: int, dtype: Any) -> Any:
    """Validate optional sample weights and return them normalised to sum one (or None)."""
    if weights is None:
        return None
    w = _array(weights, "weights")
    if tuple(w.shape) != (n,):
        raise ValueError(
            f"weights: expected shape ({n},) (one weight per row), got {tuple(w.shape)}"
        )
    V.check_finite(w, "weights")
    V.check_nonnegative(w, "weights")
    if V.is_concrete(w) and not float(np.sum(np.asarray(w, np.float64))) > 0:
        raise ValueError("weights: all weights are zero; need a positive total")
    w = jnp.asarray(w, dtype)
    return w / jnp.sum(w)


def _pair(a: Any, b: Any, weights: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Check two representations of the same points; return them in one float dtype."""
    fa, fb = _features(a, "a"), _features(b, "b")
    if fa.shape[0] != fb.shape[0]:
        raise ValueError(
            f"a, b: must describe the same points (equal numbers of rows), got {fa.shape[0]} "
            f"and {fb.shape[0]} rows"
        )
    n = fa.shape[0]
    _check_tall(n, fa.shape[1], "a")
    _check_tall(n, fb.shape[1], "b")
    dt = _float_dtype(fa, fb)
    w = _weights(weights, n, dt)
    w = jnp.full((n,), 1.0 / n, dt) if w is None else w  # one compiled program either way
    return jnp.asarray(fa, dt), jnp.asarray(fb, dt), w


# ------------------------------------------------------------------------------------------------
# The orthonormal basis shared by CCA, principal angles and the subspace distance
# ------------------------------------------------------------------------------------------------
def _noise_floor(x: jax.Array) -> jax.Array:
    """Standard deviation that rounding alone can put into centred features.

    Centring leaves about ``sqrt(n) eps max_i |x_ij|`` in each column (the rounding of the mean of
    an offset column, and of the entries themselves); ``10 sqrt(n) eps |(max_i |x_ij|)_j|`` bounds
    it with margin. Directions of smaller spread are treated as collapsed.
    """
    eps = jnp.finfo(x.dtype).eps
    return 10.0 * math.sqrt(x.shape[0]) * eps * jnp.linalg.norm(jnp.max(jnp.abs(x), axis=0))


class _Basis(NamedTuple):
    q: jax.Array  # (n, d) orthonormal columns, zero beyond the numerical rank
    rank: jax.Array  # () int


def _basis(x: jax.Array, w: jax.Array, *, center: bool, rtol: Any) -> _Basis:
    r"""Rank-revealing orthonormal basis of the weighted, centred columns of ``x``.

    ``g = diag(sqrt w) (x - 1 mean^T)``, ``g = Q R``, ``R = U S V^T``: the columns of ``Q U`` with
    ``S_k > tol`` are an orthonormal basis of ``range(g)``, i.e. of the span of the centred
    features in ``L2(w)``; the others are zeroed. ``tol = rtol * S_max + floor``,
    ``rtol = max(n, d) eps`` by default (numpy's ``matrix_rank`` rule) and ``floor`` the rounding
    that centring leaves in a column with a large constant offset (:func:`_noise_floor`).
    """
    n, d = x.shape
    eps = float(jnp.finfo(x.dtype).eps)
    mean = _mm(w, x) if center else jnp.zeros((d,), x.dtype)
    g = jnp.sqrt(w)[:, None] * (x - mean)
    q, r = jnp.linalg.qr(g)
    u, s, _ = jnp.linalg.svd(r)
    rt = max(n, d) * eps if rtol is None else float(rtol)
    tol = rt * s[0] + _noise_floor(x)
    keep = s > tol
    return _Basis(q=_mm(q, u * keep[None, :].astype(x.dtype)), rank=jnp.sum(keep))


class _Alignment(NamedTuple):
    corr: jax.Array  # (k,) canonical correlations, descending, 0 beyond r
    theta: jax.Array  # (k,) principal angles, ascending, pi/2 beyond r
    sin2: jax.Array  # (k,) sin^2 of the angles, 1 beyond r (a lost direction is orthogonal)
    rank_a: jax.Array
    rank_b: jax.Array


@partial(jax.jit, static_argnames=("center", "rtol"))
def _alignment(A: jax.Array, B: jax.Array, w: jax.Array, center: bool, rtol: Any) -> _Alignment:
    """Everything the basis metrics report, from one pair of bases (one compiled program).

    Cosines are the singular values of ``Q_a^T Q_b``; sines those of the residual of the
    lower-rank basis after projecting out the other span (Bjorck-Golub): ``(I - Q_a Q_a^T) Q_b``
    when ``rank_a >= rank_b``. Its ``rank_b`` leading singular values are the sines (descending);
    zero columns of a rank-deficient basis only add trailing zeros.
    """
    ba = _basis(A, w, center=center, rtol=rtol)
    bb = _basis(B, w, center=center, rtol=rtol)
    qa, qb = ba.q, bb.q
    da, db = qa.shape[1], qb.shape[1]
    k = min(da, db)
    m = _mm(qa.T, qb)
    cos = jnp.clip(jnp.linalg.svd(m, compute_uv=False)[:k], 0.0, 1.0)
    sb = jnp.linalg.svd(qb - _mm(qa, m), compute_uv=False)
    sa = jnp.linalg.svd(qa - _mm(qb, m.T), compute_uv=False)
    i = jnp.arange(k)
    sin_b = jnp.take(sb, jnp.clip(bb.rank - 1 - i, 0, db - 1))
    sin_a = jnp.take(sa, jnp.clip(ba.rank - 1 - i, 0, da - 1))
    sin = jnp.clip(jnp.where(ba.rank >= bb.rank, sin_b, sin_a), 0.0, 1.0)
    valid = i < jnp.minimum(ba.rank, bb.rank)
    small = cos**2 >= 0.5  # angles below pi/4: the sines carry the digits
    theta = jnp.where(small, jnp.arcsin(sin), jnp.arccos(cos))
    return _Alignment(
        corr=jnp.where(valid, cos, 0.0),
        theta=jnp.where(valid, theta, jnp.pi / 2).astype(cos.dtype),
        sin2=jnp.where(valid, jnp.where(small, sin**2, 1.0 - cos**2), 1.0),
        rank_a=ba.rank,
        rank_b=bb.rank,
    )


def _align(a: Any, b: Any, weights: Any, center: bool, rtol: Any) -> _Alignment:
    A, B, w = _pair(a, b, weights)
    rtol = None if rtol is None else float(rtol)
    out = _alignment(A, B, w, bool(center), rtol)
    for name, rank in (("a", out.rank_a), ("b", out.rank_b)):
        if V.is_concrete(rank) and int(rank) == 0:
            raise ValueError(
                f"{name}: every feature is constant (numerical rank 0 after centring); there is "
                "no span to compare"
            )
    return out


class CCAResult(NamedTuple):
    r"""Canonical correlation analysis of two representations.

    Attributes:
        r2: ``R2_CCA = sum_k rho_k^2 / r`` with ``r = min(rank_a, rank_b)``, in ``[0, 1]``.
        correlations: ``(min(d_a, d_b),)`` canonical correlations ``rho_1 >= rho_2 >= ...``;
            entries beyond ``r`` (rank-deficient inputs) are 0.
        rank_a: numerical rank of the centred ``a``.
        rank_b: numerical rank of the centred ``b``.
    """

    r2: jax.Array
    correlations: jax.Array
    rank_a: jax.Array
    rank_b: jax.Array


def cca(
    a: Any, b: Any, *, weights: Any = None, center: bool = True, rtol: float | None = None
) -> CCAResult:
    r"""Canonical correlations and ``R2_CCA`` between two representations of the same points.

    With ``Q_a``, ``Q_b`` orthonormal bases (in ``L2(w)``) of the centred columns of ``a`` and
    ``b``, the canonical correlations are the singular values of ``Q_a^T Q_b`` (the cosines of the
    principal angles) and

    .. math:: R^2_{CCA} = \frac{\|Q_b^T Q_a\|_F^2}{d} = \frac{1}{d} \sum_k \rho_k^2,
       \qquad d = \min(d_a, d_b)

    (REFERENCE.md section 5). It is 1 when one span contains the other and invariant to any
    invertible linear map (and constant shift) of either side. The bases are rank-revealing:
    directions whose singular value falls below ``rtol * s_max`` (default ``max(n, d) * eps`` of
    the dtype, numpy's ``matrix_rank`` rule) are dropped and count as correlation 0, while ``d``
    stays the number of columns: a *collapsed* encoder (rank 3 of 5 outputs) scores at most 3/5,
    not 1. ``rank_a``/``rank_b`` report the numerical ranks.

    Args:
        a: ``(n, d_a)`` features (or ``(n,)``).
        b: ``(n, d_b)`` features of the same ``n`` points.
        weights: optional ``(n,)`` non-negative sample weights (normalised to sum one), e.g. a
            context's ``weights``; default uniform.
        center: remove the (weighted) mean of each column first (default; the constant function
            is not part of a contexture).
        rtol: relative rank threshold (default ``max(n, d) * eps``).

    Returns:
        A :class:`CCAResult`.

    Raises:
        ValueError: mismatched rows, ``n <= d``, NaN/Inf, empty input, bad weights, or a side
            with no non-constant feature (concrete input).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(1000, 2))
        >>> y = np.c_[x[:, 0], rng.normal(size=1000)]   # shares one direction with x
        >>> r = cca(x, y)
        >>> round(float(r.correlations[0]), 6), float(r.r2) < 0.51
        (1.0, True)
    """
    al = _align(a, b, weights, center, rtol)
    return CCAResult(r2=jnp.mean(al.corr**2), correlations=al.corr, rank_a=al.rank_a,
                     rank_b=al.rank_b)


def principal_angles(
    a: Any, b: Any, *, weights: Any = None, center: bool = True, rtol: float | None = None
) -> jax.Array:
    r"""Principal angles between the spans of two centred representations, ascending.

    ``theta_k = arccos(rho_k)`` for the canonical correlations ``rho_k`` of :func:`cca`, computed
    as Bjorck-Golub / Knyazev-Argentati do: from the sines (singular values of
    ``(I - Q_a Q_a^T) Q_b``) where ``cos^2 theta >= 1/2`` and from the cosines elsewhere, so small
    angles keep full relative accuracy (``arccos`` of a cosine near 1 loses half the digits).
    Unlike :func:`scipy.linalg.subspace_angles` (descending, no centring) the angles are ascending,
    paired with the descending canonical correlations.

    Args:
        a: ``(n, d_a)`` features.
        b: ``(n, d_b)`` features of the same points.
        weights: optional ``(n,)`` sample weights (default uniform).
        center: remove each column's (weighted) mean first (default).
        rtol: relative rank threshold of the bases (see :func:`cca`).

    Returns:
        ``(min(d_a, d_b),)`` angles in ``[0, pi/2]``; entries beyond ``min(rank_a, rank_b)``
        (rank-deficient inputs) are ``pi/2``, matching a correlation of 0.

    Example:
        >>> import numpy as np
        >>> g = np.random.default_rng(0).normal(size=(100, 2))
        >>> q, _ = np.linalg.qr(g - g.mean(0))          # orthonormal, centred columns
        >>> b = np.cos(1e-3) * q[:, 0] + np.sin(1e-3) * q[:, 1]
        >>> round(float(principal_angles(q[:, 0], b)[0]), 7)
        0.001
    """
    return _align(a, b, weights, center, rtol).theta


def subspace_distance(
    a: Any, b: Any, *, weights: Any = None, center: bool = True, rtol: float | None = None
) -> jax.Array:
    r"""Subspace distance ``1 - |Q_a^T Q_b|_F^2 / d`` (NeuralSVD; REFERENCE.md section 8).

    Computed as the mean of ``sin^2 theta_k`` over the principal angles (the sines themselves for
    small angles, ``1 - cos^2`` for large ones), so it keeps full relative accuracy near 0 where
    ``1 - R2`` would cancel. ``d = min(d_a, d_b)`` as in :func:`cca` (directions lost to rank
    deficiency count as angle ``pi/2``), so this is
    ``1 - cca(a, b).r2`` up to rounding. Both sides are centred by default: the exact ``mu_i``
    (``i >= 1``) have mean zero already, and a learned encoder's constant carries no information;
    pass ``center=False`` for eigenfunctions whose constant part matters.

    Args:
        a: ``(n, d_a)`` features (e.g. learned).
        b: ``(n, d_b)`` features (e.g. the exact ``mu_1..mu_d``).
        weights: optional ``(n,)`` sample weights (default uniform).
        center: remove each column's (weighted) mean first (default).
        rtol: relative rank threshold of the bases (see :func:`cca`).

    Returns:
        A scalar in ``[0, 1]``: 0 for equal spans, 1 for orthogonal ones.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(1).normal(size=(100, 3))
        >>> float(subspace_distance(x, x @ np.diag([1.0, 2.0, 3.0]))) < 1e-12
        True
    """
    al = _align(a, b, weights, center, rtol)
    return jnp.mean(al.sin2)


# ------------------------------------------------------------------------------------------------
# Mutual kNN
# ------------------------------------------------------------------------------------------------
def _neighbours(z: jax.Array, sq: jax.Array, rows: jax.Array, k: int) -> jax.Array:
    """Indices of the ``k`` nearest other points of ``z[rows]`` (ties: lower index first)."""
    n = z.shape[0]
    # |q - z_j|^2 = |q|^2 + |z_j|^2 - 2 q.z_j; the row constant |q|^2 does not change the order
    d2 = sq[None, :] - 2.0 * _mm(z[rows], z.T)
    d2 = jnp.where(rows[:, None] == jnp.arange(n)[None, :], jnp.inf, d2)
    return jax.lax.top_k(-d2, k)[1]


def mutual_knn(a: Any, b: Any, *, k: int = 10, block_rows: int | None = None) -> jax.Array:
    r"""Mutual ``k``-nearest-neighbour alignment of two representations on whitened features.

    Both sides are centred and whitened (:func:`jaxcontext._whiten.whiten`, covariance ``I``), so
    the score is invariant to invertible linear maps of either side. For each point ``i`` let
    ``N_a(i)`` and ``N_b(i)`` be its ``k`` nearest *other* points in Euclidean distance; the
    score is

    .. math:: \frac{1}{n} \sum_i \frac{|N_a(i) \cap N_b(i)|}{k} \in [0, 1]

    (REFERENCE.md section 5, ``k = 10`` in the paper). Exact: all distances are computed, tiled
    over ``block_rows`` query rows at a time so only ``block_rows x n`` distances exist at once;
    ties are broken towards the lower index.

    Args:
        a: ``(n, d_a)`` features.
        b: ``(n, d_b)`` features of the same points.
        k: neighbours per point (static), ``1 <= k < n``.
        block_rows: query rows per tile (static; default about ``2^22 / n``).

    Returns:
        The mean fraction of shared neighbours (a scalar).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(300, 4))
        >>> float(mutual_knn(x, x @ np.triu(np.ones((4, 4))) + 1.0, k=10))
        1.0
    """
    A, B, _ = _pair(a, b, None)
    n = A.shape[0]
    k = V.check_positive_int(k, "k")
    if k >= n:
        raise ValueError(f"k: each point has only n - 1 = {n - 1} other points, got k={k}")
    if block_rows is None:
        block = max(1, min(n, (1 << 22) // n))
    else:
        block = min(V.check_positive_int(block_rows, "block_rows"), n)
    return _mutual_knn(A, B, k, block)


@partial(jax.jit, static_argnames=("k", "block"))
def _mutual_knn(A: jax.Array, B: jax.Array, k: int, block: int) -> jax.Array:
    n = A.shape[0]
    za, zb = whiten(A).z, whiten(B).z
    sqa, sqb = jnp.sum(za * za, axis=1), jnp.sum(zb * zb, axis=1)
    nb = -(-n // block)
    rows = jnp.arange(nb * block, dtype=jnp.int32).reshape(nb, block)

    def shared(r: jax.Array) -> jax.Array:
        rc = jnp.minimum(r, n - 1)
        ia = _neighbours(za, sqa, rc, k)
        ib = _neighbours(zb, sqb, rc, k)
        count = jnp.sum(ia[:, :, None] == ib[:, None, :], axis=(1, 2))
        return jnp.where(r < n, count, 0)

    counts = jax.lax.map(shared, rows)
    return (jnp.sum(counts) / (n * k)).astype(za.dtype)


# ------------------------------------------------------------------------------------------------
# Post-hoc spectrum (App. D) and the dimensional-collapse remedy
# ------------------------------------------------------------------------------------------------
class PosthocSpectrum(NamedTuple):
    r"""Generalised eigen-decomposition ``B v = lambda C v`` of a learned representation.

    Attributes:
        s: ``(k,)`` estimated singular values ``sqrt(lambda)``, descending (clipped at 0).
        lambdas: ``(k,)`` generalised eigenvalues (estimates of ``s_i^2``), descending, ``>= 0``.
        V: ``(d, k)`` coefficients: ``(phi - mean) @ V`` are the ordered estimated singular
            functions, orthonormal in ``L2(P_X)``; columns beyond ``rank`` are zero. Signs are
            fixed so that each function's largest-magnitude sample value is positive.
        mean: ``(d,)`` the (weighted) mean of ``phi`` that is removed.
        functions: ``(m, k)`` the estimated singular functions at the samples, ``phi~ @ V``.
        rank: numerical rank of ``Cov[Phi]`` (directions of smaller variance are dropped).
    """

    s: jax.Array
    lambdas: jax.Array
    V: jax.Array
    mean: jax.Array
    functions: jax.Array
    rank: jax.Array

    def transform(self, phi_new: Any) -> jax.Array:
        """Map new features ``(n, d)`` to the ordered estimated singular functions ``(n, k)``."""
        f = _features(phi_new, "phi_new")
        if f.shape[1] != self.V.shape[0]:
            raise ValueError(
                f"phi_new: expected {self.V.shape[0]} features per row (as fitted), got shape "
                f"{tuple(f.shape)}"
            )
        dt = _float_dtype(f, self.V)
        return _mm(jnp.asarray(f, dt) - self.mean.astype(dt), self.V.astype(dt))


def _gram_matrix(gram: Any, m: int, dtype: Any) -> jax.Array:
    G = _array(gram, "gram")
    if tuple(G.shape) != (m, m):
        raise ValueError(
            f"gram: expected an ({m}, {m}) Gram on the rows of phi, got {tuple(G.shape)}"
        )
    V.check_finite(G, "gram")
    if V.is_concrete(G):
        g = np.asarray(G, np.float64)
        tol = 100 * np.finfo(np.dtype(dtype)).eps * max(1.0, float(np.abs(g).max()))
        if np.abs(g - g.T).max() > tol:
            raise ValueError("gram: the matrix is not symmetric; a dual-kernel Gram must be")
    return jnp.asarray(G, dtype)


@partial(jax.jit, static_argnames=("kind", "k"))
def _posthoc(f: jax.Array, w: jax.Array, op: Any, eps: Any, kind: str, k: int) -> PosthocSpectrum:
    """Rayleigh-Ritz on the span of ``f``: ``kind`` says how ``op`` gives ``<g, T T* g>``."""
    # the jitter is at least the variance rounding can leave after centring (_noise_floor), so a
    # constant column's centring residue counts as collapsed however small tr(C) is
    d = f.shape[1]
    tr = jnp.sum(w[:, None] * (f - _mm(w, f)) ** 2)
    floor2 = _noise_floor(f) ** 2
    eps = jnp.maximum(eps, floor2 * d / jnp.maximum(tr, jnp.finfo(f.dtype).tiny))
    wh = whiten(f, weights=w, eps=eps)
    sw = jnp.sqrt(w)
    gz = sw[:, None] * wh.z
    # Cholesky whitening with jitter leaves Cov[z] = I - jitter (C + jitter)^-1: ~I on the range,
    # ~0 on collapsed directions. Its eigh reveals the rank and removes the jitter's bias.
    cz = _mm(gz.T, gz)
    e, P = jnp.linalg.eigh(0.5 * (cz + cz.T))
    keep = e > 0.5
    R = P * jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, e, 1.0)), 0.0)[None, :]
    h = _mm(gz, R)  # orthonormal columns on the kept directions, zero elsewhere
    if kind == "squared":  # op = diag(sqrt w) K diag(sqrt w)
        b = _mm(h.T, op.matmat(h).astype(h.dtype))
    elif kind == "gram":  # op = K itself
        hw = sw[:, None] * h
        b = _mm(hw.T, _mm(op, hw))
    else:  # op = Z, B = |Z^T g|^2
        t = op.rmatmat(h).astype(h.dtype)
        b = _mm(t.T, t)
    b = 0.5 * (b + b.T) - jnp.diag(jnp.where(keep, 0.0, 1.0).astype(f.dtype))  # dropped: last
    lam, Y = jnp.linalg.eigh(b)
    lam, Y = jnp.maximum(lam[::-1][:k], 0.0), Y[:, ::-1][:, :k]
    RY = _mm(R, Y)
    fn = _mm(wh.z, RY)
    # deterministic signs: each function's largest-magnitude sample value is positive
    peak = jnp.take_along_axis(fn, jnp.argmax(jnp.abs(fn), axis=0)[None, :], axis=0)[0]
    sign = jnp.where(peak < 0, -1.0, 1.0).astype(f.dtype)
    return PosthocSpectrum(
        s=jnp.sqrt(lam),
        lambdas=lam,
        V=_mm(wh.W, RY) * sign,
        mean=wh.mean,
        functions=fn * sign,
        rank=jnp.sum(keep),
    )


def _posthoc_checked(phi, context, gram, weights, eps, k) -> PosthocSpectrum:
    f = _features(phi, "phi")
    n, d = f.shape
    _check_tall(n, d, "phi")
    dt = _float_dtype(f)
    f = jnp.asarray(f, dt)
    if (context is None) == (gram is None):
        raise ValueError("pass exactly one of context= (a Context) or gram= (an (m, m) Gram)")
    if context is not None:
        if weights is not None:
            raise ValueError(
                "weights: a context carries its own sample weights (context.weights); pass "
                "weights only with gram="
            )
        op = context.operator()
        if op.shape[0] != n:
            raise ValueError(
                f"phi: expected one row per context sample ({op.shape[0]}), got {n} rows"
            )
        w = jnp.asarray(context.weights, dt)
        w = w / jnp.sum(w)
        kind = "squared" if getattr(context, "squared", False) else "conditional"
    else:
        op = _gram_matrix(gram, n, dt)
        w = _weights(weights, n, dt)
        w = jnp.full((n,), 1.0 / n, dt) if w is None else w
        kind = "gram"
    eps0 = 10.0 * d * float(jnp.finfo(dt).eps) if eps is None else float(eps)
    res = _posthoc(f, w, op, eps0, kind, k)
    if V.is_concrete(res.V):
        tries = 0
        while not np.all(np.isfinite(np.asarray(res.V))) and tries < 3:  # Cholesky breakdown
            eps0, tries = eps0 * 100.0, tries + 1
            res = _posthoc(f, w, op, eps0, kind, k)
        if not np.all(np.isfinite(np.asarray(res.V))):
            raise ValueError("phi: the covariance could not be factorised (non-finite whitening)")
        if int(res.rank) == 0:
            raise ValueError("phi: every feature is constant; there is no span to align")
    return res


def posthoc_spectrum(
    phi: Any,
    *,
    context: Any = None,
    gram: Any = None,
    weights: Any = None,
    eps: float | None = None,
) -> PosthocSpectrum:
    r"""Post-hoc spectrum of a learned encoder (REFERENCE.md section 5, App. D).

    With ``phi~`` the encoder outputs centred under ``P_X`` (sample weights ``w``),
    ``C = Cov[Phi] = E[phi~ phi~^T]`` and ``B[i, j] = <phi_i~, T T* phi_j~>``, solve the generalised
    symmetric eigenproblem

    .. math:: B v = \lambda C v .

    ``lambda_i`` estimate ``s_i^2`` and the functions ``phi~ v_i`` (unit norm in ``L2(P_X)``)
    estimate the ordered singular functions ``mu_i``: the Rayleigh-Ritz alignment of the learned
    span. If ``phi`` spans ``mu_1..mu_d`` exactly the result is exact.

    ``B`` comes from

    * a ``context`` at its own samples (``phi`` row ``i`` at ``x_i``): with ``g = sqrt(w) phi~`` and
      the normalised operator ``Z`` (:meth:`~jaxcontext.contexts.Context.operator`),
      ``B = (Z^T g)^T (Z^T g)``, or ``g^T Z g`` for ``squared`` (dual-kernel) contexts; or
    * a dual-kernel ``gram`` ``G[i, l] = k_X+(x_i, x_l)`` on the rows of ``phi``:
      ``B = (w phi~)^T G (w phi~)``, i.e. ``Phi~^T G Phi~ / m^2`` for uniform weights.

    Numerics: ``phi`` is whitened by the Cholesky factor of ``C + jitter I``
    (:func:`~jaxcontext._whiten.whiten`; ``jitter = eps tr(C) / d``, ``eps = 10 d eps_dtype`` by
    default, and at least the variance that rounding leaves after centring, so a constant or
    duplicated output counts as collapsed). The ``eigh`` of the whitened covariance
    (``~1`` on the span, ``~0`` on collapsed directions) drops directions of variance below the
    jitter (``rank``) and removes the jitter's bias; ``eigh`` of ``B`` in that exactly orthonormal
    basis gives ``lambda``. No inverse of ``C`` is formed, and the result is exact to rounding
    for well-conditioned ``C`` (not ``O(jitter)``).

    Args:
        phi: ``(m, d)`` encoder outputs at the context's samples (``m > d``).
        context: a :class:`~jaxcontext.contexts.Context` (uses ``context.weights``).
        gram: alternatively an ``(m, m)`` symmetric dual-kernel Gram on the rows of ``phi``.
        weights: with ``gram`` only: ``(m,)`` sample weights (default uniform).
        eps: relative jitter of the Cholesky whitening (and the rank threshold).

    Returns:
        A :class:`PosthocSpectrum` with ``k = d`` entries (``.transform`` maps new features).

    Raises:
        ValueError: not exactly one of ``context``/``gram``, mismatched rows, ``m <= d``,
            NaN/Inf, a non-symmetric Gram, ``weights`` with a context, or a constant ``phi``.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> P = np.random.default_rng(0).uniform(size=(40, 30)) ** 4
        >>> ctx = contexts.from_conditional(P)
        >>> res = posthoc_spectrum(np.random.default_rng(1).normal(size=(40, 3)), context=ctx)
        >>> res.functions.shape, bool(np.all(np.diff(np.asarray(res.s)) <= 0))
        ((40, 3), True)
    """
    d = _features(phi, "phi").shape[1]
    return _posthoc_checked(phi, context, gram, weights, eps, d)


def top_eigenfunctions(
    phi: Any,
    d: int,
    *,
    context: Any = None,
    gram: Any = None,
    weights: Any = None,
    eps: float | None = None,
) -> PosthocSpectrum:
    r"""Dimensional-collapse remedy: the top ``d`` generalised eigenvectors of a wider encoder.

    Train ``d1 > d`` outputs (the paper uses ``d1 = 512``), then keep the ``d`` leading solutions
    of ``B v = lambda C v`` (:func:`posthoc_spectrum`): ``.transform`` maps the ``d1`` features to
    ``d`` ordered estimated singular functions. Collapsed (numerically dependent) outputs of the
    wide encoder are dropped by the rank-revealing whitening and cannot crowd out the good ones.

    Args:
        phi: ``(m, d1)`` outputs of the wide encoder at the samples.
        d: number of functions to keep, ``1 <= d <= d1`` (static).
        context: a Context, as for :func:`posthoc_spectrum`.
        gram: alternatively an ``(m, m)`` dual-kernel Gram, as for :func:`posthoc_spectrum`.
        weights: with ``gram`` only: ``(m,)`` sample weights.
        eps: relative jitter of the whitening, as for :func:`posthoc_spectrum`.

    Returns:
        A :class:`PosthocSpectrum` with ``k = d`` (``V`` is ``(d1, d)``).

    Raises:
        ValueError: as :func:`posthoc_spectrum`; ``d`` out of range, or (concrete input) fewer
            than ``d`` numerically independent outputs.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> P = np.random.default_rng(0).uniform(size=(40, 30)) ** 4
        >>> ctx = contexts.from_conditional(P)
        >>> wide = np.random.default_rng(1).normal(size=(40, 8))
        >>> res = top_eigenfunctions(wide, 2, context=ctx)
        >>> res.V.shape, res.transform(wide).shape
        ((8, 2), (40, 2))
    """
    d1 = _features(phi, "phi").shape[1]
    d = V.check_positive_int(d, "d", upper=d1)
    res = _posthoc_checked(phi, context, gram, weights, eps, d)
    if V.is_concrete(res.rank) and int(res.rank) < d:
        raise ValueError(
            f"phi: only {int(res.rank)} of its {d1} outputs are numerically independent "
            f"(collapsed encoder); cannot keep d={d} functions"
        )
    return res


# ------------------------------------------------------------------------------------------------
# Linear probes
# ------------------------------------------------------------------------------------------------
class ProbeResult(NamedTuple):
    r"""A fitted linear probe.

    Attributes:
        task: ``"regression"`` or ``"classification"``.
        alpha: the chosen L2 penalty (ridge: ``|y - X w - b|^2 + alpha |w|^2``; logistic:
            ``sum_i CE_i + alpha/2 |W|_F^2``, i.e. scikit-learn's ``C = 1 / alpha``), on the
            standardised features.
        alphas: ``(A,)`` the penalty grid.
        cv_error: ``(A,)`` cross-validated error per penalty (MSE for regression, error rate for
            classification), or None when the grid has one value.
        cv_loss: ``(A,)`` cross-validated mean log-loss (classification; ties in ``cv_error`` are
            broken by it), or None.
        train: metrics on the training set (regression: ``mse``, ``rel_mse`` = SSE / SST, ``r2``
            averaged over outputs; classification: ``error``, ``accuracy``, ``log_loss``).
        test: the same on the test set, or None.
        coef: ``(d,)`` / ``(d, t)`` (regression) or ``(d, C)`` (classification) weights on the
            *original* features (standardisation folded in).
        intercept: ``()`` / ``(t,)`` or ``(C,)`` (two classes: column 0 is zero, column 1 is
            scikit-learn's binary ``coef_``).
        classes: the class labels of columns ``0..C-1`` (classification), else None.
    """

    task: str
    alpha: float
    alphas: np.ndarray
    cv_error: Any
    cv_loss: Any
    train: dict
    test: Any
    coef: jax.Array
    intercept: jax.Array
    classes: Any

    def decision_function(self, features: Any) -> jax.Array:
        """Linear scores ``features @ coef + intercept`` (regression: the predictions)."""
        f = _features(features, "features")
        if f.shape[1] != self.coef.shape[0]:
            raise ValueError(
                f"features: expected {self.coef.shape[0]} columns (as fitted), got {tuple(f.shape)}"
            )
        dt = self.coef.dtype
        return _mm(jnp.asarray(f, dt), self.coef) + self.intercept

    def predict(self, features: Any) -> Any:
        """Predicted targets (regression) or class labels (classification)."""
        z = self.decision_function(features)
        if self.task == "regression":
            return z
        return np.asarray(self.classes)[np.asarray(jnp.argmax(z, axis=1))]


def _standardise(x: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and scale over the rows with mask ``m`` (population std, 1 for constant columns)."""
    nt = jnp.sum(m)
    mean = _mm(m, x) / nt
    var = _mm(m, (x - mean) ** 2) / nt
    eps = jnp.finfo(x.dtype).eps
    constant = var <= nt * eps * var + (nt * eps * mean) ** 2  # scikit-learn's rule
    return mean, jnp.where(constant, 1.0, jnp.sqrt(var))


def _ridge_path(x: jax.Array, y: jax.Array, m: jax.Array, alphas: jax.Array):
    """Ridge for every penalty on the rows with mask ``m``: one SVD.

    Returns ``(coef (A, d, t), intercept (A, t), pred (A, n, t))`` on the original features.
    """
    mean, scale = _standardise(x, m)
    xs = (x - mean) / scale
    nt = jnp.sum(m)
    ym = _mm(m, y) / nt
    u, s, vt = jnp.linalg.svd(xs * m[:, None], full_matrices=False)
    uty = _mm(u.T, (y - ym) * m[:, None])
    filt = s[None, :] / (s[None, :] ** 2 + alphas[:, None])
    coef_s = jnp.einsum("kd,ak,kt->adt", vt, filt, uty, precision=HIGHEST)
    coef = coef_s / scale[None, :, None]
    intercept = ym[None, :] - jnp.einsum("d,adt->at", mean, coef, precision=HIGHEST)
    pred = jnp.einsum("nd,adt->ant", x, coef, precision=HIGHEST) + intercept[:, None, :]
    return coef, intercept, pred


@jax.jit
def _ridge_folds(x, y, masks, alphas):
    """Held-out SSE ``(F, A)`` of every fold mask and penalty, and each mask's ridge path."""

    def fold(m):
        coef, intercept, pred = _ridge_path(x, y, m, alphas)
        sse = jnp.sum(((pred - y[None]) ** 2) * (1.0 - m)[None, :, None], axis=(1, 2))
        return sse, coef, intercept

    return jax.vmap(fold)(masks)


# Logistic solvers. Each (fold, penalty) problem is small and smooth; what costs is the number of
# sequential iterations (the folds run in lockstep under vmap, so the slowest sets the pace).
# Newton's iteration costs ~ n q^2 flops (the Hessian's Gram term; q = (d + 1) * classes
# parameters, one class fewer for two) plus a q x q Cholesky, an L-BFGS iteration ~ 4 n q: one
# Newton step is worth ~ q / 4 L-BFGS steps, and Newton needs ~5 steps per warm-started penalty
# where L-BFGS needs 20-500 (weak penalties on nearly separable classes). Measured on digits
# (1400 rows, 10 classes, 7 penalties, 5 folds; 2 shared CPU cores, float32): q = 170 Newton
# 0.3 s / L-BFGS 0.2 s at 1e-3 probability error; q = 330 Newton 2 s / L-BFGS 1.8 s hitting
# max_iter; q = 650 Newton 3.2 s / L-BFGS 0.4 s. Newton up to this many parameters:
_NEWTON_MAX_PARAMS = 400
_DAMPING = 0.01  # Newton: lambda = _DAMPING |g| + rounding floor
_LBFGS_MEMORY = 10
_CHOLESKY_BLOCK = 32


class _Memory(NamedTuple):
    """L-BFGS curvature pairs ``(s_j, y_j)``, a ring buffer; ``rho_j = 1 / s_j^T y_j``, 0 unused."""

    S: jax.Array  # (memory, q)
    Y: jax.Array  # (memory, q)
    rho: jax.Array  # (memory,)
    k: jax.Array  # () pairs stored so far; the newest is at (k - 1) % memory


def _backtrack(fun: Any, x: jax.Array, f: jax.Array, p: jax.Array, gp: jax.Array,
               unit: Any = False) -> jax.Array:
    """Armijo backtracking from the unit step (halving at most 50 times); ``unit``: take it."""

    def ls_cond(lc):
        t, ft, i = lc
        return ~(unit | (ft <= f + 1e-4 * t * gp)) & (i < 50)

    def ls_body(lc):
        t, _, i = lc
        return 0.5 * t, fun(x + 0.5 * t * p), i + 1

    return jax.lax.while_loop(ls_cond, ls_body, (jnp.asarray(1.0, x.dtype), fun(x + p), 0))[0]


def _descent(g: jax.Array, p: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(p, g^T p)``, or a scaled steepest descent where ``p`` is not finite or not downhill."""
    gp = jnp.dot(g, p)
    ok = jnp.all(jnp.isfinite(p)) & (gp < 0)
    gn = jnp.linalg.norm(g)
    scale = 1.0 / jnp.maximum(gn, 1.0)
    return jnp.where(ok, p, -scale * g), jnp.where(ok, gp, -scale * gn * gn)


def _advance(fun: Any, value_and_grad: Any, x, f, g, p, gp, project: Any, newton: bool):
    """One step from ``x`` along the descent direction ``p`` (``gp = g^T p < 0``).

    An Armijo line search picks the step, kept if ``f`` decreases. For a Newton direction,
    ``-gp`` is the Newton decrement ``delta ~ 2 (f - f*)``; once ``delta <= 100 eps |f|``
    rounding hides the decrease from ``f`` (a sum of ``n`` log-losses carries ~``eps log2 n``
    relative error) while the unit step is deep inside the region of quadratic convergence, so
    it is taken without a line search and kept if it shrinks the gradient. Returns ``(x, f, g,
    moved, final, shrink)``: ``final`` marks that regime, ``shrink = |g_new| / |g|``.
    """
    eps = jnp.finfo(x.dtype).eps
    gn = jnp.linalg.norm(g)
    final = newton & (-gp <= 100.0 * eps * jnp.abs(f))
    xt = project(x + _backtrack(fun, x, f, p, gp, final) * p)
    ft, gt = value_and_grad(xt)
    shrink = jnp.linalg.norm(gt) / jnp.where(gn > 0, gn, 1.0)
    moved = jnp.where(final, shrink < 1.0, ft < f)
    xn, fn, gn2 = (jnp.where(moved, u, v) for u, v in ((xt, x), (ft, f), (gt, g)))
    return xn, fn, gn2, moved, final, shrink


def _lbfgs(fun: Any, x0: jax.Array, max_iter: Any, tol: Any, mem: _Memory):
    """Minimise a smooth convex ``fun`` by L-BFGS (two-loop recursion, Armijo backtracking).

    Starts from ``x0`` with the curvature pairs ``mem`` (a warm start passes those of the
    previous penalty, so the first step already has a scale); pairs with
    ``s^T y <= 1e-10 |y|^2`` are skipped. Stops when ``|grad| <= tol`` after at least one step,
    when a line search no longer decreases ``fun`` (the rounding floor), or after ``max_iter``
    steps. Written out rather than taken from optax: it compiles several times faster under
    ``vmap``. Returns ``(x, iterations, mem)``.
    """
    value_and_grad = jax.value_and_grad(fun)
    dt = x0.dtype
    memory = mem.rho.shape[0]

    def direction(g, mem):  # unused or dropped pairs have rho = 0 and drop out
        S, Y, rho, k = mem

        def backward(i, c):
            q, al = c
            j = (k - 1 - i) % memory
            a = rho[j] * jnp.dot(S[j], q)
            return q - a * Y[j], al.at[j].set(a)

        q, al = jax.lax.fori_loop(0, memory, backward, (g, jnp.zeros((memory,), dt)))
        j = (k - 1) % memory
        have = rho[j] > 0
        gamma = jnp.where(have, 1.0 / (jnp.where(have, rho[j], 1.0) * jnp.dot(Y[j], Y[j])),
                          1.0 / jnp.maximum(jnp.linalg.norm(g), 1.0))

        def forward(i, r):
            j = (k - memory + i) % memory
            return r + (al[j] - rho[j] * jnp.dot(Y[j], r)) * S[j]

        return -jax.lax.fori_loop(0, memory, forward, gamma * q)

    def body(c):
        x, f, g, mem, it, _ = c
        p, gp = _descent(g, direction(g, mem))
        xn, fn, gn, moved, _, _ = _advance(fun, value_and_grad, x, f, g, p, gp, lambda v: v,
                                           False)
        s, y = xn - x, gn - g
        sy = jnp.dot(s, y)
        good = moved & (sy > 1e-10 * jnp.dot(y, y))
        j = mem.k % memory
        new = _Memory(mem.S.at[j].set(s), mem.Y.at[j].set(y),
                      mem.rho.at[j].set(1.0 / jnp.where(good, sy, 1.0)), mem.k + 1)
        mem = jax.tree.map(lambda a, b: jnp.where(good, a, b), new, mem)
        return xn, fn, gn, mem, it + 1, moved & (jnp.linalg.norm(gn) > tol)

    f0, g0 = value_and_grad(x0)
    init = (x0, f0, g0, mem, jnp.asarray(0), jnp.asarray(True))
    x, _, _, mem, it, _ = jax.lax.while_loop(lambda c: c[5] & (c[4] < max_iter), body, init)
    return x, it, mem


def _cholesky_inverse(a: jax.Array) -> jax.Array:
    """``L^{-1}`` for the lower Cholesky factor ``L`` of a small SPD block (NaN if not SPD).

    One loop: step ``j`` peels column ``j`` of ``L`` off the trailing matrix (right-looking) and
    then, row ``j`` of ``L`` being complete, adds row ``j`` of ``L^{-1}`` by forward substitution.
    """
    b = a.shape[0]
    idx = jnp.arange(b)
    eye = jnp.eye(b, dtype=a.dtype)

    def step(j, c):
        a, low, inv = c
        lj = jnp.where(idx >= j, a[:, j] / jnp.sqrt(a[j, j]), 0.0)
        low = low.at[:, j].set(lj)
        inv = inv.at[j].set((eye[j] - jnp.dot(low[j], inv, precision=HIGHEST)) / lj[j])
        return a - jnp.outer(lj, lj), low, inv

    zero = jnp.zeros_like(a)
    return jax.lax.fori_loop(0, b, step, (a, zero, zero))[2]


def _spd_solve(a: jax.Array, g: jax.Array, block: int = _CHOLESKY_BLOCK) -> jax.Array:
    """``a^{-1} g`` for SPD ``a``: a blocked Cholesky factorisation written in JAX (NaN if not SPD).

    Right-looking over blocks of ``block`` columns (``a`` padded with an identity to a multiple):
    each diagonal block is factored and inverted by one short loop; the panel, the trailing
    update and the substitutions (forward inside the factorisation, then backward) are matmuls.
    The trailing update runs over the whole matrix, masked: ``2 q^3`` flops instead of
    ``q^3 / 3``, but one loop body serves every block, so the compile time does not grow with
    ``q`` (and the Newton Hessian being factored costs ``2 n q^2`` anyway). Not LAPACK (what
    ``jnp.linalg.cholesky`` and ``solve_triangular`` call on CPU): OpenBLAS runs it on threads
    whose busy-waiting workers stall for a scheduler slice at every synchronisation when the
    cores are shared. Measured on a loaded 2-core machine: a 330 x 330 ``cholesky`` took
    0.3-0.5 s instead of 0.1 ms, and even 32 x 32 blocks through LAPACK took 35-70 ms per call
    (0.3 ms with ``OPENBLAS_NUM_THREADS=1``).
    """
    q = a.shape[0]
    if q <= block:  # one block: no loops around it
        inv = _cholesky_inverse(a)
        return _mm(inv.T, _mm(inv, g))
    nb = -(-q // block)
    qp = nb * block
    dt = a.dtype
    a = jnp.eye(qp, dtype=dt).at[:q, :q].set(a)
    rows = jnp.arange(qp)

    def factor(k, c):  # block column k of L, and block k of y = L^{-1} g (forward substitution)
        a, y, invs, panels = c
        s = k * block
        inv = _cholesky_inverse(jax.lax.dynamic_slice(a, (s, s), (block, block)))
        col = jax.lax.dynamic_slice(a, (0, s), (qp, block))
        panel = jnp.where((rows >= s + block)[:, None], _mm(col, inv.T), 0.0)  # A21 L11^-T
        ys = _mm(inv, jax.lax.dynamic_slice(y, (s,), (block,)))
        y = jax.lax.dynamic_update_slice(y, ys, (s,)) - _mm(panel, ys)
        return (a - _mm(panel, panel.T), y, invs.at[k].set(inv),
                jax.lax.dynamic_update_slice(panels, panel, (0, s)))

    init = (a, jnp.zeros((qp,), dt).at[:q].set(g), jnp.zeros((nb, block, block), dt),
            jnp.zeros((qp, qp), dt))
    _, y, invs, panels = jax.lax.fori_loop(0, nb, factor, init)

    def backward(i, x):  # L^T x = y, last block first
        s = (nb - 1 - i) * block
        r = jax.lax.dynamic_slice(x, (s,), (block,))
        r = r - _mm(jax.lax.dynamic_slice(panels, (0, s), (qp, block)).T, x)
        return jax.lax.dynamic_update_slice(x, _mm(invs[nb - 1 - i].T, r), (s,))

    return jax.lax.fori_loop(0, nb, backward, y)[:q]


def _newton(fun: Any, hess: Any, x0: jax.Array, max_iter: Any, tol: Any, project: Any):
    r"""Minimise a smooth convex ``fun`` by a (slightly damped) Newton method.

    Step ``p = -(H + lambda I)^{-1} g`` (:func:`_spd_solve`) with ``lambda = DAMPING |g| +
    q eps max_i |H_ii|``: the second term is the rounding in a computed ``H`` and its
    factorisation (the Cholesky factorisation of ``H + lambda I`` cannot break down above it;
    ``H`` itself is singular along the softmax shift, which ``project`` removes again), the first
    bounds early steps and vanishes at the solution, so convergence stays quadratic. The step
    is taken as :func:`_advance` says. Stops once the Newton decrement ``delta = -g^T p`` (the
    squared gradient norm in the inverse-Hessian metric, ``~ 2 (f - f*)``, so invariant to the
    scaling of the features) was at most ``tol^2`` before a step (which then leaves an error of
    order ``delta^2``); once, below the rounding of ``f``, a full step no longer halves the
    gradient; when a step fails; or after ``max_iter`` steps. At least one step is taken: a
    warm start can meet an absolute gradient test and still be far off in a weakly penalised
    direction. Returns ``(x, iterations)``.
    """
    value_and_grad = jax.value_and_grad(fun)
    dt = x0.dtype
    q = x0.shape[0]
    eps = jnp.finfo(dt).eps
    eye = jnp.eye(q, dtype=dt)

    def body(c):
        x, f, g, it, _ = c
        H = hess(x)
        lam = _DAMPING * jnp.linalg.norm(g) + q * eps * jnp.max(jnp.abs(jnp.diagonal(H)))
        p, gp = _descent(g, -_spd_solve(H + lam * eye, g))
        x, f, g, moved, final, shrink = _advance(fun, value_and_grad, x, f, g, p, gp, project,
                                                 True)
        return x, f, g, it + 1, moved & (-gp > tol * tol) & (~final | (shrink < 0.5))

    f0, g0 = value_and_grad(x0)
    init = (x0, f0, g0, jnp.asarray(0), jnp.asarray(True))
    out = jax.lax.while_loop(lambda c: c[4] & (c[3] < max_iter), body, init)
    return out[0], out[3]


def _logistic_path(x, onehot, m, alphas, max_iter, tol, method):
    """Multinomial logistic regression on the rows with mask ``m`` for every penalty in turn.

    Minimises ``[sum_i m_i CE_i + alpha/2 |W|^2] / sum(m)`` on standardised features (the
    intercept is not penalised) for ``alphas`` in the given order, each fit warm-started at the
    previous solution (pass them from strong to weak: the solutions then grow smoothly from 0).
    ``method``: ``"newton"`` (:func:`_newton`) or ``"lbfgs"`` (:func:`_lbfgs`, its curvature pairs
    carried from one penalty to the next). Returns ``(W (A, d, C), b (A, C), iterations (A,))``
    on the original features.
    """
    mean, scale = _standardise(x, m)
    n, d, c = x.shape[0], x.shape[1], onehot.shape[1]
    xh = jnp.concatenate([(x - mean) / scale, jnp.ones((n, 1), x.dtype)], axis=1)  # (n, d + 1)
    nt = jnp.sum(m)
    # two classes: class 0's logit is pinned to 0, so this is binary logistic regression with
    # the penalty on the one weight vector (scikit-learn's binomial fit), not a symmetric softmax
    k = 1 if c == 2 else c  # classes with parameters: theta = vec of a (d + 1, k) matrix
    q = (d + 1) * k
    pen = jnp.ones((d + 1, k), x.dtype).at[d].set(0.0).reshape(-1)  # the intercept is free

    def scores(theta):
        z = _mm(xh, theta.reshape(d + 1, k))
        return jnp.concatenate([jnp.zeros((n, 1), x.dtype), z], axis=1) if c == 2 else z

    def loss(theta, alpha):
        z = scores(theta)
        ce = jax.nn.logsumexp(z, axis=1) - jnp.sum(onehot * z, axis=1)
        return (jnp.sum(m * ce) + 0.5 * alpha * jnp.sum(pen * theta * theta)) / nt

    def hess(theta, alpha):
        # H = [sum_i m_i (xh_i xh_i^T) (x) (diag p_i - p_i p_i^T) + alpha diag(pen)] / nt over
        # the parametrised classes' probabilities p_i; ~ n q^2 flops, the q^2 Gram term dominant
        p = jax.nn.softmax(scores(theta), axis=1)[:, c - k :]
        zp = (xh[:, :, None] * p[:, None, :]).reshape(n, q)
        blocks = _mm(xh.T, zp * m[:, None]).reshape(d + 1, d + 1, k)  # [j, l, class]
        h = jnp.swapaxes(blocks, 1, 2)[..., None] * jnp.eye(k, dtype=x.dtype)[:, None, :]
        return (h.reshape(q, q) - _mm((zp * m[:, None]).T, zp) + jnp.diag(alpha * pen)) / nt

    def project(theta):  # the softmax is invariant to a common shift of the intercepts
        return theta if c == 2 else theta.at[d * k :].add(-jnp.mean(theta[d * k :]))

    def step(carry, alpha):
        theta, mem, prev = carry
        f = partial(loss, alpha=alpha)
        if method == "newton":
            theta, it = _newton(f, partial(hess, alpha=alpha), theta, max_iter, tol, project)
        else:
            # the pairs of the previous penalty, their penalty curvature moved to this one
            Y = mem.Y + ((alpha - prev) / nt) * pen * mem.S
            sy = jnp.sum(mem.S * Y, axis=1)
            rho = jnp.where((mem.rho > 0) & (sy > 0), 1.0 / jnp.where(sy > 0, sy, 1.0), 0.0)
            theta, it, mem = _lbfgs(f, theta, max_iter, tol, mem._replace(Y=Y, rho=rho))
        return (theta, mem, alpha), (theta, it)

    mem = None
    if method == "lbfgs":
        z = jnp.zeros((_LBFGS_MEMORY, q), x.dtype)
        mem = _Memory(z, z, jnp.zeros((_LBFGS_MEMORY,), x.dtype), jnp.asarray(0))
    _, (thetas, its) = jax.lax.scan(step, (jnp.zeros((q,), x.dtype), mem, alphas[0]), alphas)
    thetas = thetas.reshape(-1, d + 1, k)
    if c == 2:
        thetas = jnp.concatenate([jnp.zeros_like(thetas), thetas], axis=2)
    W = thetas[:, :d] / scale[None, :, None]
    return W, thetas[:, d] - jnp.einsum("d,adc->ac", mean, W, precision=HIGHEST), its


def _class_metrics(z: jax.Array, labels: jax.Array, valid: jax.Array):
    """Per-row error indicator and cross-entropy of scores ``z`` for integer ``labels``."""
    err = (jnp.argmax(z, axis=1) != labels).astype(z.dtype)
    ce = jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, labels[:, None], axis=1)[:, 0]
    return err * valid, ce * valid


@partial(jax.jit, static_argnames=("method",))
def _logistic_folds(x, onehot, labels, masks, alphas, max_iter, tol, method):
    """Held-out error and log-loss sums ``(F, A)``, the fits and iteration counts of every mask.

    Each mask's penalty path is solved in the given order of ``alphas`` (warm starts), the masks
    in parallel (``vmap``).
    """

    def one(m):
        W, b, its = _logistic_path(x, onehot, m, alphas, max_iter, tol, method)
        z = jnp.einsum("nd,adc->anc", x, W, precision=HIGHEST) + b[:, None, :]
        err, ce = jax.vmap(_class_metrics, in_axes=(0, None, None))(z, labels, 1.0 - m)
        return jnp.sum(err, axis=1), jnp.sum(ce, axis=1), W, b, its

    return jax.vmap(one)(masks)


def _fold_ids(key: Any, n: int, folds: int) -> np.ndarray:
    """Shuffled fold ids: contiguous blocks (sizes differ by at most one) of a permutation."""
    perm = np.asarray(jax.random.permutation(key, n))
    ids = np.empty(n, np.int64)
    for f, block in enumerate(np.array_split(perm, folds)):
        ids[block] = f
    return ids


def _regression_metrics(pred: np.ndarray, y: np.ndarray) -> dict:
    res = ((pred - y) ** 2).sum(axis=0)
    tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(tot > 0, 1.0 - res / np.where(tot > 0, tot, 1.0), np.nan)
        rel = res.sum() / tot.sum() if tot.sum() > 0 else np.nan
    return {"mse": float(res.sum() / y.size), "rel_mse": float(rel), "r2": float(np.mean(r2))}


def _check_task(task: str, y: Any) -> str:
    if task not in ("auto", "regression", "classification"):
        raise ValueError(f"task: expected 'auto', 'regression' or 'classification', got {task!r}")
    if task != "auto":
        return task
    if y.ndim != 1 or np.issubdtype(y.dtype, np.floating):
        return "regression"
    return "classification"  # 1-D integers, bools, strings or other labels


def _targets(y: Any, name: str, n: int, task: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim == 0 or a.shape[0] != n:
        raise ValueError(
            f"{name}: expected {n} targets (one per row of the features), got shape {a.shape}"
        )
    V.check_nonempty(a, name)
    if task == "regression":
        if a.ndim not in (1, 2):
            raise ValueError(f"{name}: regression targets must be (n,) or (n, t), got {a.shape}")
        a = _array(a, name)
        V.check_finite(a, name)
    else:
        if a.ndim != 1:
            raise ValueError(f"{name}: class labels must be a 1-D array (n,), got shape {a.shape}")
        if np.issubdtype(a.dtype, np.inexact):
            V.check_finite(a, name)
    return a


def _check_alphas(alphas: Sequence[float]) -> np.ndarray:
    a = np.asarray(alphas, np.float64).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"alphas: expected positive finite penalties, got {alphas!r}")
    return a


def ridge_probe(
    train_features: Any,
    train_y: Any,
    test_features: Any = None,
    test_y: Any = None,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    folds: int = 5,
    task: str = "auto",
    key: Any = None,
    max_iter: int = 500,
    tol: float | None = None,
) -> ProbeResult:
    r"""Linear probe of a representation: penalty chosen by ``k``-fold cross-validation.

    Features are standardised with the training statistics (mean, population std; constant
    columns kept as they are), as scikit-learn's ``StandardScaler`` does.

    * Regression (targets ``(n,)`` or ``(n, t)``): ridge with an unpenalised intercept,
      ``min_{w,b} |y - X w - b|^2 + alpha |w|^2`` (scikit-learn's ``Ridge`` objective), for all
      ``alphas`` at once from one SVD ``X = U S V^T`` per fold:
      ``w(alpha) = V diag(s / (s^2 + alpha)) U^T y``. The CV curve is the held-out MSE.
    * Classification (integer labels ``(n,)``): multinomial logistic regression,
      ``min_{W,b} sum_i CE_i + alpha/2 |W|_F^2`` (scikit-learn's ``LogisticRegression`` with
      ``C = 1/alpha``; for two classes the binomial model, class 0's logit fixed at 0, as
      scikit-learn fits it). Each fold (and the refit) solves the whole penalty path from the
      strongest penalty to the weakest, each fit warm-started at the previous solution (the
      folds in parallel, ``vmap``): with ``q = (d + 1) C`` parameters (``d + 1`` for two
      classes) up to 400 by Newton's method (explicit Hessian and Cholesky factorisation; ~5
      steps per penalty) until the Newton decrement ``sqrt(g^T H^{-1} g)`` of the per-sample
      objective is below ``tol`` or the dtype's rounding; beyond that by L-BFGS until the
      gradient norm is below ``tol``. The CV curve is the held-out error rate (ties broken by
      the held-out log-loss).

    The chosen penalty is refit on all training rows.

    Args:
        train_features: ``(n, d)`` training features.
        train_y: ``(n,)`` / ``(n, t)`` targets or ``(n,)`` class labels.
        test_features: optional ``(n_test, d)`` features.
        test_y: their targets (required with ``test_features``).
        alphas: the penalty grid (positive).
        folds: number of CV folds, ``2 <= folds <= n`` (unused with a single penalty).
        task: ``"auto"`` (1-D integer, bool or string labels: classification; floats or 2-D
            targets: regression),
            ``"regression"`` or ``"classification"``.
        key: JAX key for the shuffled fold split (required when there is more than one penalty).
        max_iter: iteration cap of each logistic fit (one fold, one penalty).
        tol: logistic convergence tolerance on the per-sample objective: its Newton decrement
            (Newton) or gradient norm (L-BFGS); default ``eps^(2/3)`` of the dtype (2.4e-5 in
            float32, 3.7e-11 in float64).

    Returns:
        A :class:`ProbeResult` (``.predict`` applies it to new features).

    Raises:
        ValueError: mismatched rows or columns, NaN/Inf, wrong target shapes, fewer than two
            classes, test labels unseen in training, a bad grid, ``folds`` or ``task``.

    Example:
        >>> import jax, numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 5))
        >>> y = x @ np.arange(1.0, 6.0) + 0.1 * rng.normal(size=200)
        >>> r = ridge_probe(x[:150], y[:150], x[150:], y[150:], key=jax.random.key(0))
        >>> r.task, r.test["r2"] > 0.99
        ('regression', True)
    """
    xtr = _features(train_features, "train_features")
    n, d = xtr.shape
    task = _check_task(task, np.asarray(train_y))
    ytr = _targets(train_y, "train_y", n, task)
    if (test_features is None) != (test_y is None):
        raise ValueError("test_features, test_y: pass both or neither")
    xte = yte = None
    if test_features is not None:
        xte = _features(test_features, "test_features")
        if xte.shape[1] != d:
            raise ValueError(
                f"test_features: expected {d} columns like train_features, got {tuple(xte.shape)}"
            )
        yte = _targets(test_y, "test_y", xte.shape[0], task)
        if task == "regression" and np.shape(yte)[1:] != np.shape(ytr)[1:]:
            raise ValueError(
                f"test_y: expected {np.ndim(ytr)}-D targets with trailing shape "
                f"{np.shape(ytr)[1:]} like train_y, got shape {np.shape(yte)}"
            )
    classes = labels = test_pos = None
    if task == "classification":
        classes, labels = np.unique(ytr, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                f"train_y: classification needs at least 2 classes, got {classes.size}"
            )
        if yte is not None:
            test_pos = np.clip(np.searchsorted(classes, yte), 0, classes.size - 1)
            unseen = classes[test_pos] != yte
            if np.any(unseen):
                raise ValueError(
                    f"test_y: {int(unseen.sum())} label(s) not seen in train_y, e.g. "
                    f"{yte[np.flatnonzero(unseen)[0]]!r}"
                )
    a = _check_alphas(alphas)
    cv = a.size > 1
    if cv:
        folds = V.check_positive_int(folds, "folds", upper=n)
        if folds < 2:
            raise ValueError(f"folds: cross-validation needs at least 2 folds, got {folds}")
        if key is None:
            raise ValueError(
                "key: pass a jax.random.key (or an int seed) for the shuffled cross-validation "
                "split"
            )
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            key = jax.random.key(int(key))
    max_iter = V.check_positive_int(max_iter, "max_iter")
    if tol is not None and not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: expected a finite tolerance >= 0 (or None), got {tol!r}")

    dt = _float_dtype(xtr, ytr) if task == "regression" else _float_dtype(xtr)
    x = jnp.asarray(xtr, dt)
    ja = jnp.asarray(a, dt)
    # one compiled call: the CV folds' masks and, last, the all-rows mask of the refit
    ids = _fold_ids(key, n, folds) if cv else np.zeros(n, np.int64)
    nf = folds if cv else 0
    masks = np.ones((nf + 1, n))
    masks[:nf] = ids[None, :] != np.arange(nf)[:, None]
    masks = jnp.asarray(masks, dt)

    if task == "regression":
        y2 = jnp.asarray(ytr, dt).reshape(n, -1)
        sse, coefs, intercepts = _ridge_folds(x, y2, masks, ja)
        cv_err = np.asarray(sse, np.float64)[:nf].sum(0) / y2.size if cv else None
        best = int(np.argmin(cv_err)) if cv else 0
        coef, intercept = coefs[-1, best], intercepts[-1, best]
        if np.ndim(ytr) == 1:
            coef, intercept = coef[:, 0], intercept[0]
        res = ProbeResult("regression", float(a[best]), a, cv_err, None, {}, None, coef,
                          intercept, None)
        c64 = np.asarray(coefs[-1, best], np.float64)  # host metrics, float64
        i64 = np.asarray(intercepts[-1, best], np.float64)

        def predict(feat: Any) -> np.ndarray:
            return np.asarray(feat, np.float64) @ c64 + i64

        y_np = np.asarray(ytr, np.float64).reshape(n, -1)
        train = _regression_metrics(predict(xtr), y_np)
        test = None
        if xte is not None:
            yte_np = np.asarray(yte, np.float64).reshape(xte.shape[0], -1)
            test = _regression_metrics(predict(xte), yte_np)
        return res._replace(train=train, test=test)

    lab = jnp.asarray(labels.astype(np.int32))
    onehot = jnp.asarray(np.eye(classes.size)[labels], dt)
    eps = float(jnp.finfo(dt).eps)
    tol = eps ** (2.0 / 3.0) if tol is None else float(tol)
    # every mask solves the penalty path from strong to weak, warm-starting each fit at the last
    order = np.argsort(-a, kind="stable")
    inv = np.argsort(order)
    q = (d + 1) * (1 if classes.size == 2 else classes.size)
    method = "newton" if q <= _NEWTON_MAX_PARAMS else "lbfgs"
    out = _logistic_folds(x, onehot, lab, masks, ja[order], max_iter, tol, method=method)
    err, ce = (np.asarray(o, np.float64)[:, inv] for o in out[:2])
    cv_err = cv_loss = None
    best = 0
    if cv:
        cv_err, cv_loss = err[:nf].sum(0) / n, ce[:nf].sum(0) / n
        best = int(np.lexsort((cv_loss, cv_err))[0])
    res = ProbeResult("classification", float(a[best]), a, cv_err, cv_loss, {}, None,
                      out[2][-1, inv[best]], out[3][-1, inv[best]], classes)
    W64, b64 = np.asarray(res.coef, np.float64), np.asarray(res.intercept, np.float64)

    def metrics(feat: Any, lbl: np.ndarray) -> dict:  # on the host, in float64
        z = np.asarray(feat, np.float64) @ W64 + b64
        zmax = z.max(axis=1)
        lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
        e = float(np.mean(np.argmax(z, axis=1) != lbl))
        ce = float(np.mean(lse - z[np.arange(z.shape[0]), lbl]))
        return {"error": e, "accuracy": 1.0 - e, "log_loss": ce}

    train = metrics(xtr, labels)
    test = None
    if xte is not None:
        test = metrics(xte, test_pos)
    return res._replace(train=train, test=test)
