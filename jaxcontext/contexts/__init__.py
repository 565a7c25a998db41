r"""Contexts: samples plus the conditional law ``P+(a | x)`` of a context variable.

A :class:`Context` describes the joint law ``P+(x, a)`` on ``m`` samples ``x_1..x_m`` with weights
``w_i = P_X(x_i)`` and ``M`` context values ``a_1..a_M`` (REFERENCE.md sections 1-2):

* the conditional ``P[i, j] = P+(a_j | x_i)``, a row-stochastic
  :class:`~jaxcontext.operators.LinearOperator` of shape ``(m, M)``;
* the column marginal ``p = P^T w`` (``p_j = P_A(a_j)``);
* the normalised operator

  .. math:: Z = \operatorname{diag}(\sqrt{w})\, P\, \operatorname{diag}(p)^{-1/2},

  whose singular values estimate the contexture's ``1 = s_0 >= s_1 >= ...``. With uniform weights
  ``Z = P diag(p)^{-1/2} / sqrt(m)`` and ``Z Z^T = K_X / m`` with
  ``K_X[i, l] = k_X+(x_i, x_l)``; for a graph ``Z = D^{-1/2} W D^{-1/2}``. The trivial pair
  ``s_0 = 1`` has left vector ``sqrt(w)`` (:meth:`Context.trivial_left`) and right vector
  ``sqrt(p)`` (:meth:`Context.trivial_right`);
* a pair sampler for SVME (:meth:`Context.sample_indices`, :meth:`Context.sample_pairs`: ``i ~ w``,
  ``j ~ P[i, :]``, exact for every builder), the batch Gram of the dual kernel for KISE
  (:meth:`Context.gram`) and, where ``P+(a | x)`` can be evaluated at new inputs,
  :meth:`Context.conditional_rows` for out-of-sample extension.

Builders: :func:`labels`, :func:`graph`, :func:`knn`, :func:`rbf`, :func:`masked`,
:func:`transformation`, :func:`from_conditional`, :func:`from_kernel`, :func:`teacher`. Mixing
(REFERENCE.md section 4) composes operators: :func:`convolve` (``P_1 P_2``), :func:`combine`
(convex combination) and :func:`concat` (``A = (A_1, A_2)``).

Policies:

* **Zero-marginal context values** (``p_j = 0``: a kNN point that is nobody's neighbour, an empty
  class) get zero weight in ``Z`` (column ``j`` of ``Z`` is zero), which for the spectrum is the
  same as dropping the column; a :class:`ZeroMarginalWarning` says how many.
* **Samples without context** (rows of ``P`` summing to zero, e.g. isolated graph nodes):
  ``isolated="error"`` (default) raises a ValueError naming how many and the first few;
  ``isolated="drop"`` removes them with a :class:`ContextWarning`, and
  :attr:`Context.sample_index` maps the remaining samples to the input's indices.
* **Dtypes.** A context computes in the float dtype of its *data input*: ``x`` for :func:`knn`,
  :func:`rbf`, :func:`masked`, :func:`transformation` and :func:`from_kernel`; ``y`` for
  regression :func:`labels`; the adjacency or edge ``weights`` for :func:`graph`; the conditional
  for :func:`from_conditional`; the features for :func:`teacher`. A floating input keeps its
  dtype where JAX can hold it: float64 stays float64 while ``jax_enable_x64`` is on (globally or
  inside ``jax.enable_x64(True)``), float32 stays float32 always, and with x64 off float64
  becomes float32, as ``jnp.asarray`` does. Integer and boolean data (class labels, unweighted
  graphs, integer points) get JAX's default float dtype (float32, or float64 with x64 on);
  half precision is promoted to float32. Everything derived -- ``P``, the weights ``w``, the
  marginal ``p``, ``Z``, the trivial vectors, the samplers' probabilities, Grams and
  :meth:`Context.conditional_rows` (new points are cast to the context's dtype) -- has that
  dtype; secondary inputs (sample weights, mixing weights, kernel parameters) are converted to
  it. Mixtures (:func:`convolve`, :func:`combine`, :func:`concat`) take the promoted dtype of
  their components. Complex input is refused with a TypeError naming the argument.

Example:
    >>> import numpy as np
    >>> from jaxcontext import contexts
    >>> ctx = contexts.labels(np.array([0, 0, 1, 1, 2, 2]))
    >>> np.linalg.svd(np.asarray(ctx.operator().to_dense()), compute_uv=False).round(4).tolist()
    [1.0, 1.0, 1.0]
"""

from ._conditional import from_conditional
from ._context import Context, ContextWarning, DisjointValues, IndexedValues, ZeroMarginalWarning
from ._graph import graph
from ._kernel import from_kernel, rbf
from ._knn import knn
from ._labels import labels
from ._masked import feature_masks, masked
from ._mixing import combine, concat, convolve
from ._teacher import teacher
from ._transformation import transformation

# isort: split
# private names the tests reach through the package
from ._rows import _alias_table as _alias_table
from ._rows import _categorical_rows as _categorical_rows
from ._rows import _KernelRows as _KernelRows
from ._rows import _KnnRows as _KnnRows

__all__ = [
    "Context",
    "ContextWarning",
    "ZeroMarginalWarning",
    "IndexedValues",
    "DisjointValues",
    "labels",
    "graph",
    "knn",
    "rbf",
    "masked",
    "feature_masks",
    "transformation",
    "from_conditional",
    "from_kernel",
    "teacher",
    "convolve",
    "combine",
    "concat",
]
