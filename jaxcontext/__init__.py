"""jaxcontext: contexture theory at scale in JAX.

The exact path builds context operators (:mod:`jaxcontext.operators`, :mod:`jaxcontext.contexts`)
and computes their top singular functions (:mod:`jaxcontext.linalg`, :mod:`jaxcontext.spectrum`);
the learned path trains encoders (:mod:`jaxcontext.models`) with the objectives of
:mod:`jaxcontext.objectives` (:func:`fit`, :mod:`jaxcontext.training`); :mod:`jaxcontext.evaluation`
compares the two; :mod:`jaxcontext.datasets` has problems with known spectra and bundled real data. Public names are
re-exported here explicitly (``tests/test_public_api.py`` imports every one).
"""

from . import bridge as bridge
from . import contexts as contexts
from . import datasets as datasets
from . import evaluation as evaluation
from . import kernels as kernels
from . import linalg as linalg
from . import models as models
from . import objectives as objectives
from . import operators as operators
from . import spectrum as spectrum
from . import training as training
from ._jit_maps import CompiledProgramsReleasedWarning as CompiledProgramsReleasedWarning
from ._jit_maps import release_compiled_programs as release_compiled_programs
from ._sharding import RowShardedOperator as RowShardedOperator
from ._sharding import row_mesh as row_mesh
from ._sharding import shard_block as shard_block
from ._sharding import shard_rows as shard_rows
from .contexts import Context as Context
from .linalg import Spectrum as Spectrum
from .linalg import svds as svds
from .operators import LinearOperator as LinearOperator
from .operators import as_operator as as_operator
from .spectrum import Contexture as Contexture
from .spectrum import compatibility as compatibility
from .spectrum import contexture as contexture
from .spectrum import decay_rate as decay_rate
from .spectrum import ratio_trace as ratio_trace
from .spectrum import tau as tau
from .spectrum import worst_case_error as worst_case_error
from .training import FitResult as FitResult
from .training import fit as fit

__version__ = "0.1.0.dev0"

__all__ = [
    "CompiledProgramsReleasedWarning",
    "Context",
    "Contexture",
    "LinearOperator",
    "RowShardedOperator",
    "as_operator",
    "bridge",
    "compatibility",
    "contexts",
    "contexture",
    "datasets",
    "decay_rate",
    "evaluation",
    "fit",
    "FitResult",
    "kernels",
    "linalg",
    "models",
    "objectives",
    "operators",
    "ratio_trace",
    "release_compiled_programs",
    "row_mesh",
    "shard_block",
    "shard_rows",
    "spectrum",
    "Spectrum",
    "svds",
    "tau",
    "training",
    "worst_case_error",
]
