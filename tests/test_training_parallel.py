"""Data-parallel training: 4 forced CPU devices and 2 jax.distributed processes against 1 device.

The step's loss, gradients and parameters after three steps must equal the single-device ones at
the same global batch (float32 rounding: the batch statistics are global, reduced across devices),
the batch must really be split over the devices, and the step must trace once
(``chex.assert_max_traces``). The device runs happen in fresh interpreters (tests/_train_worker.py).
"""

from pathlib import Path

import jax
import numpy as np
import pytest
from _subproc import once_per_session, run_processes, run_python
from _train_worker import OBJECTIVES, run

WORKER = Path(__file__).resolve().parent / "_train_worker.py"


def _run_one_device(folder):
    np.savez(folder / "one.npz", **run(jax.devices()[:1]))


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The one-device run, in this process, once per session (the two tests may land on different
    xdist workers: see _subproc.once_per_session)."""
    folder = once_per_session(
        tmp_path_factory, "test_training_parallel-one-device", _run_one_device
    )
    return dict(np.load(folder / "one.npz"))


def _compare(got, ref, ndev, local_rows):
    for obj in OBJECTIVES:
        assert int(got[f"{obj}/batch_devices"]) == ndev
        assert int(got[f"{obj}/batch_local_rows"]) == local_rows
        np.testing.assert_allclose(got[f"{obj}/loss"], ref[f"{obj}/loss"], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(
            got[f"{obj}/losses3"], ref[f"{obj}/losses3"], rtol=1e-4, atol=1e-6
        )
        grads = sorted(k for k in ref if k.startswith(f"{obj}/grad/"))
        assert grads and len(grads) == len([k for k in got if k.startswith(f"{obj}/grad/")])
        for k in grads:
            scale = max(1.0, float(np.abs(ref[k]).max()))
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5 * scale, err_msg=k)
        for k in (k for k in ref if k.startswith(f"{obj}/param/")):
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.multiprocess
def test_four_devices_match_one_device(one_device, tmp_path):
    run_python(
        f"""
        import sys
        sys.path.insert(0, "tests")
        import _train_worker
        _train_worker.main({str(tmp_path / "out")!r})
        """,
        devices=4,
        timeout=300,
    )
    got = dict(np.load(tmp_path / "out.0.npz"))
    assert int(got["num_devices"]) == 4
    _compare(got, one_device, ndev=4, local_rows=64)


@pytest.mark.multiprocess
def test_two_processes_match_one_device(one_device, tmp_path):
    run_processes(WORKER, 2, args=(tmp_path / "out",), devices=2, timeout=300)
    for pid in range(2):
        got = dict(np.load(tmp_path / f"out.{pid}.npz"))
        assert int(got["num_devices"]) == 4
        _compare(got, one_device, ndev=4, local_rows=32)  # each process holds its 2 devices' rows
