"""The teacher context :func:`teacher`: the kernel of whitened teacher features."""

from __future__ import annotations

import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import operators as ops
from ._checks import _check_samples, _float_dtype
from ._context import Context, ContextWarning
from ._rows import _FactorRows


def teacher(features: Any, *, x: Any = None) -> Context:
    r"""Build the teacher context: the kernel ``1 + <f_w(x), f_w(x')>`` of whitened features.

    The features ``F`` (``m x r``) are centred and whitened (``F_w^T F_w / m = I``), dropping
    rank-deficient directions with a :class:`ContextWarning`; then
    ``Z = [1, F_w] / sqrt(m)`` (dense, ``m x (1 + rank)``) has orthonormal columns: every singular
    value is 1 (multiplicity ``1 + rank``), the trivial pair is ``(sqrt(w), e_0)``. Whitening runs
    in float64 on the host; the result has the features' dtype (module docstring).

    Args:
        features: ``(m, r)`` teacher features ``f(x_i)``.
        x: optional ``(m, ...)`` inputs.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> ctx = contexts.teacher(np.random.default_rng(0).normal(size=(20, 3)))
        >>> ctx.shape
        (20, 4)
    """
    fa = V.as_float_array(features, "features", ndim=2)
    V.check_nonempty(fa, "features")
    V.check_finite(fa, "features")
    dt = _float_dtype(fa.dtype)
    eps = np.finfo(fa.dtype).eps
    F = fa.astype(np.float64)
    m, r0 = F.shape
    Fc = F - F.mean(axis=0)
    U, s, _ = np.linalg.svd(Fc, full_matrices=False)
    tol = (s.max() if s.size else 0.0) * max(m, r0) * eps
    rank = int(np.sum(s > tol)) if s.size and s.max() > 0 else 0
    if rank < r0:
        warnings.warn(
            f"teacher: features have rank {rank} after centring ({r0 - rank} of {r0} directions "
            "dropped as rank-deficient)",
            ContextWarning,
            stacklevel=2,
        )
    Fw = U[:, :rank] * np.sqrt(m)
    Z = np.concatenate([np.ones((m, 1)), Fw], axis=1) / np.sqrt(m)
    w = jnp.full((m,), 1.0 / m, dt)
    xs = None if x is None else _check_samples(x, m)
    right = np.zeros(1 + rank)
    right[0] = 1.0
    return Context(conditional=None, weights=w, normalized=ops.DenseOperator(array=jnp.asarray(
        Z, dt)), right=jnp.asarray(right, dt), p=None, x=xs,
        rows=_FactorRows(f=jnp.asarray(Fw, dt)), name="teacher", info=(("rank", rank),))
