"""The :class:`Context` pytree, its context-value containers and its warnings."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import operators as ops
from ..operators import _pytree, _static

Array = jax.Array


class ContextWarning(UserWarning):
    """Warnings about a context's construction (dropped samples, rank, continuous values)."""


class ZeroMarginalWarning(ContextWarning):
    """Some context values have zero marginal ``p_j`` and get zero weight in the operator."""


# --------------------------------------------------------------------------------------------------
# Context values
# --------------------------------------------------------------------------------------------------
@_pytree
class IndexedValues:
    """Context values ``values[index[j]]`` without copying ``values`` (used by :func:`concat`)."""

    values: Any
    index: Array


@_pytree
class DisjointValues:
    """Context values of a disjoint union of spaces (:func:`combine` of different spaces).

    Taking index ``j`` gives ``(component, parts)``: the component each ``j`` falls in and, for
    every component, its values at ``j``'s local index (meaningful only where ``component``
    matches).
    """

    parts: tuple
    offsets: tuple = _static()


def _take(a: Any, j: Array) -> Any:
    """``a_values`` at indices ``j`` (arrays, tuples, dicts, indexed and disjoint values)."""
    if a is None:
        return None
    if isinstance(a, IndexedValues):
        return _take(a.values, a.index[j])
    if isinstance(a, DisjointValues):
        off = a.offsets
        comp = jnp.searchsorted(jnp.asarray(off[1:-1], j.dtype), j, side="right")
        parts = tuple(
            _take(p, jnp.clip(j - off[k], 0, off[k + 1] - off[k] - 1))
            for k, p in enumerate(a.parts)
        )
        return comp, parts
    if isinstance(a, (tuple, list)):
        return tuple(_take(v, j) for v in a)
    if isinstance(a, dict):
        return {k: _take(v, j) for k, v in a.items()}
    return jnp.asarray(a)[j]


