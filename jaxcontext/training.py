r"""Training encoders to learn a contexture: :func:`fit`.

``fit(encoder, context, objective=..., steps=..., batch_size=..., key=...)`` trains a Flax NNX
encoder ``Phi`` (and, for SVME-type objectives, a second encoder ``Psi`` on the context variable)
with an objective of :mod:`jaxcontext.objectives`, drawing every batch from the context itself:

* ``"pairs"`` objectives (SVME, low-rank, Laplacian eigenmaps) get ``(x, a) ~ P+`` from
  :meth:`~jaxcontext.contexts.Context.sample_pairs`;
* ``"views"`` objectives (spectral contrastive, non-contrastive) get two independent context draws
  ``a, a'`` of the same ``x``;
* ``"gram"`` objectives (KISE, kernel low-rank) get the batch Gram ``k_X+(x_i, x_l)`` from
  :meth:`~jaxcontext.contexts.Context.gram`;
* ``"labels"`` objectives (balanced supervised) get the class of each sample and its marginal.

How it runs:

* **One compiled program.** Batches are sampled inside the compiled step from a per-step key
  ``fold_in(key, step)``; steps run in chunks of ``log_every`` inside one ``jax.jit`` (a
  ``fori_loop`` with a dynamic trip count), so Python dispatch costs nothing per step and the
  program is traced and compiled once per run.
* **Data parallel over every device** of a mesh (``jax.sharding``): the batch axis is sharded over
  the mesh axis ``"data"``, parameters and optimiser state are replicated. The objectives are
  plain reductions over the global batch, so their batch statistics (means, covariances, Grams,
  half-batch moments) are global across devices: XLA inserts the collectives. The same code runs
  multi-process under ``jax.distributed`` (every process samples the same global batch from the
  same key and computes its shard).
* **optax** optimisers and schedules; the default (:func:`default_optimizer`) is AdamW with a
  warm-up and cosine decay, gradients clipped at norm 1.
* **Checkpoint and resume** with orbax: ``checkpoint_dir=`` saves the whole training state
  (parameters, optimiser state, step, key, history) every ``checkpoint_every`` steps, at the end,
  and when interrupted (``KeyboardInterrupt``); calling :func:`fit` again with the same arguments
  resumes from the latest checkpoint and ends with the same parameters as an uninterrupted run.
* **Divergence stops training**: a non-finite loss or gradient freezes the parameters at the last
  finite state and raises :class:`TrainingDiverged` naming the step.
* **Bad arguments fail before compilation**: unknown objectives, ``d`` larger than the batch, a
  batch larger than the data, an objective that needs a Gram (or pairs) from a context without one.
* **Importance sampling** (``importance=``): when the context's samples were drawn from a proposal
  ``q`` rather than the target ``P_X`` (for example a wider Gaussian, so that the tails where
  high-order singular functions carry their mass are sampled often), ``importance(x_batch)``
  returns ``p_X(x) / q(x)`` per row and the (``weighted``) objective uses weighted batch means.

Example:
    >>> import jax
    >>> from flax import nnx
    >>> import jaxcontext as jc
    >>> prob = jc.datasets.gaussian_noise(2000, 2, 0.6, key=jax.random.key(0))
    >>> enc = jc.models.MLP(2, 5, width=32, depth=2, rngs=nnx.Rngs(0))
    >>> res = jc.fit(enc, prob.context, objective="kise", steps=20, batch_size=256, key=0,
    ...              progress=False)
    >>> res.encoder(prob.x[:3]).shape, len(res.history["loss"])
    ((3, 5), 20)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from . import models as M
from . import objectives as O
from ._jit_maps import SOLVER_FRACTION, release_compiled_programs

__all__ = [
    "fit",
    "FitResult",
    "History",
    "TrainState",
    "Trainer",
    "TrainingDiverged",
    "default_optimizer",
    "make_trainer",
    "data_mesh",
]

DATA_AXIS = "data"


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient became NaN or Inf; parameters are frozen at the last finite step.

    Attributes:
        step: the step (0-based) whose loss or gradient was not finite.
        result: a :class:`FitResult` with the parameters before that step and the history so far.
    """

    def __init__(self, message: str, step: int, result: Any = None):
        super().__init__(message)
        self.step = step
        self.result = result


class TrainState(NamedTuple):
    """The whole training state (a pytree; replicated over the mesh).

    Attributes:
        params: ``{"phi": nnx.State, "psi": nnx.State | None}`` trainable parameters.
        rest: ``{"phi": ..., "psi": ...}`` other module state (RNG streams, batch statistics).
        opt_state: the optax state.
        step: () int32, the number of steps taken.
        bad_step: () int32, the first step whose loss or gradient was not finite (-1: none).
    """

    params: Any
    rest: Any
    opt_state: Any
    step: jax.Array
    bad_step: jax.Array


