"""Certified top-d singular value solvers for linear operators.

:func:`svds` computes the top-``d`` singular triplets of anything
:func:`jaxcontext.operators.as_operator` accepts (dense, sparse, matrix-free kernel, composed,
sharded) with a dense reference, randomized SVD, randomized block Krylov, or a restarted block
Lanczos with locking, and certifies every triplet with fresh residual products.
:func:`orthonormalize` is the one orthonormalisation routine the solvers share.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcontext.linalg import svds
    >>> sp = svds(jnp.diag(jnp.array([3.0, 2.0, 1.0])), 1)
    >>> round(float(sp.s[0]), 4), sp.info.method
    (3.0, 'dense')
"""

from ._orth import Orthonormalized, orthonormalize
from ._spectrum import (
    NotConvergedError,
    NotConvergedWarning,
    SolverInfo,
    Spectrum,
    residuals,
)
from ._svds import METHODS, svds

__all__ = [
    "svds",
    "Spectrum",
    "SolverInfo",
    "orthonormalize",
    "Orthonormalized",
    "residuals",
    "NotConvergedWarning",
    "NotConvergedError",
    "METHODS",
]
