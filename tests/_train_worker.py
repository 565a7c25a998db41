"""Training step on a device mesh, for tests/test_training_parallel.py.

Run either inside one process with forced CPU devices (``python _train_worker.py OUT``), or as
one of the processes of a ``jax.distributed`` job (tests/_subproc.run_processes sets the coordinator
environment). For each objective it builds the trainer on the mesh of every device, records the loss
and gradients of one step's batch, then three SGD steps through
``jax.jit(chex.assert_max_traces(step, n=1))``, and writes everything (replicated values as
numpy) to ``OUT.<process>.npz``.
"""

import os
import sys

import jax

if "JAXCONTEXT_COORDINATOR" in os.environ:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=os.environ["JAXCONTEXT_COORDINATOR"],
        num_processes=int(os.environ["JAXCONTEXT_NUM_PROCESSES"]),
        process_id=int(os.environ["JAXCONTEXT_PROCESS_ID"]),
    )

import chex  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxcontext import datasets, models, training  # noqa: E402

OBJECTIVES = ("svme", "kise", "nested_sequential")
BATCH = 64


def host(a):
    """A replicated (possibly multi-process) array as numpy."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        a = a.addressable_data(0)
    return np.asarray(a)


def problem():
    return datasets.gaussian_noise(512, 2, 0.6, key=jax.random.key(0))


def run(devices, out=None):
    """Loss, gradients and 3-step parameters of each objective on a mesh of ``devices``."""
    prob = problem()
    out = {} if out is None else out
    mesh = training.data_mesh(devices)
    for obj in OBJECTIVES:
        enc = models.MLP(2, 4, width=16, depth=2, rngs=nnx.Rngs(0))
        # plain SGD for the 3-step comparison: Adam's g / sqrt(v) turns rounding in a gradient
        # entry near zero into a full-size step of either sign
        tr, psi = training.make_trainer(
            enc,
            prob.context,
            objective=obj,
            batch_size=BATCH,
            steps=10,
            mesh=mesh,
            key=0,
            optimizer=optax.sgd(0.05),
        )
        st = tr.init(enc, psi)
        ctx = tr.replicate(prob.context)
        key = tr.replicate(jax.random.key(3))
        loss, _, grads = jax.jit(tr.grad)(st, ctx, key)
        out[f"{obj}/loss"] = host(loss)
        for i, g in enumerate(jax.tree_util.tree_leaves(grads)):
            out[f"{obj}/grad/{i}"] = host(g)
        x = jax.jit(tr.batch)(ctx, key)["x"]
        out[f"{obj}/batch_devices"] = np.array(len(x.sharding.device_set))
        out[f"{obj}/batch_local_rows"] = np.array(
            sum(s.data.shape[0] for s in x.addressable_shards)
        )
        chex.clear_trace_counter()
        step = jax.jit(chex.assert_max_traces(tr.step, n=1))
        for _ in range(3):
            st, met = step(st, ctx, key)
        out[f"{obj}/losses3"] = host(met["loss"])
        for i, p in enumerate(jax.tree_util.tree_leaves(st.params)):
            out[f"{obj}/param/{i}"] = host(p)
    return out


def main(prefix):
    out = run(jax.devices())
    out["num_devices"] = np.array(jax.device_count())
    np.savez(f"{prefix}.{jax.process_index()}.npz", **out)
    if "JAXCONTEXT_COORDINATOR" in os.environ:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jaxcontext-train-test-done")
        jax.distributed.shutdown()
        print(f"process {jax.process_index()} done", flush=True)
        sys.stdout.flush()
        os._exit(0)  # see tests/_dist_worker.py: gloo teardown can hang under load


if __name__ == "__main__":
    main(sys.argv[1])
