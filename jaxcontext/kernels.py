r"""Pairwise kernels evaluated on tiles: ``kernel(x_tile, y_tile) -> (b, n)`` Gram tile.

Kernels are frozen dataclasses registered as pytrees: their parameters are leaves (traceable,
differentiable), so a kernel can be passed through ``jit`` inside a
:class:`~jaxcontext.operators.KernelOperator`. Every kernel also offers ``log(x, y)``, the
elementwise logarithm of its Gram tile computed without underflow where a closed form exists (used
to sample from and normalise kernel rows).

* :class:`RBF` ``exp(-gamma |x - y|^2)`` and :class:`Laplacian` ``exp(-gamma |x - y|)`` are
  :class:`Radial` kernels (functions of ``|x - y|^2``);
* :class:`Linear` ``<x, y>`` and :class:`Polynomial` ``(gamma <x, y> + c)^degree``;
* :class:`Mehler` -- the dual kernel of the Gaussian-noise context
  ``A = rho X + sqrt(1 - rho^2) eps`` with ``X ~ N(0, I)`` (REFERENCE.md section 7);
* :class:`Masked` -- any kernel evaluated on a subset of the features (masked contexts).

A tile has the promoted dtype of its inputs (float64 tiles from float64 points while
``jax_enable_x64`` is on); parameters are cast to it, so a kernel never changes the precision it
is given.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcontext.kernels import RBF
    >>> round(float(RBF(gamma=0.5)(jnp.zeros((1, 2)), jnp.ones((1, 2)))[0, 0]), 4)
    0.3679
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._pytree import register as _register_pytree

HIGHEST = jax.lax.Precision.HIGHEST

__all__ = [
    "Kernel",
    "Radial",
    "RBF",
    "Laplacian",
    "Linear",
    "Polynomial",
    "Mehler",
    "Masked",
    "sq_distances",
]


def _kernel(cls: type) -> type:
    cls = dataclasses.dataclass(frozen=True)(cls)
    return _register_pytree(cls)


def _static(default: Any = dataclasses.MISSING) -> Any:
    return dataclasses.field(default=default, metadata={"static": True})


def _concrete_scalar(value: Any) -> float | None:
    """``value`` as a float when it is a concrete real scalar, else None (tracers, placeholders)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
        if np.issubdtype(np.asarray(value).dtype, np.number):
            return float(value)
    if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
        if value.ndim == 0 and jnp.issubdtype(value.dtype, jnp.number):
            return float(value)
    return None


