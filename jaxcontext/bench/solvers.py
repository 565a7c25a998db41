"""The ``solvers`` suite (planned, not available yet).

It will time top-``d`` singular value solvers on operators with known or float64-reference spectra:
scipy ARPACK ``svds`` and scikit-learn ``randomized_svd`` as peers, the ``jaxcontext.linalg``
methods, reporting time and the largest relative singular-value error. It plugs into the same
harness: ``cases(size, *, dtype, seed) -> list[Case]`` with a ``compare`` that measures the
singular-value error.
"""

from __future__ import annotations

from typing import Any

from ._harness import Case, SuiteUnavailable

SUITE = "solvers"


def cases(size: str = "quick", *, dtype: Any = None, seed: int = 0) -> list[Case]:
    """Not implemented yet: always raises :class:`SuiteUnavailable`."""
    raise SuiteUnavailable(
        "suite 'solvers' is not available yet (planned: scipy ARPACK svds, sklearn "
        "randomized_svd and jaxcontext.linalg methods); available suites: operators"
    )
