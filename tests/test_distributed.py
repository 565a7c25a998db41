"""Multi-process (jax.distributed): 2 processes on localhost, CPU collectives through gloo.

Each process has 2 forced CPU devices, so the global mesh has 4 devices split over 2 processes.
Both processes build the same sharded operators from the same host data (tests/_dist_worker.py);
the gathered products must match float64 numpy and the same products computed in this (single
device) process.
"""

import zlib
from pathlib import Path

import numpy as np
import pytest
from _subproc import once_per_session, run_processes
from _svds_problems import SVDS_D, SVDS_EXACT, problems, reference
from test_sharding import K, make_cases, make_data, rel_err

RTOL = 1e-5
CASES = ("sparse40", "sparse37", "context40", "kernel40")
WORKER = Path(__file__).resolve().parent / "_dist_worker.py"
NUM_PROCESSES = 2


def _run_two_processes(folder: Path) -> None:
    # a fixture cannot use the function-scoped `rng`; seed the same way it does
    rng = np.random.default_rng(zlib.crc32(b"tests/test_distributed.py::two_processes"))
    data = make_data(rng)
    for name, _, ref in make_cases(data):
        if name in CASES:
            m, n = ref.shape
            data[f"X/{name}"] = rng.standard_normal((n, K)).astype(np.float32)
            data[f"Y/{name}"] = rng.standard_normal((m, K)).astype(np.float32)
    np.savez(folder / "in.npz", **data)
    run_processes(
        WORKER, NUM_PROCESSES, args=(folder / "in.npz", folder / "out"), devices=2, timeout=150
    )


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Run the 2-process job once per session (see _subproc); return (cases, inputs, outputs of each
    process)."""
    folder = once_per_session(
        tmp_path_factory, "test_distributed-two-processes", _run_two_processes
    )
    data = dict(np.load(folder / "in.npz"))
    cases = {name: (op, ref) for name, op, ref in make_cases(data) if name in CASES}
    outs = [dict(np.load(folder / f"out.{i}.npz")) for i in range(NUM_PROCESSES)]
    return cases, data, outs


@pytest.mark.multiprocess
def test_two_processes_see_four_global_devices(two_processes):
    _, _, outs = two_processes
    for out in outs:
        assert int(out["num_devices"]) == 4
        assert int(out["num_local_devices"]) == 2


@pytest.mark.multiprocess
@pytest.mark.parametrize("name", CASES)
def test_two_processes_match_float64_and_one_process(two_processes, name):
    cases, data, outs = two_processes
    op, ref = cases[name]
    X, Y = data[f"X/{name}"], data[f"Y/{name}"]
    one_mm, one_rm = np.asarray(op.matmat(X)), np.asarray(op.rmatmat(Y))  # 1 process, 1 device
    for out in outs:
        for key, want, one in (("mm", ref @ X, one_mm), ("rm", ref.T @ Y, one_rm)):
            for variant in (key, key + "_eager"):
                got = out[f"{name}/{variant}"]
                assert got.shape == want.shape, variant
                assert rel_err(got, want) < RTOL, (variant, rel_err(got, want))
                assert rel_err(got, one) < RTOL, (variant, rel_err(got, one))


@pytest.mark.multiprocess
@pytest.mark.parametrize("name", [n for n in CASES if "40" in n])
def test_two_processes_keep_outputs_row_sharded(two_processes, name):
    # 40 rows on 4 devices: each process holds its 2 blocks of 10 rows, not the whole block
    _, _, outs = two_processes
    for out in outs:
        assert not bool(out[f"{name}/mm_fully_addressable"])
        assert int(out[f"{name}/mm_local_rows"]) == 20


@pytest.mark.multiprocess
@pytest.mark.parametrize("name", sorted(problems()))
@pytest.mark.parametrize("method", SVDS_EXACT)
def test_two_processes_svds_match_one_process(two_processes, svds_one_device, name, method):
    """svds on an operator sharded over 2 processes x 2 devices = 1 device = float64, to 1e-5."""
    a, hermitian = problems()[name]
    one_s = svds_one_device(name, method)  # the same svds call on one device (conftest.py)
    ref = reference(a, SVDS_D, hermitian)
    _, _, outs = two_processes
    for out in outs:
        s = out[f"svds/{name}/{method}/s"]
        np.testing.assert_allclose(s, one_s, rtol=1e-5)
        np.testing.assert_allclose(s, ref, rtol=1e-5)