@dataclasses.dataclass
class History:
    """What :func:`fit` recorded.

    Attributes:
        step: ``(T,)`` step numbers (0-based).
        metrics: per-step values: ``"loss"`` and every entry of the objective's ``aux`` (scalars as
            ``(T,)``, vectors such as estimated singular values ``"s"`` as ``(T, d)``).
        compile_time: seconds spent tracing and compiling the training program (first call) and,
            when alignment is tracked, the measurement (compiled ahead, before its first use).
        train_time: seconds spent running steps (compile time excluded).
        info: run metadata (objective, batch size, devices, dtype, JAX version).
        evals: alignment with a reference during training (``fit(reference=..., eval_every=N)``):
            ``"step"`` (steps done when measured, 0 = before training), ``"r2_cca"``,
            ``"subspace_distance"``, ``"s_error"`` (max relative error of the objective's
            singular-value estimates against the reference's, NaN when the objective has none)
            and ``"time_s"`` (seconds each measurement took); empty without a reference.
        eval_time: seconds spent on those measurements in total (their compile time is in
            ``compile_time``).
    """

    step: np.ndarray
    metrics: dict[str, np.ndarray]
    compile_time: float = 0.0
    train_time: float = 0.0
    info: dict = dataclasses.field(default_factory=dict)
    evals: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    eval_time: float = 0.0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.step if name == "step" else self.metrics[name]

    def keys(self) -> list[str]:
        """Names of the recorded metrics."""
        return list(self.metrics)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return {
            "step": self.step.tolist(),
            "metrics": {k: np.asarray(v).tolist() for k, v in self.metrics.items()},
            "compile_time": self.compile_time,
            "train_time": self.train_time,
            "info": self.info,
            "evals": {k: np.asarray(v).tolist() for k, v in self.evals.items()},
            "eval_time": self.eval_time,
        }


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
        encoder: the trained ``Phi`` (an NNX module: ``encoder(x)`` maps ``(n, D)`` to ``(n, d)``).
        psi: the trained ``Psi`` on the context variable, or None (shared or no ``Psi``).
        history: a :class:`History`.
        state: the final :class:`TrainState` (to continue training with :func:`make_trainer`).
        objective: the :class:`~jaxcontext.objectives.Objective` that was minimised.
    """

    encoder: nnx.Module
    psi: nnx.Module | None
    history: History
    state: TrainState
    objective: Any


def default_optimizer(
    steps: int, *, learning_rate: float = 1e-3, weight_decay: float = 1e-5
) -> optax.GradientTransformation:
    """AdamW with a linear warm-up (5% of the steps, at most 200), cosine decay to 1% of the peak.

    Gradients are clipped at global norm 1. Chosen to work without tuning on the known-spectrum
    problems of :mod:`jaxcontext.datasets` (and the authors' AdamW with weight decay 1e-5).
    """
    steps = max(int(steps), 1)
    warmup = min(200, max(1, steps // 20))
    sched = optax.warmup_cosine_decay_schedule(
        0.0,
        learning_rate,
        warmup_steps=warmup,
        decay_steps=max(steps, warmup + 1),
        end_value=learning_rate * 0.01,
    )
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=weight_decay)
    )


def data_mesh(devices: Any = None) -> jax.sharding.Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: every device of every process)."""
    devs = jax.devices() if devices is None else list(devices)
    return jax.sharding.Mesh(np.asarray(devs), (DATA_AXIS,))


# --------------------------------------------------------------------------------------------------
# Batches from a context
# --------------------------------------------------------------------------------------------------
def _take(a: Any, i: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda v: jnp.take(v, i, axis=0), a)


def _inputs(ctx: Any, i: jax.Array) -> Any:
    if ctx.x is not None:
        return _take(ctx.x, i)
    if ctx.sample_index is not None:
        return ctx.sample_index[i]
    return i


def _values(ctx: Any, j: jax.Array) -> Any:
    return j if ctx.a_values is None else _take(ctx.a_values, j)


def _draw_a(ctx: Any, key: jax.Array, i: jax.Array, xb: Any) -> Any:
    if ctx.pair_sampler is not None:
        return ctx.pair_sampler(key, xb)
    return _values(ctx, ctx.rows.sample(key, i))


def _indices(ctx: Any, key: jax.Array, batch: int, full: bool) -> jax.Array:
    if full:
        return jnp.arange(batch, dtype=jnp.int32)
    return ctx._sample_x(key, batch)


def _sample(ctx: Any, data: str, key: jax.Array, batch: int, full: bool) -> dict:
    """One batch for an objective's ``data`` kind (traceable; ``batch`` static)."""
    ki, ka, kb = jax.random.split(key, 3)
    i = _indices(ctx, ki, batch, full)
    xb = _inputs(ctx, i)
    out: dict[str, Any] = {"x": xb}
    if data == "pairs":
        out["a"] = _draw_a(ctx, ka, i, xb)
    elif data == "views":
        out["a"] = _draw_a(ctx, ka, i, xb)
        out["a2"] = _draw_a(ctx, kb, i, xb)
    elif data == "gram":
        out["gram"] = ctx._gram(i, None)
    elif data == "labels":
        j = ctx.rows.sample(ka, i)
        out["labels"] = j
        out["p_a"] = jnp.take(ctx.p, j)
    else:  # pragma: no cover - objectives.get validates
        raise ValueError(f"unknown data kind {data!r}")
    return out


# --------------------------------------------------------------------------------------------------
# The trainer: pure functions of the state, compiled once
# --------------------------------------------------------------------------------------------------
def _finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(v))
        for v in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.asarray(v).dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The compiled pieces of a training run (built by :func:`make_trainer`).

    Attributes:
        objective: the :class:`~jaxcontext.objectives.Objective`.
        tx: the optax transformation.
        mesh: the device mesh (axis ``"data"``).
        batch_size: global batch size.
        full_batch: whether each step uses every sample once.
        graphdefs: NNX graph definitions of ``Phi`` and ``Psi`` (None where absent).
        chunk: the longest run of steps in one compiled call.
        importance: ``importance(x_batch) -> (b,)`` importance weights passed to the objective as
            ``Batch.weight``, or None.
    """

    objective: Any
    tx: Any
    mesh: Any
    batch_size: int
    full_batch: bool
    graphdefs: tuple
    chunk: int
    num_classes: int | None = None
    importance: Callable | None = None

    # -- sharding ----------------------------------------------------------------------------------
    def _batch_spec(self, a: jax.Array) -> NamedSharding:
        return NamedSharding(self.mesh, P(DATA_AXIS, *([None] * (a.ndim - 1))))

    def _constrain(self, tree: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda a: jax.lax.with_sharding_constraint(a, self._batch_spec(a)), tree
        )

    def replicate(self, tree: Any) -> Any:
        """Place a pytree replicated on every device of the mesh (works multi-process)."""
        rep = NamedSharding(self.mesh, P())

        def put(v):
            if isinstance(v, jax.Array) and jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
                data = np.asarray(jax.random.key_data(v))
                impl = jax.random.key_impl(v)
                arr = jax.make_array_from_callback(data.shape, rep, lambda idx: data[idx])
                return jax.random.wrap_key_data(arr, impl=impl)
            if isinstance(v, (jax.Array, np.ndarray, np.generic, int, float, bool)):
                a = np.asarray(v)
                return jax.make_array_from_callback(a.shape, rep, lambda idx: a[idx])
            return v

        return jax.tree_util.tree_map(put, tree)

    # -- the loss ----------------------------------------------------------------------------------
    def batch(self, ctx: Any, key: jax.Array) -> dict:
        """The raw batch of a step (sharded over the mesh's data axis)."""
        raw = _sample(ctx, self.objective.data, key, self.batch_size, self.full_batch)
        if self.importance is not None:
            raw["weight"] = jax.lax.stop_gradient(self.importance(raw["x"]))
        return self._constrain(raw)

    def loss(self, params: Any, rest: Any, ctx: Any, key: jax.Array):
        """``(loss, (aux, new_rest))`` on the batch drawn with ``key`` (pure; differentiable)."""
        raw = self.batch(ctx, key)
        gphi, gpsi = self.graphdefs
        phi_mod = nnx.merge(gphi, params["phi"], rest["phi"])
        psi_mod = None if gpsi is None else nnx.merge(gpsi, params["psi"], rest["psi"])
        other = psi_mod if psi_mod is not None else phi_mod
        phi = phi_mod(raw["x"])
        fields: dict[str, Any] = {"phi": phi}
        if "a" in raw and self.objective.psi != "none":
            fields["psi"] = other(raw["a"])
        if "a2" in raw and self.objective.psi != "none":
            fields["psi2"] = other(raw["a2"])
        if "gram" in raw:
            fields["gram"] = raw["gram"].astype(phi.dtype)
        if "labels" in raw:
            fields["a"] = raw["labels"]
            fields["p_a"] = raw["p_a"].astype(phi.dtype)
        if "weight" in raw:
            fields["weight"] = raw["weight"].astype(phi.dtype)
        loss, aux = self.objective(O.Batch(**fields))
        new_rest = {
            "phi": nnx.split(phi_mod, nnx.Param, ...)[2],
            "psi": None if psi_mod is None else nnx.split(psi_mod, nnx.Param, ...)[2],
        }
        return loss, (aux, new_rest)

    def grad(self, state: TrainState, ctx: Any, key: jax.Array):
        """``(loss, aux, grads)`` at ``state`` on the batch of step ``state.step`` under ``key``."""
        k = jax.random.fold_in(key, state.step)
        (loss, (aux, _)), grads = jax.value_and_grad(self.loss, has_aux=True)(
            state.params, state.rest, ctx, k
        )
        return loss, aux, grads

    def step(self, state: TrainState, ctx: Any, key: jax.Array):
        """One optimiser step (pure): ``(new_state, metrics)``; a non-finite step changes nothing.

        The batch is drawn with ``fold_in(key, state.step)``, so a run's steps do not depend on how
        they are grouped into compiled calls (this is what makes resuming exact).
        """
        k = jax.random.fold_in(key, state.step)
        (loss, (aux, rest)), grads = jax.value_and_grad(self.loss, has_aux=True)(
            state.params, state.rest, ctx, k
        )
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        alive = state.bad_step < 0
        ok = jnp.isfinite(loss) & _finite(grads)
        take = alive & ok

        def pick(new, old):
            return jax.tree_util.tree_map(lambda n, o: jnp.where(take, n, o), new, old)

        new = TrainState(
            params=pick(params, state.params),
            rest=pick(rest, state.rest),
            opt_state=pick(opt_state, state.opt_state),
            step=state.step + jnp.where(alive, 1, 0).astype(state.step.dtype),
            bad_step=jnp.where(alive & ~ok, state.step, state.bad_step).astype(
                state.bad_step.dtype
            ),
        )
        return new, {"loss": loss, **aux}

    def metric_shapes(self, state: TrainState, ctx: Any, key: jax.Array) -> dict:
        """Shapes and dtypes of the per-step metrics (traced, not run)."""
        return jax.eval_shape(self.step, state, ctx, key)[1]

    def _run(self, state: TrainState, ctx: Any, key: jax.Array, n: jax.Array):
        shapes = jax.eval_shape(self.step, state, ctx, key)[1]
        buf = {
            k: jnp.full((self.chunk,) + tuple(s.shape), jnp.nan, s.dtype)
            if jnp.issubdtype(s.dtype, jnp.inexact)
            else jnp.zeros((self.chunk,) + tuple(s.shape), s.dtype)
            for k, s in shapes.items()
        }

        def body(t, carry):
            st, b = carry
            st, met = self.step(st, ctx, key)
            b = {k: b[k].at[t].set(met[k].astype(b[k].dtype)) for k in b}
            return st, b

        return jax.lax.fori_loop(0, n, body, (state, buf))

    @property
    def run(self) -> Callable:
        """``run(state, ctx, key, n) -> (state, metrics)``: ``n <= chunk`` steps in one call.

        ``metrics`` holds ``chunk`` rows of which the first ``n`` are this call's steps. Compiled
        once per trainer (``n`` is dynamic); the state's buffers are donated.
        """
        fn = self.__dict__.get("_run_jit")
        if fn is None:
            fn = jax.jit(self._run, donate_argnums=(0,))
            object.__setattr__(self, "_run_jit", fn)
        return fn

    def init(self, encoder: nnx.Module, psi: nnx.Module | None) -> TrainState:
        """The initial :class:`TrainState` of ``encoder`` (and ``psi``), replicated on the mesh."""
        _, p_phi, r_phi = nnx.split(encoder, nnx.Param, ...)
        if psi is not None:
            _, p_psi, r_psi = nnx.split(psi, nnx.Param, ...)
        else:
            p_psi = r_psi = None
        params = {"phi": p_phi, "psi": p_psi}
        state = TrainState(
            params=params,
            rest={"phi": r_phi, "psi": r_psi},
            opt_state=self.tx.init(params),
            step=jnp.zeros((), jnp.int32),
            bad_step=jnp.full((), -1, jnp.int32),
        )
        return self.replicate(state)

    def modules(self, state: TrainState) -> tuple[nnx.Module, nnx.Module | None]:
        """The ``(Phi, Psi)`` modules of a state (on the host's default device)."""
        st = jax.device_get(state)
        gphi, gpsi = self.graphdefs
        phi = nnx.merge(gphi, st.params["phi"], st.rest["phi"])
        psi = None if gpsi is None else nnx.merge(gpsi, st.params["psi"], st.rest["psi"])
        return phi, psi


# --------------------------------------------------------------------------------------------------
# Validation and construction
# --------------------------------------------------------------------------------------------------
def _as_key(key: Any) -> jax.Array:
    if key is None:
        raise ValueError("key: a PRNG key (or an int seed) is required; training is random")
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    k = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key):
        if k.shape != ():
            raise ValueError(f"key: expected a single key, got shape {k.shape}")
        return k
    if k.dtype == jnp.uint32 and k.shape == (2,):
        return jax.random.wrap_key_data(k)
    raise ValueError(f"key: expected a jax.random.key, a raw uint32[2] key or an int, got {key!r}")


