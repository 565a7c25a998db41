r"""A randomised symmetry probe: is ``A`` symmetric to rounding? Two products, one block.

For Gaussian blocks ``X, Y`` (``n x p`` each) and one product ``A [X, Y]``,

.. math::  \rho = \frac{\|X^T (A Y) - (A X)^T Y\|_F}{\|X\|_F \|A Y\|_F + \|A X\|_F \|Y\|_F}

is zero in exact arithmetic for a symmetric ``A`` and a rounding-level multiple of ``eps`` in
floating point. Measured on symmetric operators (dense, sparse ``D^-1/2 W D^-1/2``, matrix-free
kernels, ``diag K diag``, deflated ones; float32 and float64; n = 150 to 20,000), ``rho / eps`` was
0.03-0.25, and 2-16 where products cancel heavily (a centred or deflated kernel whose removed part
is 100 times the rest). For ``A = S + E`` with a random non-symmetric ``E``, ``rho`` is about
``0.56 |E|_F / (|S|_F sqrt(n))``: a 1% asymmetry of a 500 x 500 matrix gives ``rho / eps`` = 2400
in float32.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._common import gaussian, mm

# hermitian=True is refused above this many eps (far above the 0.03-16 measured on symmetric
# operators); hermitian=None takes the symmetric path at or below SYMMETRIC_EPS eps.
ASYMMETRIC_EPS = 1000.0
SYMMETRIC_EPS = 1.0
PROBE_COLUMNS = 2  # p: columns of X and of Y (one product of 2 p columns)


class Symmetry(NamedTuple):
    """Result of :func:`symmetry_probe`.

    Attributes:
        rho: the relative asymmetry ``rho`` (module docstring).
        eps: machine epsilon of the operator's dtype.
        matvecs: product columns used (``2 p``).
    """

    rho: float
    eps: float
    matvecs: int

    @property
    def in_eps(self) -> float:
        """``rho / eps``."""
        return self.rho / self.eps


@functools.partial(jax.jit, static_argnames=("p",))
def _asymmetry(A, key, *, p: int):
    n = A.shape[1]
    Z = gaussian(key, (n, 2 * p), A.dtype)
    W = A.matmat(Z)
    X, Y, AX, AY = Z[:, :p], Z[:, p:], W[:, :p], W[:, p:]
    D = mm(X.T, AY) - mm(AX.T, Y)

    def nrm(a):
        return jnp.sqrt(jnp.sum(a * a))

    scale = nrm(X) * nrm(AY) + nrm(AX) * nrm(Y)
    return nrm(D), scale


def symmetry_probe(A: Any, key: jax.Array, *, p: int = PROBE_COLUMNS) -> Symmetry:
    """Measure the relative asymmetry ``rho`` of a square operator with one block product."""
    delta, scale = (float(v) for v in _asymmetry(A, key, p=p))
    eps = float(np.finfo(np.dtype(A.dtype)).eps)
    if not (np.isfinite(delta) and np.isfinite(scale)):
        raise ValueError(
            "svds: the operator produced NaN or Inf in its products (symmetry probe); check its "
            "entries, kernel parameters and scaling"
        )
    rho = delta / scale if scale > 0 else 0.0
    return Symmetry(rho=rho, eps=eps, matvecs=2 * p)
