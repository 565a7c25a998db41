r"""The ``training`` suite: the cost of a training step of each objective against a plain MSE step.

Every case times ``K`` optimiser steps of :func:`jaxcontext.fit`'s compiled program (batches drawn
inside it, parameters updated, history recorded) on the Gaussian-noise problem with ``d = 5``
outputs, for one objective and one encoder size, against the baseline (``*``): the same encoders'
forward and backward passes on the same batch with a plain mean-squared-error loss, in the same
compiled loop with the same optimiser. ``speedup < 1`` is the objective's overhead: KISE pays for
its batch Gram, SVME and the nested objective for their centring, whitening and half-batch moments.

==========================  ==================================  ===================================
case                        jaxcontext step                     baseline (``*``)
==========================  ==================================  ===================================
``svme/...``                SVME, separate ``Psi`` (whitened)   ``mean((Phi(x) - Psi(a))^2)``
``kise/...``                KISE with the Mehler dual kernel     ``mean(Phi(x)^2)`` (no Gram)
``nested/...``              nested sequential low-rank (pairs)  ``mean((Phi(x) - Psi(a))^2)``
==========================  ==================================  ===================================

Each runs on one device and, when more are visible, data-parallel on all of them (``devN`` in the
case name; on a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before the run forces 4
host devices, which tests the sharded path rather than speed). Steps per second are ``K / time``
and samples per second ``K * batch / time`` (``params`` records ``K`` and the batch). Correctness
before timing: the first step's loss inside the compiled loop must equal the objective evaluated
in float64 on the same embeddings of the same batch.

Example:
    >>> from jaxcontext.bench import training
    >>> [c.name for c in training.cases("tiny")][:2]
    ['svme/mlp-w32-d2/b64/dev1', 'kise/mlp-w32-d2/b64/dev1']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._harness import Case, Impl

SUITE = "training"

# (width, depth, batch, steps per timed call, samples in the problem)
SIZES: dict[str, list[tuple[int, int, int, int, int]]] = {
    "tiny": [(32, 2, 64, 5, 1000)],
    "quick": [(256, 3, 512, 20, 20_000)],
    "full": [(256, 3, 512, 50, 100_000), (1024, 4, 4096, 20, 100_000)],
}
OBJECTIVES = ("svme", "kise", "nested")
D = 5
RHO = 0.6


def _objective(kind: str):
    from .. import objectives as O

    return {"svme": O.get("svme"), "kise": O.get("kise"), "nested": O.get("nested_sequential")}[
        kind
    ]


def _baseline(kind: str):
    """The plain MSE step of the same encoders (and batch) as ``kind``."""
    import jax.numpy as jnp

    from .. import objectives as O

    if kind == "kise":

        def mse_one(batch):
            loss = jnp.mean(batch.phi**2)
            return loss, {"mse": loss}

        return O.get(mse_one, data="pairs", psi="none")

    def mse_two(batch):
        loss = jnp.mean((batch.phi - batch.psi) ** 2)
        return loss, {"mse": loss}

    return O.get(mse_two, data="pairs", psi="separate")


def _build(width: int, depth: int, batch: int, m: int, dtype: Any, seed: int):
    import jax

    from .. import contexts, datasets, kernels

    def build():
        with jax.enable_x64(np.dtype(dtype) == np.float64):
            prob = datasets.gaussian_noise(m, 2, RHO, key=jax.random.key(seed))
            x = np.asarray(prob.x, dtype)
            ctx = contexts.from_kernel(x, kernels.Mehler(rho=RHO))
            import dataclasses

            ctx = dataclasses.replace(ctx, pair_sampler=prob.info["pair_sampler"])
        return {
            "ctx": ctx,
            "width": width,
            "depth": depth,
            "batch": batch,
            "dtype": dtype,
            "seed": seed,
        }

    return build


def _trainer(data: dict, objective: Any, devices: Any):
    import jax
    import optax
    from flax import nnx

    from .. import models, training

    with jax.enable_x64(np.dtype(data["dtype"]) == np.float64):
        enc = models.MLP(
            2,
            D,
            width=data["width"],
            depth=data["depth"],
            rngs=nnx.Rngs(data["seed"]),
            param_dtype=data["dtype"],
        )
        tr, psi = training.make_trainer(
            enc,
            data["ctx"],
            objective=objective,
            batch_size=data["batch"],
            optimizer=optax.adam(1e-3),
            steps=1000,
            mesh=training.data_mesh(devices),
            key=data["seed"],
        )
        state = tr.init(enc, psi)
        ctx = tr.replicate(data["ctx"])
        key = tr.replicate(jax.random.key(data["seed"] + 1))
    return tr, state, ctx, key


def _impl(name: str, objective_fn, devices: Any, steps: int, baseline: bool) -> Impl:
    trainers: dict = {}

    def prepare(data):
        tr, state, ctx, key = _trainer(data, objective_fn(), devices)
        trainers["tr"] = tr
        return state, ctx, key

    def fn(state, ctx, key):
        return trainers["tr"]._run(state, ctx, key, steps)

    def details(out, data):
        return {
            "steps_per_call": steps,
            "batch": data["batch"],
            "samples_per_call": steps * data["batch"],
            "devices": len(devices),
            "first_loss": float(np.asarray(out[1]["loss"])[0]),
        }

    return Impl(
        name,
        prepare=prepare,
        fn=fn,
        jax=True,
        baseline=baseline,
        probe_memory=False,
        details=details,
    )


def _first_loss_reference(kind: str, devices: Any):
    """Float64 loss of the first step: the objective on the first batch's embeddings, in float64."""

    def reference(data):
        import jax

        tr, state, ctx, key = _trainer(data, _objective(kind), devices[:1])
        k0 = jax.random.fold_in(key, state.step)
        raw = jax.device_get(tr.batch(ctx, k0))
        phi_m, psi_m = tr.modules(state)
        other = psi_m if psi_m is not None else phi_m
        fields = {"phi": np.asarray(phi_m(raw["x"]), np.float64)}
        if kind != "kise":
            fields["psi"] = np.asarray(other(raw["a"]), np.float64)
        else:
            fields["gram"] = np.asarray(raw["gram"], np.float64)
        from .. import objectives as O

        phi = fields["phi"]
        mse = np.mean(phi**2) if kind == "kise" else np.mean((phi - fields["psi"]) ** 2)
        with jax.enable_x64(True):
            batch = O.Batch(**{k: jax.numpy.asarray(v) for k, v in fields.items()})
            loss, _ = _objective(kind)(batch)
            return {"objective": float(loss), "mse": float(mse)}

    return reference