# --------------------------------------------------------------------------------------------------
# The Context
# --------------------------------------------------------------------------------------------------
@_pytree
class Context:
    r"""Samples, weights and the conditional ``P+(a | x)`` of a context (a pytree).

    Build contexts with the module's builders (:func:`knn`, :func:`graph`, ...), not directly.

    Attributes:
        conditional: ``P``, a row-stochastic ``(m, M)`` operator with ``P[i, j] = P+(a_j | x_i)``;
            None for contexts given by a dual kernel (:func:`from_kernel`) or teacher features.
        weights: ``(m,)`` sample weights ``w_i = P_X(x_i)`` summing to one.
        normalized: the operator returned by :meth:`operator`.
        right: the trivial right singular vector (:meth:`trivial_right`).
        p: ``(M,)`` column marginal ``P^T w`` (None when there is no conditional).
        x: the samples (``(m, D)`` or ``(m, ...)``), or None (graphs: inputs are node ids).
        a_values: what an SVME encoder ``Psi`` sees for context value ``j`` (``x`` itself when
            ``A = X``, the class index for labels, node ids for graphs), or None.
        rows: the row model (exact sampler, rows of ``P``, ``P+(a|x)`` at new inputs; internal).
        wsampler: alias table for non-uniform weights (None: uniform).
        sample_index: ``(m,)`` indices of the samples in the builder's input when some were
            dropped (``isolated="drop"``), or None.
        name, info: builder name and parameters (static metadata).
        squared: True for contexts defined by a dual kernel (:func:`from_kernel`): then
            :meth:`operator` is the symmetric PSD ``diag(sqrt w) K_X diag(sqrt w)`` (``K_X / m``)
            whose *eigenvalues* are ``s_i^2``; solvers take square roots.
        symmetric: True when :meth:`operator` is a symmetric matrix (undirected graphs, dual
            kernels), so a Hermitian solver applies.
        pair_sampler: a user sampler ``sampler(key, x_batch) -> a_batch`` used by
            :meth:`sample_pairs` (transformations), or None.
    """

    conditional: Any
    weights: Array
    normalized: Any
    right: Array
    p: Any
    x: Any = None
    a_values: Any = None
    rows: Any = None
    wsampler: Any = None
    sample_index: Any = None
    name: str = _static("context")
    info: tuple = _static(())
    squared: bool = _static(False)
    symmetric: bool = _static(False)
    pair_sampler: Any = _static(None)

    # -- shape -------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(m, M)``: samples by context values (for ``squared`` contexts ``(m, m)``).

        ``M`` is None for a context given only by a sampler (continuous context values).
        """
        if self.normalized is None:
            return (int(self.weights.shape[0]), None)  # type: ignore[return-value]
        return tuple(self.normalized.shape)  # type: ignore[return-value]

    @property
    def num_samples(self) -> int:
        """``m``."""
        return int(self.weights.shape[0])

    @property
    def num_values(self) -> int:
        """``M`` (the number of context values)."""
        return self.shape[1]

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.info)
        sq = ", squared=True" if self.squared else ""
        return f"Context(name={self.name!r}, m={self.shape[0]}, M={self.shape[1]}{sq}{extra})"

    # -- operators ---------------------------------------------------------------------------------
    def marginal(self) -> Array:
        """``p = P^T w`` of shape ``(M,)``: ``p_j = P_A(a_j)``."""
        if self.p is None:
            raise NotImplementedError(
                f"{self.name}: a context given by its dual kernel or teacher features has no "
                "context-value marginal"
            )
        return self.p

    def operator(self) -> ops.LinearOperator:
        r"""Return the normalised operator ``Z = diag(sqrt w) P diag(p)^{-1/2}``, shape ``(m, M)``.

        Its singular values are ``1 = s_0 >= s_1 >= ...`` with the trivial pair
        (:meth:`trivial_left`, :meth:`trivial_right`). Columns with ``p_j = 0`` are zero. For
        ``squared`` contexts this is instead the PSD ``diag(sqrt w) K_X diag(sqrt w)`` whose
        eigenvalues are ``s_i^2``.

        Raises:
            NotImplementedError: for a context given only by a sampler (:func:`transformation`
                without ``enumerate_fn`` or ``key``), with what an exact operator needs.
        """
        if self.normalized is None:
            raise NotImplementedError(
                f"{self.name}: this context is given only by its sampler, so it has no exact "
                "operator. An exact operator needs the context values to be enumerable: pass "
                "enumerate_fn=(x_i -> (values, probs)) to contexts.transformation, or key= (and "
                "num_draws=) for discrete transformations whose values repeat. For continuous "
                "transformations (noise, SCARF corruption) train with a pair objective "
                "(jaxcontext.fit(..., objective='svme')) and estimate the spectrum post hoc "
                "(jaxcontext.evaluation.posthoc_spectrum) with a kernel or a context that has one."
            )
        return self.normalized

    def trivial_left(self) -> Array:
        """``sqrt(w)``: the left singular vector of ``s_0 = 1`` (unit norm)."""
        return jnp.sqrt(self.weights)

    def trivial_right(self) -> Array:
        """``sqrt(p)``: the right singular vector of ``s_0 = 1`` (``e_0`` for teacher contexts).

        For ``squared`` contexts the eigenvector ``sqrt(w)`` of the constant function (exact when
        the kernel integrates to one, as a dual kernel does in the population).
        """
        if self.right is None:
            self.operator()  # raises: a sampler-only context has no operator
        return self.right

    # -- sampling ----------------------------------------------------------------------------------
    def _sample_x(self, key: Array, batch: int) -> Array:
        if self.wsampler is None:
            m = self.shape[0]
            return jax.random.randint(key, (batch,), 0, m, dtype=V.index_dtype(m))
        return self.wsampler.sample(key, batch)

    def sample_indices(self, key: Array, batch: int) -> tuple[Array, Array]:
        r"""Draw ``batch`` index pairs ``(i, j)`` with ``i ~ w`` and ``j ~ P[i, :]``, exactly.

        Jittable (``batch`` is static) and deterministic for a key: sparse conditionals search the
        row's cumulative sums, kernel contexts evaluate the batch's kernel rows and draw
        categorically, labels return ``y_i``, mixtures pick a component then sample it.

        Example:
            >>> import jax, numpy as np
            >>> from jaxcontext import contexts
            >>> ctx = contexts.labels(np.array([0, 1, 1, 2]))
            >>> i, j = ctx.sample_indices(jax.random.key(0), 5)
            >>> bool((np.array([0, 1, 1, 2])[np.asarray(i)] == np.asarray(j)).all())
            True
        """
        batch = V.check_positive_int(batch, "batch")
        if self.rows is None:
            raise NotImplementedError(f"{self.name}: this context has no conditional to sample")
        try:
            return _jit_sample_indices(self, key, batch)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None

    def _sample_indices(self, key: Array, batch: int) -> tuple[Array, Array]:
        ki, kj = jax.random.split(key)
        i = self._sample_x(ki, batch)
        return i, self.rows.sample(kj, i)

    def sample_pairs(self, key: Array, batch: int) -> tuple[Any, Any]:
        """Draw ``batch`` pairs ``(x, a) ~ P+`` for SVME: ``(x[i], a_values[j])``.

        Where ``x`` is None the sample ids are returned (graph node ids, ``sample_index``); where
        ``a_values`` is None the context-value indices ``j``. Transformation contexts draw
        ``a = sampler(key, x[i])`` with the user's sampler directly.
        """
        batch = V.check_positive_int(batch, "batch")
        if self.pair_sampler is None and self.rows is None:
            raise NotImplementedError(f"{self.name}: this context has no conditional to sample")
        try:
            return _jit_sample_pairs(self, key, batch)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None

    def _sample_pairs(self, key: Array, batch: int) -> tuple[Any, Any]:
        if self.pair_sampler is not None:
            ki, ka = jax.random.split(key)
            i = self._sample_x(ki, batch)
            xb = _take(self.x, i)
            return xb, self.pair_sampler(ka, xb)
        i, j = self._sample_indices(key, batch)
        if self.x is not None:
            xb = _take(self.x, i)
        elif self.sample_index is not None:
            xb = self.sample_index[i]
        else:
            xb = i
        ab = j if self.a_values is None else _take(self.a_values, j)
        return xb, ab

    # -- kernels -----------------------------------------------------------------------------------
    def _check_idx(self, idx: Any, name: str) -> Array:
        a = jnp.asarray(idx)
        V.check_ndim(a, name, 1)
        if not jnp.issubdtype(a.dtype, jnp.integer):
            raise ValueError(f"{name}: expected integer sample indices, got dtype {a.dtype}")
        if V.is_concrete(a):
            V.check_int_range(np.asarray(a), name, 0, self.shape[0])
        return a

    def gram(self, idx: Any, idx2: Any = None) -> Array:
        r"""Batch Gram of the dual kernel ``k_X+(x_i, x_l) = sum_j P[i, j] P[l, j] / p_j``.

        Args:
            idx: ``(b,)`` sample indices.
            idx2: ``(b2,)`` sample indices (default ``idx``).

        Returns:
            ``(b, b2)`` array. Context values with ``p_j = 0`` do not contribute. Sparse
            conditionals gather the batch's rows (compressing the columns they touch), kernel
            contexts evaluate their rows, ``from_kernel`` contexts evaluate the kernel.
        """
        i = self._check_idx(idx, "idx")
        l = None if idx2 is None else self._check_idx(idx2, "idx2")
        if self.rows is None:
            raise NotImplementedError(f"{self.name}: no rows to build a Gram from")
        try:
            return _jit_gram(self, i, l)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None

    def _gram(self, i: Array, l: Array | None) -> Array:
        pinv = None
        if self.p is not None:
            pinv = jnp.where(self.p > 0, 1.0 / jnp.where(self.p > 0, self.p, 1.0), 0.0)
        return self.rows.gram(i, l, pinv)

    def conditional_rows(self, x_new: Any = None, *, y: Any = None) -> Array:
        r"""Dense rows ``P+(a_j | x)`` at new inputs, shape ``(b, M)``.

        Available for :func:`knn` (host neighbour search), :func:`rbf`, :func:`masked`,
        :func:`labels` (pass the new points' labels, positionally or as ``y=``; regression targets
        likewise), their mixtures, and :func:`from_kernel`, where the rows are the dual-kernel
        rows ``k_X+(x, x_l)`` of shape ``(b, m)``. Used for out-of-sample extension of singular
        functions. New points are cast to the context's dtype, and so are the rows.

        At the training points the rows equal those of ``P``: for kernel contexts to rounding (the
        same formula), for :func:`knn` exactly -- a query point equal to a training point (bitwise,
        in the context's dtype) gets that point's stored row, the ``r``-th query of a duplicated
        value the row of the ``r``-th training point holding it (see :func:`knn`).

        Raises:
            NotImplementedError: for contexts whose conditional cannot be evaluated at new inputs
                (graphs, transformations, teacher).
        """
        if self.rows is None:
            raise NotImplementedError(f"{self.name}: no conditional to evaluate")
        try:
            return self.rows.new_rows(x_new, y)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None

    def conditional_rows_times(
        self, x_new: Any, M: Any, *, y: Any = None, max_entries: int = 2**24
    ) -> Array:
        r"""``conditional_rows(x_new, y=y) @ M`` without holding all the dense rows.

        ``M`` has one row per context value (``(M_values, c)``). kNN contexts average ``M``'s rows
        over each point's neighbours (no dense row at all); other contexts build their dense rows
        in chunks of at most ``max_entries`` entries. This is what out-of-sample extension
        (:meth:`jaxcontext.spectrum.Contexture.evaluate`) uses, so evaluating many points of a
        large context stays in bounded memory.
        """
        if self.rows is None:
            raise NotImplementedError(f"{self.name}: no conditional to evaluate")
        cols = int(np.shape(M)[0])
        chunk = max(1, int(max_entries) // max(cols, 1))
        try:
            return self.rows.new_rows_times(x_new, y, M, chunk)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None


# Methods run through module-level jitted functions: eager calls compile once per context
# structure and batch size (the loops inside would otherwise re-trace at every call); inside a
# user's jit they are inlined.
@functools.partial(jax.jit, static_argnames=("batch",))
def _jit_sample_indices(ctx: Context, key: Array, batch: int) -> tuple[Array, Array]:
    return ctx._sample_indices(key, batch)


@functools.partial(jax.jit, static_argnames=("batch",))
def _jit_sample_pairs(ctx: Context, key: Array, batch: int) -> tuple[Any, Any]:
    return ctx._sample_pairs(key, batch)


@jax.jit
def _jit_gram(ctx: Context, i: Array, l: Array | None) -> Array:
    return ctx._gram(i, l)