def _check_context(context: Any, data: str, name: str) -> None:
    from .contexts import Context

    if not isinstance(context, Context):
        raise TypeError(f"context: expected a jaxcontext Context, got {type(context).__name__}")
    if data in ("pairs", "views", "labels") and context.pair_sampler is None:
        why = None
        if context.rows is None:
            why = "it has no conditional"
        else:
            try:
                jax.eval_shape(
                    lambda c: c.rows.sample(jax.random.key(0), jnp.zeros((2,), jnp.int32)), context
                )
            except NotImplementedError as e:
                why = str(e)
        if why is not None:
            raise ValueError(
                f"objective {name!r} needs pairs (x, a) ~ P+, but the {context.name!r} context "
                f"cannot draw them ({why}); use a kernel objective such as 'kise'"
            )
    if data == "gram":
        if context.rows is None:
            raise ValueError(
                f"objective {name!r} needs the batch Gram of the dual kernel, but the "
                f"{context.name!r} context has none (a context given only by a sampler); use a "
                "pair objective such as 'svme'"
            )
        try:
            jax.eval_shape(lambda c: c._gram(jnp.zeros((2,), jnp.int32), None), context)
        except NotImplementedError as e:
            raise ValueError(
                f"objective {name!r} needs the batch Gram of the dual kernel, but the "
                f"{context.name!r} context cannot evaluate it ({e}); use a pair objective such as "
                "'svme'"
            ) from None
    if data == "labels" and (context.name != "labels" or context.p is None):
        raise ValueError(
            f"objective {name!r} needs a label context (contexts.labels), got {context.name!r}"
        )