def _compare(out: Any, ref: dict, data: Any) -> float:
    """Relative error of the first step's loss (the baseline is told apart by its "mse" aux)."""
    want = ref["mse"] if "mse" in out[1] else ref["objective"]
    got = float(np.asarray(out[1]["loss"])[0])
    return abs(got - want) / max(abs(want), 1e-12)


def cases(size: str, *, dtype: Any = np.float32, seed: int = 0) -> list[Case]:
    """The suite's cases at ``size`` (``tiny``, ``quick`` or ``full``)."""
    import jax

    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    devs = jax.devices()
    meshes = [devs[:1]] + ([devs] if len(devs) > 1 else [])
    out = []
    for width, depth, batch, steps, m in SIZES[size]:
        for devices in meshes:
            if batch % len(devices):
                continue
            for kind in OBJECTIVES:
                name = f"{kind}/mlp-w{width}-d{depth}/b{batch}/dev{len(devices)}"
                impls = (
                    _impl(
                        "jaxcontext " + _objective(kind).name,
                        lambda kind=kind: _objective(kind),
                        devices,
                        steps,
                        False,
                    ),
                    _impl(
                        "MSE step, same encoders",
                        lambda kind=kind: _baseline(kind),
                        devices,
                        steps,
                        True,
                    ),
                )
                out.append(
                    Case(
                        suite=SUITE,
                        name=name,
                        params={
                            "objective": kind,
                            "width": width,
                            "depth": depth,
                            "batch": batch,
                            "steps_per_call": steps,
                            "devices": len(devices),
                            "m": m,
                            "d": D,
                        },
                        build=_build(width, depth, batch, m, dtype, seed),
                        reference=_first_loss_reference(kind, devices),
                        impls=impls,
                        tol=1e-4 if np.dtype(dtype) == np.float32 else 1e-10,
                        compare=lambda out, ref, data: _compare(out, ref, data),
                    )
                )
    return out
