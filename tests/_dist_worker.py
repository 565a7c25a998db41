"""One process of the 2-process jax.distributed test (tests/test_distributed.py).

Usage: ``python tests/_dist_worker.py IN.npz OUT_PREFIX``, with the environment set by
``tests/_subproc.run_processes`` (coordinator address, process count and id, forced CPU devices).
Every process reads the same host data, builds the same operators, shards them by rows over the
global mesh (all devices of all processes), runs the products, gathers the results and writes
them to ``OUT_PREFIX.<process id>.npz``.
"""

import os
import sys
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
    coordinator_address=os.environ["JAXCONTEXT_COORDINATOR"],
    num_processes=int(os.environ["JAXCONTEXT_NUM_PROCESSES"]),
    process_id=int(os.environ["JAXCONTEXT_PROCESS_ID"]),
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jax.experimental import multihost_utils  # noqa: E402
from test_distributed import CASES  # noqa: E402
from test_sharding import make_cases  # noqa: E402

from _svds_problems import SVDS_D, SVDS_EXACT, problems  # noqa: E402

from jaxcontext import operators as ops  # noqa: E402
from jaxcontext._sharding import shard_block, shard_rows  # noqa: E402
from jaxcontext.linalg import svds  # noqa: E402


def gather(a):
    """The global value of a (possibly multi-process) array, as numpy, on every process."""
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def main(in_path, out_prefix):
    pid = jax.process_index()
    assert jax.process_count() == int(os.environ["JAXCONTEXT_NUM_PROCESSES"])
    data = dict(np.load(in_path))
    out = {
        "num_devices": np.array(len(jax.devices())),
        "num_local_devices": np.array(len(jax.local_devices())),
    }
    both = jax.jit(lambda A, X, Y: (A.matmat(X), A.rmatmat(Y)))
    for name, op, _ in make_cases(data):
        if name not in CASES:
            continue
        A = shard_rows(op)
        X, Y = data[f"X/{name}"], data[f"Y/{name}"]
        mm, rm = both(A, shard_block(X), shard_block(Y))
        out[f"{name}/mm"], out[f"{name}/rm"] = gather(mm), gather(rm)
        out[f"{name}/mm_eager"], out[f"{name}/rm_eager"] = gather(A.matmat(X)), gather(A.rmatmat(Y))
        out[f"{name}/mm_fully_addressable"] = np.array(mm.is_fully_addressable)
        out[f"{name}/mm_local_rows"] = np.array(sum(s.data.shape[0] for s in mm.addressable_shards))
    # svds on operators row-sharded over both processes (host control flow runs on each process)
    for name, (a, hermitian) in problems().items():
        A = shard_rows(ops.sparse_from_scipy(a.astype(np.float32)))
        for method in SVDS_EXACT:
            sp = svds(A, SVDS_D, method=method, hermitian=hermitian, tol=1e-5, on_fail="ignore")
            out[f"svds/{name}/{method}/s"] = np.asarray(sp.s)
            out[f"svds/{name}/{method}/residuals"] = np.asarray(sp.residuals)
    np.savez(f"{out_prefix}.{pid}.npz", **out)
    multihost_utils.sync_global_devices("jaxcontext-dist-test-done")
    jax.distributed.shutdown()
    print(f"process {pid} done", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Results are written and the coordinator is shut down. Interpreter teardown of the gloo/XLA
    # threads was seen to hang under heavy load (both processes printed "done", one never exited),
    # so leave without it.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
