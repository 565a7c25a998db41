"""Random-transformation contexts ``a = t(x)``: :func:`transformation`."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import operators as ops
from ._checks import _float_dtype
from ._construction import _build
from ._context import Context, ContextWarning
from ._rows import _sparse_rows

Array = jax.Array


def transformation(
    x: Any,
    sampler: Callable | None,
    *,
    key: Array | None = None,
    num_draws: int = 64,
    enumerate_fn: Callable | None = None,
) -> Context:
    r"""Build a random-transformation context ``a = t(x)`` (crops, noise, SCARF corruption).

    The pair sampler is the user's ``sampler(key, x_batch) -> a_batch`` (one independent draw per
    row), used by :meth:`Context.sample_pairs` and so by :func:`jaxcontext.fit` with pair
    objectives (SVME, low-rank, contrastive).

    * **Sampler only** (the default: no ``enumerate_fn``, no ``key``): continuous augmentations such
      as Gaussian noise or SCARF corruption, the commonest case in self-supervised learning. No
      operator is built (every draw would be a distinct value); :meth:`Context.operator` says what
      an exact one needs.
    * **Exact**, ``enumerate_fn(x_i) -> (values, probs)``: ``P[i, v] = probs`` over the distinct
      enumerated values.
    * **Empirical**, ``key=``: ``num_draws`` draws per sample, ``P[i, v]`` = empirical frequency of
      value ``v``; the values must be discrete for this to mean anything (if every draw is
      distinct a :class:`ContextWarning` says so).

    ``a_values`` holds the distinct values. The operator's dtype is that of ``x`` (JAX's default
    float dtype for integer ``x``; module docstring).

    Args:
        x: ``(m, ...)`` samples.
        sampler: the transformation sampler (may be None when ``enumerate_fn`` is given).
        key: PRNG key of the draws of an empirical operator (None: sampler only).
        num_draws: draws per sample for the empirical operator.
        enumerate_fn: exact enumeration of the transformed values and their probabilities.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jaxcontext import contexts
        >>> flip = lambda key, xb: xb * jnp.where(jax.random.bernoulli(key, 0.5, xb.shape), -1, 1)
        >>> enum = lambda xi: (np.stack([xi, -xi]), np.array([0.5, 0.5]))
        >>> ctx = contexts.transformation(np.eye(3), flip, enumerate_fn=enum)
        >>> ctx.shape
        (3, 6)
    """
    xa = V.as_real_array(x, "x")
    dt = _float_dtype(xa.dtype)
    V.check_nonempty(xa, "x")
    if xa.ndim == 0:
        raise ValueError("x: expected (m, ...) samples, got a scalar")
    V.check_finite(xa, "x")
    m = xa.shape[0]
    if enumerate_fn is not None:
        vals, rws, prs = [], [], []
        for i in range(m):
            v, pr = enumerate_fn(xa[i])
            v = np.asarray(v)
            pr = np.asarray(pr, np.float64).ravel()
            if v.ndim == 0 or v.shape[0] != pr.shape[0]:
                raise ValueError(
                    f"enumerate_fn: sample {i} gave {v.shape[0] if v.ndim else 0} values and "
                    f"{pr.shape[0]} probabilities; they must match"
                )
            V.check_finite(pr, f"enumerate_fn probabilities (sample {i})")
            V.check_nonnegative(pr, f"enumerate_fn probabilities (sample {i})")
            if abs(pr.sum() - 1.0) > 1e-6:
                raise ValueError(
                    f"enumerate_fn: probabilities of sample {i} sum to {pr.sum():.8g}, expected 1"
                )
            vals.append(v)
            rws.append(np.full(v.shape[0], i))
            prs.append(pr)
        shapes = {v.shape[1:] for v in vals}
        if len(shapes) != 1:
            raise ValueError(f"enumerate_fn: values must share one shape, got {sorted(shapes)}")
        allv, rows_, probs = np.concatenate(vals), np.concatenate(rws), np.concatenate(prs)
        info = (("enumerated", True),)
    else:
        if sampler is None:
            raise ValueError("transformation: pass a sampler or an enumerate_fn")
        if not callable(sampler):
            raise TypeError(f"sampler: expected a callable, got {type(sampler).__name__}")
        if key is None:
            xj = jnp.asarray(xa, dt)
            probe = jax.eval_shape(sampler, jax.random.key(0), xj[: min(m, 2)])
            if not hasattr(probe, "shape") or probe.shape[:1] != (min(m, 2),):
                raise ValueError(
                    "sampler: expected sampler(key, x_batch) to return one transformed value per "
                    f"row; for a batch of {min(m, 2)} it returned {probe}"
                )
            V.check_real(probe, "sampler output")
            w = jnp.full((m,), 1.0 / m, dt)
            return Context(conditional=None, weights=w, normalized=None, right=None, p=None,
                           x=xj, pair_sampler=sampler, name="transformation",
                           info=(("sampler_only", True),))
        T = V.check_positive_int(num_draws, "num_draws")
        keys = jax.random.split(key, T)
        xj = jnp.asarray(xa)
        draws = []
        for t in range(T):
            a = np.asarray(sampler(keys[t], xj))
            if a.ndim == 0 or a.shape[0] != m:
                raise ValueError(
                    f"sampler: expected a batch of {m} transformed values, got shape {a.shape}"
                )
            draws.append(a)
        allv = np.concatenate(draws)
        rows_ = np.tile(np.arange(m), T)
        probs = np.full(allv.shape[0], 1.0 / T)
        info = (("num_draws", T),)
    V.check_real(allv, "transformed values")
    V.check_finite(allv, "transformed values")
    flat = allv.reshape(allv.shape[0], -1)
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    U = uniq.shape[0]
    if enumerate_fn is None and probs.size > 1 and U == flat.shape[0]:
        warnings.warn(
            "transformation: every draw gave a distinct value, so the empirical operator has all "
            "singular values 1; for continuous transformations pass enumerate_fn or use the "
            "post-hoc spectrum estimate",
            ContextWarning,
            stacklevel=2,
        )
    P = ops.sparse_from_edges(rows_, inv, probs, (m, U), dtype=dt)
    p = np.bincount(inv, weights=probs / m, minlength=U)
    a_values = jnp.asarray(uniq.reshape((U,) + allv.shape[1:]))
    return _build(P, p=p, x=jnp.asarray(xa), a_values=a_values, rows=_sparse_rows(P),
                  pair_sampler=sampler, name="transformation", info=info)