def _check_param(value: Any, name: str, kernel: str, *, low: float, high: float = np.inf,
                 low_open: bool = True, high_open: bool = True) -> None:
    """Validate a concrete scalar parameter (skipped under tracing)."""
    v = _concrete_scalar(value)
    if v is None:
        return
    ok_low = v > low if low_open else v >= low
    ok_high = v < high if high_open else v <= high
    if not (np.isfinite(v) and ok_low and ok_high):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{kernel}: {name} must lie in {lo}{low}, {high}{hi}, got {v!r}")


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
    """Base class for tile kernels; subclasses implement ``__call__(x, y)``.

    ``log(x, y)`` returns the elementwise log of the Gram tile; subclasses override it with a
    closed form that does not underflow.
    """

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:  # pragma: no cover - abstract
        """Evaluate the ``(b, n)`` Gram tile ``k(x_i, y_j)``."""
        raise NotImplementedError

    def log(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Elementwise ``log k(x_i, y_j)`` (``-inf`` where the kernel is zero)."""
        return jnp.log(self(x, y))


class Radial(Kernel):
    r"""A kernel of the squared distance: ``k(x, y) = f(|x - y|^2)``.

    Subclasses implement ``radial(d2)`` (and ``log_radial(d2)`` where a stable form exists).
    """

    def radial(self, d2: jax.Array) -> jax.Array:  # pragma: no cover - abstract
        """Apply the profile ``f`` to squared distances."""
        raise NotImplementedError

    def log_radial(self, d2: jax.Array) -> jax.Array:
        """``log f(d2)``."""
        return jnp.log(self.radial(d2))

    def __call__(self, x, y):
        """Evaluate the ``(b, n)`` Gram tile."""
        return self.radial(sq_distances(x, y))

    def log(self, x, y):
        """``log k(x_i, y_j) = log f(|x_i - y_j|^2)``."""
        return self.log_radial(sq_distances(x, y))


@_kernel
class RBF(Radial):
    r"""Gaussian kernel ``exp(-gamma |x - y|^2)``, ``gamma > 0``."""

    gamma: Any = 1.0

    def __post_init__(self):
        _check_param(self.gamma, "gamma", "RBF", low=0.0)

    def radial(self, d2):
        """``exp(-gamma d2)``."""
        return jnp.exp(-jnp.asarray(self.gamma, d2.dtype) * d2)

    def log_radial(self, d2):
        """``-gamma d2``."""
        return -jnp.asarray(self.gamma, d2.dtype) * d2


def _safe_sqrt(d2: jax.Array) -> jax.Array:
    # sqrt with a finite gradient at 0 (the kernel's diagonal)
    pos = d2 > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, d2, 1.0)), 0.0)


@_kernel
class Laplacian(Radial):
    r"""Laplacian kernel ``exp(-gamma |x - y|)`` (Euclidean norm), ``gamma > 0``."""

    gamma: Any = 1.0

    def __post_init__(self):
        _check_param(self.gamma, "gamma", "Laplacian", low=0.0)

    def radial(self, d2):
        """``exp(-gamma sqrt(d2))``."""
        return jnp.exp(self.log_radial(d2))

    def log_radial(self, d2):
        """``-gamma sqrt(d2)``."""
        return -jnp.asarray(self.gamma, d2.dtype) * _safe_sqrt(d2)


@_kernel
class Linear(Kernel):
    r"""Linear kernel ``<x, y>``."""

    def __call__(self, x, y):
        """Evaluate the ``(b, n)`` Gram tile."""
        return jnp.matmul(x, y.T, precision=HIGHEST)


@_kernel
class Polynomial(Kernel):
    r"""Polynomial kernel ``(gamma <x, y> + coef0)^degree`` (``degree``: static, positive)."""

    degree: int = _static(2)
    gamma: Any = 1.0
    coef0: Any = 1.0

    def __post_init__(self):
        if isinstance(self.degree, bool) or not isinstance(self.degree, numbers.Integral) or (
            self.degree < 1
        ):
            raise ValueError(f"Polynomial: degree must be a positive integer, got {self.degree!r}")
        _check_param(self.gamma, "gamma", "Polynomial", low=0.0)
        _check_param(self.coef0, "coef0", "Polynomial", low=0.0, low_open=False)

    def __call__(self, x, y):
        """Evaluate the ``(b, n)`` Gram tile."""
        g = jnp.asarray(self.gamma, x.dtype)
        c = jnp.asarray(self.coef0, x.dtype)
        return (g * jnp.matmul(x, y.T, precision=HIGHEST) + c) ** self.degree


@_kernel
class Mehler(Kernel):
    r"""Dual kernel of the Gaussian-noise context (Mehler's formula), product over coordinates.

    For ``X ~ N(0, I_D)`` and ``A = rho X + sqrt(1 - rho^2) eps`` the dual kernel is, with
    ``t = rho^2``,

    .. math::
        k(x, y) = \prod_{d=1}^{D} (1 - t^2)^{-1/2}
        \exp\!\Big(\frac{2 t x_d y_d - t^2 (x_d^2 + y_d^2)}{2 (1 - t^2)}\Big)
        = \sum_{\alpha} t^{|\alpha|}
          \prod_d \frac{He_{\alpha_d}(x_d) He_{\alpha_d}(y_d)}{\alpha_d!},

    so its integral operator on ``L2(N(0, I))`` has eigenvalues ``s^2 = rho^{2n}`` on the Hermite
    products of total degree ``n`` (multiplicity ``C(n + D - 1, D - 1)``), and
    ``E_{y ~ N(0, I)} k(x, y) = 1``. Requires ``|rho| < 1``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxcontext.kernels import Mehler
        >>> float(Mehler(rho=0.0)(jnp.ones((1, 3)), jnp.zeros((1, 3)))[0, 0])
        1.0
    """

    rho: Any = 0.5

    def __post_init__(self):
        _check_param(self.rho, "rho", "Mehler", low=-1.0, high=1.0)

    def log(self, x, y):
        """``log k(x, y)`` in closed form (no overflow or underflow before the final exp)."""
        dt = jnp.result_type(x.dtype, y.dtype)
        t = jnp.asarray(self.rho, dt) ** 2
        one_m = 1.0 - t * t
        xx = jnp.sum(x * x, axis=1)[:, None]
        yy = jnp.sum(y * y, axis=1)[None, :]
        xy = jnp.matmul(x, y.T, precision=HIGHEST)
        dim = x.shape[1]
        return -0.5 * dim * jnp.log(one_m) + (2.0 * t * xy - t * t * (xx + yy)) / (2.0 * one_m)

    def __call__(self, x, y):
        """Evaluate the ``(b, n)`` Gram tile."""
        return jnp.exp(self.log(x, y))


@_kernel
class Masked(Kernel):
    r"""A kernel evaluated on the features kept by a mask: ``k(x, y) = base(x * mask, y * mask)``.

    ``mask`` is a ``(D,)`` array of 0/1 (a boolean mask is converted); hidden features are set to
    zero on both sides, which for :class:`Radial` and inner-product kernels is the kernel of the
    kept features alone (not for :class:`Mehler`, where each hidden coordinate still contributes
    a constant factor). Used by :func:`jaxcontext.contexts.masked`.
    """

    base: Any
    mask: Any

    def __call__(self, x, y):
        """Evaluate the ``(b, n)`` Gram tile on the kept features."""
        mk = jnp.asarray(self.mask).astype(x.dtype)
        return self.base(x * mk, y * mk)

    def log(self, x, y):
        """``base.log`` on the masked features."""
        mk = jnp.asarray(self.mask).astype(x.dtype)
        return self.base.log(x * mk, y * mk)
