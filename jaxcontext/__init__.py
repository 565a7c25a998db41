"""jaxcontext: contexture theory at scale in JAX.

The exact path builds context operators and computes their top singular functions; the learned path
trains encoders; evaluation compares the two. Public names are re-exported here explicitly.
"""

from . import kernels as kernels
from . import operators as operators
from .operators import LinearOperator as LinearOperator
from .operators import as_operator as as_operator

__version__ = "0.1.0.dev0"
