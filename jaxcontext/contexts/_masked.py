"""Masked RBF / kNN contexts: :func:`feature_masks` and :func:`masked`."""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import kernels as K
from .. import operators as ops
from ._checks import _check_knn, _check_points, _check_positive_scalar
from ._construction import _DEFAULT_MATERIALIZE, _build
from ._context import Context, ContextWarning
from ._kernel import _kernel_sums
from ._neighbors import _knn_indices, _search_settings
from ._rows import _KnnRows, _MaskedKernelRows, _sparse_rows

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST


# Build-time products run jitted at module level (see _construction.py).
@jax.jit
def _dense_masked_conditional(z: Array, masks: Array, kernel: Any) -> tuple[Array, Array]:
    def body(acc, mk):
        kd = kernel(z * mk, z * mk)
        return acc + kd / jnp.sum(kd, axis=1, keepdims=True), None

    acc, _ = jax.lax.scan(body, jnp.zeros((z.shape[0],) * 2, z.dtype), masks)
    pd = acc / masks.shape[0]
    w = jnp.full((z.shape[0],), 1.0 / z.shape[0], pd.dtype)
    return pd, jnp.matmul(w, pd, precision=HIGHEST)


def feature_masks(key: Array, num_features: int, *, ratio: float = 0.2,
                  num_masks: int = 50) -> Array:
    r"""Random feature masks: ``(num_masks, num_features)`` booleans, True = feature kept.

    Each mask hides ``round(ratio * num_features)`` features chosen uniformly at random. The masks
    used by :func:`masked` with the same key.

    Example:
        >>> import jax
        >>> from jaxcontext.contexts import feature_masks
        >>> feature_masks(jax.random.key(0), 10, ratio=0.2, num_masks=3).sum(1).tolist()
        [8, 8, 8]
    """
    D = V.check_positive_int(num_features, "num_features")
    R = V.check_positive_int(num_masks, "num_masks")
    ratio = float(ratio)
    if not (0.0 <= ratio < 1.0):
        raise ValueError(f"ratio: expected a fraction in [0, 1), got {ratio!r}")
    hide = int(math.floor(ratio * D + 0.5))
    if hide >= D:
        raise ValueError(
            f"ratio: {ratio} hides {hide} of {D} features; at least one feature must stay visible"
        )
    u = jax.random.uniform(key, (R, D))
    ranks = jnp.argsort(jnp.argsort(u, axis=1), axis=1)
    return ranks >= hide


def masked(
    x: Any,
    base: str = "rbf",
    *,
    key: Array,
    ratio: float = 0.2,
    num_masks: int = 50,
    gamma: float | None = None,
    k: int | None = None,
    include_self: bool = False,
    metric: str = "euclidean",
    algorithm: str = "auto",
    n_jobs: int | None = None,
    materialize_bytes: int = _DEFAULT_MATERIALIZE,
    block_rows: int | None = None,
) -> Context:
    r"""Masked RBF / kNN context: the average of the base conditional over random feature masks.

    ``P = (1/R) sum_r P_r`` where ``P_r`` is the RBF (or kNN) conditional computed on the features
    kept by mask ``r`` (:func:`feature_masks`: each mask hides ``round(ratio * D)`` features): a
    convex combination of conditionals on the same space ``A = X`` (REFERENCE.md section 2). For
    RBF it is a :func:`~jaxcontext.operators.weighted_sum` of matrix-free per-mask conditionals
    (materialised dense when ``m * m * itemsize`` bytes fit ``materialize_bytes``); for kNN the
    per-mask sparse conditionals are summed into one sparse matrix (the same operator, faster
    products). The sampler draws a mask per sample, then a neighbour under it.

    Args:
        x: ``(m, D)`` samples.
        base: ``"rbf"`` (needs ``gamma``) or ``"knn"`` (needs ``k``).
        key: PRNG key of the masks.
        ratio: fraction of features hidden by each mask.
        num_masks: ``R``.
        gamma: RBF parameter (base ``"rbf"``).
        k: number of neighbours (base ``"knn"``).
        include_self: kNN option, see :func:`knn`.
        metric: kNN metric, see :func:`knn`.
        algorithm: kNN search algorithm, see :func:`knn`.
        n_jobs: kNN search jobs, see :func:`knn`.
        materialize_bytes: dense budget, see :func:`rbf`.
        block_rows: kernel tile rows, see :func:`rbf`.

    Example:
        >>> import jax, numpy as np
        >>> from jaxcontext import contexts
        >>> x = np.random.default_rng(0).normal(size=(8, 5))
        >>> contexts.masked(x, "rbf", key=jax.random.key(0), gamma=0.3, num_masks=4).shape
        (8, 8)
    """
    xs = _check_points(x)
    m, D = xs.shape
    masks = feature_masks(key, D, ratio=ratio, num_masks=num_masks)
    R = masks.shape[0]
    if int(math.floor(float(ratio) * D + 0.5)) == 0:
        warnings.warn(f"masked: ratio={ratio} hides no feature of D={D}; the context equals "
                      f"its base", ContextWarning, stacklevel=2)
    info = (("base", base), ("ratio", float(ratio)), ("num_masks", R))
    if base == "rbf":
        if gamma is None:
            raise ValueError("masked: gamma is required for base='rbf'")
        g = _check_positive_scalar(gamma, "gamma")
        kern = K.RBF(g)
        mf = masks.astype(xs.dtype)
        w = jnp.full((m,), 1.0 / m, xs.dtype)
        if m * m * xs.dtype.itemsize <= int(materialize_bytes):
            pd, p = _dense_masked_conditional(xs, mf, kern)
            P = ops.DenseOperator(array=pd)
        else:
            parts, p = [], 0.0
            for r in range(R):
                Kop = ops.kernel_operator(xs, xs, K.Masked(base=kern, mask=mf[r]),
                                          block_rows=block_rows)
                rs, pr = _kernel_sums(Kop, w)
                parts.append(ops.product(ops.DiagonalOperator(d=1.0 / rs), Kop))
                p = p + pr
            P = ops.weighted_sum(parts, jnp.full((R,), 1.0 / R, xs.dtype))
            p = p / R
        rows = _MaskedKernelRows(x=xs, masks=mf, kernel=kern)
        return _build(P, p=p, x=xs, a_values=xs, rows=rows, name="masked",
                      info=info + (("gamma", g),))
    if base == "knn":
        if k is None:
            raise ValueError("masked: k is required for base='knn'")
        xs, k = _check_knn(xs, k)
        xh = np.asarray(xs)
        mh = np.asarray(masks)
        search = _search_settings(algorithm, n_jobs)
        cols = np.concatenate([
            _knn_indices(xh[:, keep], k, include_self, metric, search).ravel() for keep in mh
        ])
        rws = np.tile(np.repeat(np.arange(m), k), R)
        P = ops.sparse_from_edges(rws, cols, np.full(cols.size, 1.0 / (k * R)), (m, m),
                                  dtype=xs.dtype)
        p = np.bincount(cols, minlength=m) / (m * k * R)
        rows = _KnnRows(base=_sparse_rows(P), x=xs, masks=jnp.asarray(mh), k=k,
                        include_self=bool(include_self), metric=metric, search=search)
        return _build(P, p=p, x=xs, a_values=xs, rows=rows, name="masked",
                      info=info + (("k", k), ("include_self", bool(include_self)),
                                   ("metric", metric)))
    raise ValueError(f"base: expected 'rbf' or 'knn', got {base!r}")
