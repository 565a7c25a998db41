r"""Pairwise kernels evaluated on tiles: ``kernel(x_tile, y_tile) -> (b, n)`` Gram tile.

Kernels are frozen dataclasses registered as pytrees: their parameters are leaves (traceable,
differentiable), so a kernel can be passed through ``jit`` inside a
:class:`~jaxcontext.operators.KernelOperator`.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcontext.kernels import RBF
    >>> RBF(gamma=0.5)(jnp.zeros((1, 2)), jnp.ones((1, 2))).round(4).tolist()
    [[0.3679]]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST

__all__ = ["Kernel", "RBF", "Linear", "sq_distances"]


def _kernel(cls: type) -> type:
    cls = dataclasses.dataclass(frozen=True)(cls)
    return jax.tree_util.register_dataclass(cls)


def sq_distances(x: jax.Array, y: jax.Array) -> jax.Array:
    r"""Squared Euclidean distances ``|x_i - y_j|^2`` by the expansion ``|x|^2 + |y|^2 - 2 x.y``.

    The cross term uses ``Precision.HIGHEST`` (TF32 would lose the small distances) and the result
    is clamped at zero against cancellation.
    """
    xx = jnp.sum(x * x, axis=1)[:, None]
    yy = jnp.sum(y * y, axis=1)[None, :]
    xy = jnp.matmul(x, y.T, precision=HIGHEST)
    return jnp.maximum(xx + yy - 2.0 * xy, 0.0)


class Kernel:
    """Base class for tile kernels; subclasses implement ``__call__(x, y)``."""

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError


@_kernel
class RBF(Kernel):
    r"""Gaussian kernel ``exp(-gamma |x - y|^2)``."""

    gamma: Any = 1.0

    def __call__(self, x, y):
        return jnp.exp(-jnp.asarray(self.gamma, x.dtype) * sq_distances(x, y))


@_kernel
class Linear(Kernel):
    r"""Linear kernel ``<x, y>``."""

    def __call__(self, x, y):
        return jnp.matmul(x, y.T, precision=HIGHEST)