def _check_importance(importance: Any, obj: Any, x_struct: Any, b: int) -> None:
    if not callable(importance):
        raise TypeError(
            f"importance: expected a function of a batch of inputs, got {type(importance).__name__}"
        )
    if not obj.weighted:
        raise ValueError(
            f"importance: objective {obj.name!r} does not accept importance weights; use one of "
            f"{sorted(n for n in O.NAMES if O.get(n).weighted)} (or a callable objective "
            "wrapped with objectives.get(fn, weighted=True))"
        )
    try:
        out = jax.eval_shape(importance, x_struct)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"importance: cannot be applied to the batch's inputs of shape "
            f"{getattr(x_struct, 'shape', '?')}: {e}"
        ) from e
    if getattr(out, "shape", None) != (b,) or not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(
            f"importance: must return ({b},) floating weights, one per row, got "
            f"{getattr(out, 'shape', out)} {getattr(out, 'dtype', '')}"
        )


def _out_struct(module: nnx.Module, x_struct: Any, what: str) -> jax.ShapeDtypeStruct:
    gd, st = nnx.split(module)
    try:
        out = jax.eval_shape(lambda s, x: nnx.merge(gd, s)(x), st, x_struct)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"{what}: cannot be applied to the context's batch of shape "
            f"{getattr(x_struct, 'shape', '?')} and dtype {getattr(x_struct, 'dtype', '?')}: {e}"
        ) from e
    if not hasattr(out, "shape") or len(out.shape) != 2:
        raise ValueError(f"{what}: expected (n, d) embeddings, got {getattr(out, 'shape', out)}")
    return out


