"""The label context :func:`labels` (classification and regression)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import kernels as K
from .. import operators as ops
from ._checks import (
    _check_labels,
    _check_points,
    _check_positive_scalar,
    _check_samples,
    _index_array,
)
from ._construction import _DEFAULT_MATERIALIZE, _build
from ._context import Context
from ._kernel import _kernel_parts
from ._rows import _OneHotRows


def labels(
    y: Any,
    *,
    num_classes: int | None = None,
    kind: str = "classification",
    gamma: float | None = None,
    x: Any = None,
    materialize_bytes: int = _DEFAULT_MATERIALIZE,
) -> Context:
    r"""Build the label context: ``A`` is the label of ``x``.

    Classification: ``P+(a | x_i) = onehot(y_i)`` (sparse ``m x C``, JAX's default float dtype),
    ``A`` = the class index, ``k_X+(x, x') = 1[y = y'] / p_y``; balanced ``C`` classes give
    ``s_1..s_{C-1} = 1``, then 0.
    Regression (``kind="regression"``): an RBF context on the target values,
    ``P[i, j] = exp(-gamma |y_i - y_j|^2) / sum_l exp(-gamma |y_i - y_l|^2)``, ``A`` = the samples'
    targets (see :func:`rbf`).

    Args:
        y: ``(m,)`` integer class labels in ``[0, num_classes)``, or ``(m,)`` / ``(m, t)``
            real targets for regression.
        num_classes: number of classes ``C`` (default ``max(y) + 1``); empty classes have zero
            marginal (warned).
        kind: ``"classification"`` or ``"regression"``.
        gamma: RBF parameter on the targets (required for regression).
        x: optional ``(m, ...)`` inputs, returned by :meth:`Context.sample_pairs`.
        materialize_bytes: regression only, see :func:`rbf`.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> contexts.labels(np.array([0, 1, 1, 0])).marginal().tolist()
        [0.5, 0.5]
    """
    if kind == "regression":
        zj = _check_points(y, "y", ndim=(1, 2))
        if zj.ndim == 1:
            zj = zj[:, None]
        if gamma is None:
            raise ValueError("labels: gamma is required for kind='regression' (RBF on the targets)")
        g = _check_positive_scalar(gamma, "gamma")
        xs = None if x is None else _check_samples(x, zj.shape[0])
        P, p, rows = _kernel_parts(zj, K.RBF(g), materialize_bytes=materialize_bytes,
                                   block_rows=None, use="y")
        return _build(P, p=p, x=xs, a_values=zj, rows=rows, name="labels",
                      info=(("kind", "regression"), ("gamma", g)))
    if kind != "classification":
        raise ValueError(f"kind: expected 'classification' or 'regression', got {kind!r}")
    ya = _check_labels(y, "y", num_classes)
    C = int(ya.max()) + 1 if num_classes is None else V.check_positive_int(num_classes,
                                                                           "num_classes")
    m = ya.shape[0]
    xs = None if x is None else _check_samples(x, m)
    dt = V.default_float_dtype()  # integer labels: JAX's default float dtype
    P = ops.sparse_from_edges(np.arange(m), ya, np.ones(m), (m, C), dtype=dt)
    p = np.bincount(ya, minlength=C) / m
    rows = _OneHotRows(y=_index_array(ya, C), num_classes=C, dtype=dt)
    return _build(P, p=p, x=xs, a_values=jnp.arange(C), rows=rows, name="labels",
                  info=(("kind", "classification"), ("num_classes", C)))
