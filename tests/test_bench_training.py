"""Tests of the ``training`` benchmark suite: checked first steps, one baseline, data parallel.

Timings are never asserted; only that the suite's cases check their first loss against float64 and
run on one device and, with ``--cpu-devices``, on several.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxcontext import bench
from jaxcontext.bench import _harness as H
from jaxcontext.bench import training as trsuite

REPO = Path(__file__).resolve().parent.parent


def test_training_is_a_registered_suite():
    assert "training" in bench.SUITES
    names = [c.name for c in H.suite_cases("training", "tiny")]
    assert names[:3] == [f"{k}/mlp-w32-d2/b64/dev1" for k in trsuite.OBJECTIVES]


@pytest.mark.parametrize("size", ["tiny", "quick", "full"])
def test_cases_have_one_baseline_and_name_their_encoder(size):
    cases = trsuite.cases(size)
    assert len({c.name for c in cases}) == len(cases)
    for c in cases:
        assert sum(i.baseline for i in c.impls) == 1
        assert c.params["objective"] in trsuite.OBJECTIVES and c.params["d"] == trsuite.D
        assert c.name.endswith(f"/b{c.params['batch']}/dev{c.params['devices']}")


def test_tiny_nested_case_runs_checked_against_float64():
    (case,) = [c for c in trsuite.cases("tiny") if c.name.startswith("nested/")]
    entries = H.run_case(case, repeats=2)
    assert [e.status for e in entries] == ["ok", "ok"], [e.status for e in entries]
    for e in entries:
        assert e.rel_error < e.tol  # first loss = the objective (or MSE) in float64
        assert e.details["samples_per_call"] == e.details["steps_per_call"] * 64


def test_cli_cpu_devices_adds_data_parallel_cases(tmp_path):
    """``--cpu-devices 2``: every objective also runs sharded over 2 host devices, checked."""
    out = tmp_path / "tr.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        [sys.executable, "-m", "jaxcontext.bench", "--suite", "training", "--size", "tiny",
         "--only", "svme/", "--cpu-devices", "2", "--repeats", "1", "--no-memory",
         "--json", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert doc["settings"]["cpu_devices"] == 2
    cases = {e["case"] for e in doc["entries"]}
    assert cases == {"svme/mlp-w32-d2/b64/dev1", "svme/mlp-w32-d2/b64/dev2"}
    for e in doc["entries"]:
        assert e["status"] == "ok" and e["rel_error"] < e["tol"], e
        assert e["details"]["devices"] == int(e["case"][-1])