def make_trainer(
    encoder: nnx.Module,
    context: Any,
    *,
    objective: Any = "svme",
    batch_size: int | None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 1000,
    psi: nnx.Module | None = None,
    mesh: jax.sharding.Mesh | None = None,
    log_every: int = 100,
    key: Any = 0,
    importance: Callable | None = None,
) -> tuple[Trainer, nnx.Module | None]:
    """Validate a run and build its :class:`Trainer` (nothing is compiled yet).

    Arguments as for :func:`fit`. Returns ``(trainer, psi)``: the ``Psi`` that will be trained (the
    given one, a new one of the encoder's architecture, an embedding table for integer context
    values, or None when the objective has no separate ``Psi``).
    """
    obj = O.get(objective)
    if not isinstance(encoder, nnx.Module):
        raise TypeError(f"encoder: expected a flax.nnx.Module, got {type(encoder).__name__}")
    _check_context(context, obj.data, obj.name)
    m = context.num_samples
    mesh = data_mesh() if mesh is None else mesh
    ndev = int(np.prod(mesh.devices.shape))
    full = batch_size is None
    if full:
        w = np.asarray(context.weights, np.float64)
        if np.ptp(w) > 1e-6 * w.max():
            raise ValueError(
                "batch_size=None (full batch) needs uniform sample weights; this context weights "
                "its samples (e.g. a graph's degrees): give a batch_size to sample x ~ P_X"
            )
        b = m
    else:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size: expected an integer or None, got {batch_size!r}")
        b = int(batch_size)
        if b < 2:
            raise ValueError(f"batch_size: must be at least 2, got {b}")
        if b > m:
            raise ValueError(
                f"batch_size: {b} is larger than the data ({m} samples); use batch_size <= {m} or "
                "batch_size=None for the full batch"
            )
    if b % ndev:
        raise ValueError(
            f"batch_size: {b} must be divisible by the number of devices of the mesh ({ndev})"
        )
    obj.check_batch_size(b)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    if isinstance(log_every, bool) or not isinstance(log_every, (int, np.integer)) or log_every < 1:
        raise ValueError(f"log_every: expected a positive integer, got {log_every!r}")
    tx = default_optimizer(int(steps)) if optimizer is None else optimizer
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(
            f"optimizer: expected an optax.GradientTransformation, got {type(tx).__name__}"
        )
    k = _as_key(key)
    raw = jax.eval_shape(lambda c, kk: _sample(c, obj.data, kk, b, full), context, k)
    if importance is not None:
        _check_importance(importance, obj, raw["x"], b)
    out = _out_struct(encoder, raw["x"], "encoder")
    d = out.shape[1]
    if d >= b:
        raise ValueError(
            f"batch_size: the encoder has d = {d} outputs and needs a batch larger than d to "
            f"estimate a {d} x {d} covariance; got batch_size={b}"
        )
    if obj.psi == "separate":
        a = raw["a"]
        if psi is None:
            if jnp.issubdtype(a.dtype, jnp.integer) and a.ndim == 1:
                psi = M.Embedding(
                    int(context.num_values),
                    d,
                    rngs=nnx.Rngs(jax.random.fold_in(k, 1)),
                    param_dtype=out.dtype,
                )
            elif a.shape[1:] == raw["x"].shape[1:]:
                psi = M.fresh_like(encoder, nnx.Rngs(jax.random.fold_in(k, 1)))
            else:
                raise ValueError(
                    f"psi: the context values have shape {a.shape[1:]} and dtype {a.dtype}, unlike "
                    f"the inputs {raw['x'].shape[1:]}; pass an encoder for them as psi="
                )
        pout = _out_struct(psi, a, "psi")
        if pout.shape[1] != d:
            raise ValueError(f"psi: outputs {pout.shape[1]} dimensions, the encoder {d}")
    elif psi is not None:
        raise ValueError(f"psi: objective {obj.name!r} has no separate Psi (its psi={obj.psi!r})")
    if obj.psi == "shared" and "a" in raw:
        _out_struct(encoder, raw["a"], "encoder (applied to the context values)")
    graphdefs = (
        nnx.split(encoder, nnx.Param, ...)[0],
        None if psi is None else nnx.split(psi, nnx.Param, ...)[0],
    )
    num_classes = int(context.num_values) if obj.data == "labels" else None
    opts = dict(obj.options)
    if num_classes is not None and obj.name in O.NAMES and opts.get("num_classes") is None:
        obj = O.get(obj.name, **dict(opts, num_classes=num_classes))
    trainer = Trainer(
        objective=obj,
        tx=tx,
        mesh=mesh,
        batch_size=b,
        full_batch=full,
        graphdefs=graphdefs,
        chunk=min(int(log_every), int(steps)),
        num_classes=num_classes,
        importance=importance,
    )
    # trace (not compile) one loss: shape errors inside the objective surface here, before XLA
    _, p_phi, r_phi = nnx.split(encoder, nnx.Param, ...)
    p_psi, r_psi = (None, None) if psi is None else nnx.split(psi, nnx.Param, ...)[1:]
    jax.eval_shape(
        trainer.loss, {"phi": p_phi, "psi": p_psi}, {"phi": r_phi, "psi": r_psi}, context, k
    )
    return trainer, psi


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------
def _to_host(tree: Any) -> tuple[list[np.ndarray], Any]:
    def leaf(v):
        if isinstance(v, jax.Array) and jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
            v = jax.random.key_data(v)
        if isinstance(v, jax.Array) and not v.is_fully_addressable:
            v = v.addressable_data(0)
        return np.asarray(v)

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return [leaf(v) for v in leaves], treedef


def _from_host(template: Any, arrays: list[np.ndarray]) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(leaves) != len(arrays):
        raise ValueError(
            f"checkpoint: holds {len(arrays)} arrays, this run's state has {len(leaves)}; it was "
            "written by a different encoder, objective or optimizer"
        )
    out = []
    for i, (t, a) in enumerate(zip(leaves, arrays, strict=True)):
        if isinstance(t, jax.Array) and jax.dtypes.issubdtype(t.dtype, jax.dtypes.prng_key):
            a = jax.random.wrap_key_data(jnp.asarray(a), impl=jax.random.key_impl(t))
            out.append(a)
            continue
        if tuple(np.shape(t)) != tuple(np.shape(a)):
            raise ValueError(
                f"checkpoint: array {i} has shape {np.shape(a)}, this run expects {np.shape(t)}; "
                "it was written by a different encoder, objective or optimizer"
            )
        out.append(np.asarray(a, dtype=np.asarray(t).dtype if hasattr(t, "dtype") else None))
    return jax.tree_util.tree_unflatten(treedef, out)


class _Checkpoints:
    """Orbax-managed checkpoints of a run: the state's leaves, the history and the run signature."""

    def __init__(self, directory: str, signature: dict, keep: int = 2):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.dir = os.path.abspath(os.fspath(directory))
        self.signature = signature
        self.mgr = ocp.CheckpointManager(
            self.dir,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
        )

    def latest(self) -> int | None:
        return self.mgr.latest_step()

    def save(self, step: int, state: TrainState, history: dict) -> None:
        leaves, _ = _to_host(state)
        payload = {
            "state": {f"{i:05d}": a for i, a in enumerate(leaves)},
            "history": {k: np.asarray(v) for k, v in history.items()},
        }
        meta = dict(self.signature, step=int(step))
        self.mgr.save(
            int(step),
            args=self.ocp.args.Composite(
                payload=self.ocp.args.StandardSave(payload), meta=self.ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self.mgr.wait_until_finished()

    def restore(self, step: int, template: TrainState) -> tuple[TrainState, dict]:
        got = self.mgr.restore(
            int(step),
            args=self.ocp.args.Composite(
                payload=self.ocp.args.StandardRestore(None), meta=self.ocp.args.JsonRestore()
            ),
        )
        meta = dict(got["meta"])
        for k, v in self.signature.items():
            if k in meta and meta[k] != v:
                raise ValueError(
                    f"checkpoint_dir: the checkpoint at step {step} in {self.dir} was written by a "
                    f"different run ({k}={meta[k]!r}, this run {v!r}); use another directory or "
                    "resume=False"
                )
        st = got["payload"]["state"]
        arrays = [np.asarray(st[k]) for k in sorted(st)]
        hist = {k: np.asarray(v) for k, v in got["payload"]["history"].items()}
        return _from_host(template, arrays), hist

    def close(self) -> None:
        self.mgr.close()


# --------------------------------------------------------------------------------------------------
# Alignment with a reference during training
# --------------------------------------------------------------------------------------------------
EVAL_POINTS = 4096  # default number of context samples the alignment is measured on


def _reference_values(reference: Any, eval_x: Any, context: Any, key: jax.Array):
    """``(x, ref, s_ref)``: inputs, reference function values there, reference singular values."""
    from .linalg import Spectrum
    from .spectrum import Contexture

    s_ref = None
    if isinstance(reference, Contexture):
        s_ref = np.asarray(reference.s, np.float64)
        if eval_x is None:
            x_all, ref_all = context.x, np.asarray(reference.mu)
        else:
            return eval_x, np.asarray(reference.evaluate(eval_x)), s_ref
    elif isinstance(reference, Spectrum):
        if eval_x is not None:
            raise ValueError(
                "eval_x: a Spectrum holds values at the context's samples only; pass the exact "
                "Contexture (jaxcontext.contexture) to measure alignment at new points"
            )
        w = np.sqrt(np.asarray(context.weights, np.float64))
        x_all, ref_all = context.x, np.asarray(reference.U) / w[:, None]
    else:
        ref = np.asarray(reference)
        if ref.ndim != 2:
            raise ValueError(
                "reference: expected a Contexture, a Spectrum, or an (n, k) array of reference "
                f"function values at eval_x; got {type(reference).__name__} of shape {ref.shape}"
            )
        if eval_x is None:
            raise ValueError("eval_x: an array reference needs the points it was evaluated at")
        return eval_x, ref, None
    if x_all is None:
        x_all = jnp.arange(context.num_samples, dtype=jnp.int32)  # graph contexts: node ids
    m = ref_all.shape[0]
    if m > EVAL_POINTS:  # a fixed random subset of the samples keeps each measurement cheap
        idx = np.sort(np.asarray(jax.random.choice(key, m, (EVAL_POINTS,), replace=False)))
        return _take(x_all, jnp.asarray(idx)), ref_all[idx], s_ref
    return x_all, ref_all, s_ref


class _Monitor:
    """Measures a state's encoder against reference values in one compiled function."""

    def __init__(self, trainer: Trainer, reference: Any, eval_x: Any, context: Any, key: Any):
        x, ref, self.s_ref = _reference_values(
            reference, eval_x, context, jax.random.fold_in(key, 2)
        )
        xa = x if isinstance(x, jax.Array) else jnp.asarray(np.asarray(x))
        if xa.shape[0] != ref.shape[0]:
            raise ValueError(
                f"reference: {ref.shape[0]} rows of reference values for {xa.shape[0]} "
                "eval_x points"
            )
        self.x, self.ref = trainer.replicate(xa), trainer.replicate(jnp.asarray(ref))
        gphi = trainer.graphdefs[0]

        def measure(params, rest, x, ref):
            from .evaluation import cca, subspace_distance

            phi = nnx.merge(gphi, params, rest)(x)
            return cca(phi, ref).r2, subspace_distance(phi, ref)

        self.fn = jax.jit(measure)
        self.compiled = None  # compiled ahead at the first measurement, timed apart
        self.compile_time = 0.0
        self.rows: dict[str, list] = {
            "step": [],
            "r2_cca": [],
            "subspace_distance": [],
            "s_error": [],
            "time_s": [],
        }
        self.total = 0.0

    def __call__(self, done: int, state: TrainState, s_hat: Any) -> None:
        args = (state.params["phi"], state.rest["phi"], self.x, self.ref)
        if self.compiled is None:  # trace and compile once, counted as compile time
            t0 = time.perf_counter()
            self.compiled = self.fn.lower(*args).compile()
            self.compile_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        r2, dist = self.compiled(*args)
        r2, dist = float(jax.device_get(r2)), float(jax.device_get(dist))
        err = float("nan")
        if s_hat is not None and self.s_ref is not None:
            sh = np.sort(np.abs(np.asarray(s_hat, np.float64)))[::-1]
            k = min(sh.size, self.s_ref.size)
            err = float(np.max(np.abs(sh[:k] - self.s_ref[:k]) / self.s_ref[:k]))
        dt = time.perf_counter() - t0
        self.total += dt
        for name, v in (
            ("step", done),
            ("r2_cca", r2),
            ("subspace_distance", dist),
            ("s_error", err),
            ("time_s", dt),
        ):
            self.rows[name].append(v)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.rows.items()}

    def restore(self, saved: dict) -> None:
        for k in self.rows:
            v = saved.pop(f"eval/{k}", None)
            if v is not None:
                self.rows[k] = list(np.asarray(v).tolist())


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------
def _progress(total: int, initial: int, enabled: bool | None):
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else (not enabled)
    return tqdm(
        total=total, initial=initial, disable=disable, unit="step", dynamic_ncols=True, desc="fit"
    )


def fit(
    encoder: nnx.Module,
    context: Any,
    *,
    objective: Any = "svme",
    steps: int,
    batch_size: int | None,
    key: Any,
    optimizer: optax.GradientTransformation | None = None,
    psi: nnx.Module | None = None,
    mesh: jax.sharding.Mesh | None = None,
    log_every: int = 100,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool | None = None,
    callback: Callable[[int, dict], Any] | None = None,
    reference: Any = None,
    eval_x: Any = None,
    eval_every: int | None = None,
    importance: Callable | None = None,
) -> FitResult:
    r"""Train ``encoder`` (and ``Psi``) on batches drawn from ``context`` to minimise ``objective``.

    Args:
        encoder: a Flax NNX module mapping a batch of the context's inputs to ``(n, d)``
            (``jaxcontext.models``; for graph contexts, whose inputs are node ids, e.g.
            :class:`~jaxcontext.models.Embedding`). Not modified: the trained copy is returned.
        context: a :class:`~jaxcontext.contexts.Context`.
        objective: a name of :data:`jaxcontext.objectives.NAMES` (``"svme"``, ``"kise"``,
            ``"nested_sequential"``, ...), an :class:`~jaxcontext.objectives.Objective`
            (``objectives.get(name, **options)``), or a callable ``fn(batch) -> (loss, aux)`` (a
            pair objective with a separate ``Psi``).
        steps: optimiser steps in total (a resumed run continues up to this number).
        batch_size: samples per step, drawn ``x_i ~ P_X`` with replacement; None for the full
            batch (every sample once per step; uniform weights only). Divisible by the number of
            devices; larger than the encoder's ``d``; at most the number of samples.
        key: PRNG key or int seed. The same key gives the same run (batches use
            ``fold_in(key, step)``; a new ``Psi`` is initialised from ``fold_in(key, 1)``).
        optimizer: an optax transformation (default :func:`default_optimizer` for ``steps``).
        psi: the encoder of the context variable for objectives with a separate ``Psi`` (default:
            a new module of the encoder's architecture when the context values look like the
            inputs, an :class:`~jaxcontext.models.Embedding` when they are integer ids).
        mesh: device mesh with axis ``"data"`` (default: every device, :func:`data_mesh`).
        log_every: steps per compiled call (also the progress-bar and callback interval).
        checkpoint_dir: directory for orbax checkpoints (None: no checkpoints).
        checkpoint_every: steps between checkpoints (default: ``max(log_every, steps // 10)``
            rounded up to a multiple of ``log_every``).
        resume: continue from the latest checkpoint in ``checkpoint_dir`` when there is one.
        progress: show a progress bar (default: when stderr is a terminal).
        callback: ``callback(step, metrics)`` after each compiled call, with the latest step's
            metrics; a true return value stops training (the state is checkpointed).
        reference: measure alignment with the exact eigenspace while training: a
            :class:`~jaxcontext.spectrum.Contexture` (values at ``eval_x`` by its out-of-sample
            extension, or at up to 4,096 of the context's samples), a
            :class:`~jaxcontext.linalg.Spectrum` (at the samples), or an ``(n, k)`` array of
            reference function values at ``eval_x`` (e.g. known singular functions). Recorded in
            ``history.evals`` every ``eval_every`` steps and before the first: R2_CCA, subspace
            distance, and the singular-value error of objectives that estimate them. One compiled
            measurement; its cost is ``history.eval_time``.
        eval_x: held-out inputs for the reference (None: the context's own samples).
        eval_every: steps between measurements (default ``log_every``); compiled calls are cut
            to ``gcd(log_every, eval_every)`` steps so every measurement falls on its step.
        importance: importance sampling: a traceable ``importance(x_batch) -> (b,)`` giving
            ``p_X(x) / q(x)`` (any constant factor) when the context's samples were drawn from a
            proposal ``q`` instead of the target ``P_X``; the objective then uses self-normalised
            weighted batch means, so it (and its ``s``) targets ``P_X``. Only for objectives that
            accept weights (``Objective.weighted``: ``"lowrank"``, ``"nested_joint"``,
            ``"nested_sequential"``). Useful when ``P_X`` rarely samples where the wanted functions
            live: ``He_5`` under ``N(0, 1)`` has 30% of its squared norm beyond ``|x| = 4``; with
            ``x`` drawn from ``N(0, 4)`` and ``importance = lambda x: jnp.exp(-3 / 8 *
            jnp.sum(x**2, axis=1))`` the nested objective's fifth function reaches an
            absolute correlation of 0.9986 with ``He_5`` where plain sampling stalled at 0.97
            (``scripts/learned_path_acceptance.py``).

    Returns:
        A :class:`FitResult` with ``.encoder``, ``.psi``, ``.history`` and ``.state``.

    Raises:
        ValueError, TypeError: bad arguments (before anything is compiled).
        TrainingDiverged: the loss or a gradient became NaN or Inf (the message names the step).
    """
    trainer, psi_mod = make_trainer(
        encoder,
        context,
        objective=objective,
        batch_size=batch_size,
        optimizer=optimizer,
        steps=steps,
        psi=psi,
        mesh=mesh,
        log_every=log_every,
        key=key,
        importance=importance,
    )
    k = _as_key(key)
    steps = int(steps)
    monitor = None
    if reference is not None:
        every_eval = log_every if eval_every is None else eval_every
        if (
            isinstance(every_eval, bool)
            or not isinstance(every_eval, (int, np.integer))
            or (every_eval < 1)
        ):
            raise ValueError(f"eval_every: expected a positive integer, got {eval_every!r}")
        trainer = dataclasses.replace(trainer, chunk=math.gcd(trainer.chunk, int(every_eval)))
        monitor = _Monitor(trainer, reference, eval_x, context, k)
    elif eval_every is not None or eval_x is not None:
        raise ValueError("eval_every / eval_x: pass the reference to measure alignment against")
    # a trainer program holds hundreds of memory mappings on the CPU: free old programs near
    # the process's limit (see jaxcontext._jit_maps)
    release_compiled_programs(SOLVER_FRACTION)
    ctx = trainer.replicate(context)
    rkey = trainer.replicate(k)
    state = trainer.init(encoder, psi_mod)
    names = None
    history: dict[str, list] = {}
    hist_steps: list[np.ndarray] = []
    ckpt = None
    info = {
        "objective": trainer.objective.name,
        "batch_size": trainer.batch_size,
        "devices": int(np.prod(trainer.mesh.devices.shape)),
        "processes": jax.process_count(),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "dtype": str(jax.tree_util.tree_leaves(state.params["phi"])[0].dtype),
        "x64": bool(jax.config.jax_enable_x64),
        "steps": steps,
    }
    if checkpoint_dir is not None:
        every = checkpoint_every or max(log_every, steps // 10)
        every = int(math.ceil(every / trainer.chunk) * trainer.chunk)
        sig = {
            "objective": trainer.objective.name,
            "batch_size": trainer.batch_size,
            "steps": steps,
        }
        ckpt = _Checkpoints(os.fspath(checkpoint_dir), sig)
        last = ckpt.latest() if resume else None
        if last is not None:
            state, saved = ckpt.restore(last, jax.device_get(state))
            state = trainer.replicate(state)
            if monitor is not None:
                monitor.restore(saved)
            saved = {kk: v for kk, v in saved.items() if not kk.startswith("eval/")}
            hist_steps = [saved.pop("step")] if "step" in saved else []
            history = {kk: [v] for kk, v in saved.items()}
    else:
        every = None
    start = int(jax.device_get(state.step))
    bar = _progress(steps, start, progress)
    compile_time = train_time = 0.0
    since_ckpt = 0

    def snapshot() -> dict:
        out = {kk: np.concatenate(v) for kk, v in history.items()}
        out["step"] = np.concatenate(hist_steps) if hist_steps else np.zeros((0,), np.int64)
        if monitor is not None:
            out.update({f"eval/{kk}": v for kk, v in monitor.arrays().items()})
        return out

    def result(st: TrainState) -> FitResult:
        phi_m, psi_m = trainer.modules(st)
        snap = {kk: v for kk, v in snapshot().items() if not kk.startswith("eval/")}
        hs = snap.pop("step")
        hist = History(
            step=hs,
            metrics=snap,
            compile_time=compile_time + (0.0 if monitor is None else monitor.compile_time),
            train_time=train_time,
            info=info,
            evals={} if monitor is None else monitor.arrays(),
            eval_time=0.0 if monitor is None else monitor.total,
        )
        return FitResult(
            encoder=phi_m, psi=psi_m, history=hist, state=st, objective=trainer.objective
        )

    try:
        done = start
        first = True
        if monitor is not None and not monitor.rows["step"]:
            monitor(done, state, None)
        while done < steps:
            n = min(trainer.chunk, steps - done)
            t0 = time.perf_counter()
            if first:
                lowered = trainer.run.lower(state, ctx, rkey, jnp.int32(n))
                compiled = lowered.compile()
                compile_time = time.perf_counter() - t0
                t0 = time.perf_counter()
                first = False
            state, met = compiled(state, ctx, rkey, jnp.asarray(n, jnp.int32))
            met = jax.device_get(met)
            bad = int(jax.device_get(state.bad_step))
            train_time += time.perf_counter() - t0
            keep = n if bad < 0 else bad - done + 1
            if names is None:
                names = list(met)
            for kk in names:
                history.setdefault(kk, []).append(np.asarray(met[kk][:keep]))
            hist_steps.append(np.arange(done, done + keep))
            bar.update(keep)
            if bar.disable is False:
                bar.set_postfix(loss=f"{float(met['loss'][keep - 1]):.4g}")
            if bad >= 0:
                raise TrainingDiverged(
                    f"fit: the loss or a gradient became NaN or Inf at step {bad} "
                    f"(loss {float(met['loss'][bad - done]):.4g}); parameters are kept from "
                    f"before that step. Try a smaller learning rate, a larger batch, or another "
                    "objective or constraint.",
                    bad,
                    None,
                )
            done += n
            since_ckpt += n
            if monitor is not None and (done % (eval_every or log_every) == 0 or done >= steps):
                monitor(done, state, np.asarray(met["s"][:n]).mean(axis=0) if "s" in met else None)
            stop = False
            if callback is not None:
                stop = bool(callback(done, {kk: np.asarray(met[kk][n - 1]) for kk in names}))
            if ckpt is not None and (since_ckpt >= every or done >= steps or stop):
                ckpt.save(done, state, snapshot())
                since_ckpt = 0
            if stop:
                break
    except TrainingDiverged as e:
        bar.close()
        e.result = result(state)
        if ckpt is not None:
            ckpt.close()
        raise
    except KeyboardInterrupt:
        bar.close()
        if ckpt is not None:
            # an interrupt inside a compiled call leaves the donated state unusable: keep the
            # last checkpoint then; between calls the state is whole and is saved
            leaves = jax.tree_util.tree_leaves(state)
            if not any(getattr(v, "is_deleted", lambda: False)() for v in leaves):
                done_now = int(jax.device_get(state.step))
                if done_now > (ckpt.latest() or -1):
                    ckpt.save(done_now, state, snapshot())
            ckpt.close()
        raise
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return result(state)


def _json_default(o: Any) -> Any:  # pragma: no cover - used by callers saving histories
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def save_history(history: History, path: str | os.PathLike) -> None:
    """Write a :class:`History` as JSON."""
    with open(path, "w") as f:
        json.dump(history.to_dict(), f, default=_json_default)
