"""Tests of the benchmark CLI and harness (``python -m jaxcontext.bench``).

The CLI runs once in a subprocess on tiny cases; everything else runs in-process. No test asserts
anything about timings, only that they exist, are finite and come with their environment.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from jaxcontext import bench
from jaxcontext.bench import _harness as H
from jaxcontext.bench import operators as opsuite

REPO = Path(__file__).resolve().parent.parent
cli = importlib.import_module("jaxcontext.bench.__main__")


def _run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("JAX_ENABLE_X64", None)
    return subprocess.run(
        [sys.executable, "-m", "jaxcontext.bench", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


def _tiny(name: str) -> H.Case:
    (case,) = [c for c in opsuite.cases("tiny") if c.name == name]
    return case


# --------------------------------------------------------------------------------------------------
# The CLI end to end
# --------------------------------------------------------------------------------------------------
def test_cli_tiny_writes_json_with_environment_and_checked_entries(tmp_path):
    out = tmp_path / "res.json"
    md = tmp_path / "res.md"
    proc = _run_cli(
        [
            "--size",
            "tiny",
            "--only",
            "dense",
            "--only",
            "sparse/n400/k8",
            "--repeats",
            "2",
            "--no-memory",
            "--json",
            str(out),
            "--markdown",
            str(md),
            "--plots",
            str(tmp_path / "figs"),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    pngs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert pngs == ["operators-times.png"]
    assert (tmp_path / "figs" / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(out.read_text())
    assert doc["schema"] == H.SCHEMA
    env = doc["environment"]
    for key in (
        "platform",
        "device_kind",
        "jax",
        "jaxlib",
        "numpy",
        "scipy",
        "dtype",
        "cpu_count",
        "date_utc",
        "load_average_start",
    ):
        assert env[key] is not None, key
    assert env["dtype"] == "float32" and env["platform"] == "cpu"
    assert doc["settings"]["size"] == "tiny" and doc["settings"]["repeats"] == 2
    entries = doc["entries"]
    assert {e["case"] for e in entries} == {"dense/200x100/k8", "sparse/n400/k8"}
    assert {e["impl"] for e in entries} >= {"jaxcontext", "numpy A @ X", "scipy CSR @ X"}
    for e in entries:
        assert e["status"] == "ok", e
        assert e["dtype"] == "float32" and e["device"].startswith("cpu")
        for t in ("time_median_s", "time_min_s", "time_iqr_s"):
            assert math.isfinite(e[t]) and e[t] >= 0
        assert e["time_median_s"] > 0 and len(e["times_s"]) == e["repeats"] == 2
        assert 0 <= e["rel_error"] < e["tol"] < 1e-4
        assert math.isfinite(e["speedup"]) and e["speedup"] > 0
        if e["impl"].startswith("jaxcontext"):
            assert e["compile_s"] > 0
        else:
            assert e["compile_s"] is None
    for case in ("dense/200x100/k8", "sparse/n400/k8"):
        base = [e for e in entries if e["case"] == case and e["baseline"]]
        assert len(base) == 1 and base[0]["speedup"] == pytest.approx(1.0)
    # the table on stdout: header and one row per entry
    lines = proc.stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("suite"))
    for col in ("case", "impl", "median", "speedup", "rel.err", "compile"):
        assert col in header
    assert sum(ln.startswith("operators ") for ln in lines) == len(entries)
    text = md.read_text()
    assert "| suite |" in text and env["jax"] in text and "dense/200x100/k8" in text


def test_plots_of_a_report_name_suites_and_draw_alignment_curves(tmp_path):
    """Figures come from the JSON alone; one per suite with timings, curves where recorded."""
    from jaxcontext.bench._plots import plot_report

    ok = {"status": "ok", "times_s": [0.1, 0.2, 0.3], "baseline": False, "params": {}}
    doc = {
        "environment": {"platform": "cpu", "device_kind": "cpu", "jax": "x", "dtype": "float32"},
        "entries": [
            {
                **ok,
                "suite": "solvers",
                "case": "c1",
                "impl": "peer",
                "time_median_s": 0.2,
                "baseline": True,
                "speedup": 1.0,
            },
            {
                **ok,
                "suite": "solvers",
                "case": "c1",
                "impl": "jaxcontext",
                "time_median_s": 0.1,
                "speedup": 2.0,
            },
            {**ok, "suite": "solvers", "case": "c2", "impl": "jaxcontext", "status": "wrong"},
            {
                **ok,
                "suite": "alignment",
                "case": "a",
                "impl": "fit svme",
                "time_median_s": 1.0,
                "params": {"target_r2": 0.9},
                "details": {"evals_step": [0, 10], "evals_r2_cca": [0.5, 0.95]},
            },
            {
                **ok,
                "suite": "training",
                "case": "t",
                "impl": "x",
                "status": "skipped",
                "time_median_s": None,
            },
        ],
    }
    paths = plot_report(doc, str(tmp_path), prefix="p-")
    assert sorted(os.path.basename(p) for p in paths) == [
        "p-alignment-curves.png",
        "p-alignment-times.png",
        "p-solvers-times.png",
    ]  # no figure for a suite without a timed entry
    for p in paths:
        assert os.path.getsize(p) > 1000
    # the same figures from a JSON file on disk
    f = tmp_path / "r.json"
    f.write_text(json.dumps(doc))
    assert len(plot_report(str(f), str(tmp_path / "again"))) == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "huge"], "invalid choice: 'huge'"),
        (["--suite", "nope"], "invalid choice: 'nope'"),
        (["--repeats", "0"], "expected a positive integer, got 0"),
        (["--repeats", "two"], "expected a positive integer, got 'two'"),
        (["--cpu-devices", "0"], "expected a positive integer, got 0"),
        (["--seed", "-3"], "expected an integer >= 0, got -3"),
        (["--time-budget", "0"], "expected a positive number, got 0.0"),
        (["--dtype", "int8"], "invalid choice: 'int8'"),
        (["--only", "no-such-case"], "no case matches"),
        (["--json", "/no/such/dir/out.json"], "does not exist"),
    ],
)
def test_cli_bad_flags_exit_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_list_names_cases_and_baselines(capsys):
    assert cli.main(["--size", "full", "--list", "--only", "sparse/"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("operators/sparse/n100000/k1:")
    assert any("scipy CSR @ X *" in ln for ln in out)


# --------------------------------------------------------------------------------------------------
# Correctness before timing
# --------------------------------------------------------------------------------------------------
def _drop_first_entry(op, x):
    """A subtly wrong sparse product: the first stored entry is lost (1 of ~4000)."""
    return dataclasses.replace(op, vals=op.vals.at[0].set(0.0)) @ x


def _wrong_case() -> H.Case:
    case = _tiny("sparse/n400/k8")
    good = next(i for i in case.impls if i.name == "jaxcontext")
    broken = good._replace(name="broken", fn=_drop_first_entry)
    return case._replace(impls=(*case.impls, broken))


def test_wrong_implementation_raises_in_strict_mode():
    with pytest.raises(H.CorrectnessError, match=r"\[broken\]: error .* exceeds the tolerance"):
        H.run_case(_wrong_case(), repeats=2, strict=True)


def test_wrong_implementation_is_flagged_and_never_timed(capsys):
    entries = {e.impl: e for e in H.run_case(_wrong_case(), repeats=2)}
    bad = entries["broken"]
    assert bad.status == "wrong" and bad.rel_error > 100 * bad.tol
    assert bad.time_median_s is None and bad.times_s == () and bad.speedup is None
    assert "FAILED" in capsys.readouterr().err
    assert entries["jaxcontext"].status == "ok"  # the other implementations still ran


def test_crashing_implementation_is_an_error_entry():
    case = _tiny("dense/200x100/k8")

    def boom(*args):
        raise RuntimeError("kaput")

    case = case._replace(impls=(*case.impls, H.Impl("boom", case.impls[1].prepare, boom)))
    entries = {e.impl: e for e in H.run_case(case, repeats=2)}
    assert entries["boom"].status == "error" and "kaput" in entries["boom"].message
    assert entries["numpy A @ X"].status == "ok"


def test_interleaved_run_times_in_rounds_and_keeps_the_protocol():
    """``interleave``: every implementation is checked and warmed up first, then timed one call
    per round (the order alternating); wrong, crashing and skipped entries end as without it."""
    log: list[str] = []

    def logged(name, fn):
        def call(*args):
            log.append(name)
            return fn(*args)

        return call

    def boom(*args):
        raise RuntimeError("kaput")

    numpy_impl = H.Impl("a", prepare=lambda x: (x,), fn=logged("a", lambda x: x + x), baseline=True)
    impls = (
        numpy_impl,
        H.Impl("b", prepare=lambda x: (x,), fn=logged("b", lambda x: 2.0 * x)),
        H.Impl("wrong", prepare=lambda x: (x,), fn=logged("wrong", lambda x: 3.0 * x)),
        H.Impl("boom", prepare=lambda x: (x,), fn=boom),
        H.Impl("skipped", prepare=lambda x: (x,), fn=boom, skip="not installed"),
    )
    case = H.Case(
        suite="demo", name="double", params={}, build=lambda: np.arange(4.0),
        reference=lambda x: 2.0 * x, impls=impls, tol=1e-6,
    )
    entries = {e.impl: e for e in H.run_case(case, repeats=4, interleave=True)}
    assert entries["a"].status == entries["b"].status == "ok"
    assert entries["a"].repeats == entries["b"].repeats == 4
    assert len(entries["a"].times_s) == len(entries["b"].times_s) == 4
    assert entries["b"].speedup is not None and math.isfinite(entries["b"].speedup)
    assert entries["wrong"].status == "wrong" and entries["wrong"].times_s == ()
    assert entries["boom"].status == "error" and "kaput" in entries["boom"].message
    assert entries["skipped"].status == "skipped"
    # checked call and warm-up of each first (a, a, b, b, wrong), then rounds a b | b a | a b | b a
    assert log == ["a", "a", "b", "b", "wrong", "a", "b", "b", "a", "a", "b", "b", "a"], log
    # without interleave: each implementation's calls together
    log.clear()
    H.run_case(case, repeats=4)
    assert log[:12] == ["a"] * 6 + ["b"] * 6, log


def test_wrong_shape_is_caught():
    with pytest.raises(H.CorrectnessError, match="shape"):
        H.rel_error(np.zeros((3, 2)), np.zeros((2, 3)))


# --------------------------------------------------------------------------------------------------
# The operators suite
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sparse-T/n400/k8", "composed/n400/k8", "kernel-rbf/m300/k8"])
def test_tiny_cases_run_correct(name):
    entries = H.run_case(_tiny(name), repeats=2)
    assert [e.status for e in entries] == ["ok"] * len(entries)
    assert sum(e.baseline for e in entries) == 1
    assert all(e.rel_error < e.tol for e in entries)


@pytest.mark.parametrize("size", ["tiny", "quick", "full"])
def test_suite_cases_are_named_uniquely_with_one_baseline(size):
    cases = opsuite.cases(size)
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    for c in cases:
        assert sum(i.baseline for i in c.impls) == 1, c.name
        assert c.tol > 0
    kinds = {c.params["kind"] for c in cases}
    assert kinds == {"dense", "sparse", "sparse-T", "composed", "kernel"}


def test_full_size_holds_the_acceptance_cases():
    cases = {c.name: c for c in opsuite.cases("full")}
    big = cases["kernel-rbf/m100000/k64"]
    assert big.memory and big.params["m"] == 100_000 and big.params["k"] == 64
    numpy_peer = next(i for i in big.impls if i.baseline)
    assert numpy_peer.skip and "GB" in numpy_peer.skip  # 40 GB dense: not materialised
    sparse = cases["sparse/n100000/k64"]
    assert sparse.memory and sparse.params["mean_degree"] == 50
    assert any(i.name == "scipy CSR @ X" and i.baseline for i in sparse.impls)
    assert any(i.name == "scipy CSR @ x, 64x" for i in sparse.impls)


def test_random_graph_is_symmetric_without_loops_at_the_requested_degree(rng):
    a = opsuite.random_graph(2000, 50, rng)
    assert isinstance(a, (sp.csr_array, sp.csr_matrix))
    assert abs(a - a.T).max() == 0
    assert a.diagonal().max() == 0
    assert 0.97 * 2000 * 50 <= a.nnz <= 2000 * 50
    assert a.data.min() >= 0.5


def test_kernel_references_match_a_dense_float64_kernel(rng):
    x = rng.standard_normal((70, 3))
    v = rng.standard_normal((70, 4))
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    want = np.exp(-0.3 * d2) @ v
    rows = np.array([0, 5, 69])
    np.testing.assert_allclose(
        opsuite.rbf_rows_float64(x[rows], x, 0.3, v, chunk=2), want[rows], rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        opsuite.rbf_materialise_numpy(x.copy(), v, 0.3), want, rtol=1e-10, atol=1e-12
    )


def test_same_seed_same_inputs_other_seed_other_inputs():
    def first_block(seed):
        (c,) = [c for c in opsuite.cases("tiny", seed=seed) if c.name == "dense/200x100/k8"]
        return c.build()[1]

    np.testing.assert_array_equal(first_block(0), first_block(0))
    assert not np.array_equal(first_block(0), first_block(1))


def test_suite_lookup():
    cases = H.suite_cases("solvers", "tiny")
    assert cases and all(c.suite == "solvers" for c in cases)
    with pytest.raises(ValueError, match="suite must be one of"):
        H.suite_cases("nope", "quick")
    with pytest.raises(ValueError, match="size must be one of"):
        H.suite_cases("operators", "huge")


# --------------------------------------------------------------------------------------------------
# Harness pieces
# --------------------------------------------------------------------------------------------------
def test_summarize_is_median_min_and_iqr(rng):
    t = rng.uniform(1, 2, 9)
    med, mn, iqr = H.summarize(t)
    assert med == np.median(t) and mn == t.min()
    assert iqr == pytest.approx(np.percentile(t, 75) - np.percentile(t, 25))


def test_slow_calls_get_fewer_repeats_but_at_least_three():
    assert H._n_repeats(0.01, 7, 20.0) == 7
    assert H._n_repeats(5.0, 7, 20.0) == 4
    assert H._n_repeats(100.0, 7, 20.0) == 3
    assert H._n_repeats(100.0, 2, 20.0) == 2


def test_case_repeat_cap_holds_only_slow_calls(monkeypatch):
    """``max_repeats`` caps slow entries (CPU solves); fast ones keep the run's repeats (GPU)."""
    case = _tiny("dense/200x100/k8")._replace(max_repeats=1)
    fast = {e.impl: e.repeats for e in H.run_case(case, repeats=5)}
    assert set(fast.values()) == {5}, fast
    monkeypatch.setattr(H, "SLOW_CALL_S", 0.0)  # every call counts as slow
    slow = {e.impl: e.repeats for e in H.run_case(case, repeats=5)}
    assert set(slow.values()) == {1}, slow


def test_select_by_substring_and_glob():
    cases = opsuite.cases("tiny")
    assert {c.name for c in H.select(cases, ["sparse-T"])} == {"sparse-T/n400/k8"}
    assert {c.name for c in H.select(cases, ["*/k1"])} == {"sparse/n400/k1"}
    assert len(H.select(cases, None)) == len(cases)
    assert H.select(cases, ["nothing"]) == []


def test_select_impls_keeps_the_baseline():
    cases = H.suite_cases("operators", "tiny")
    for c in H.select_impls(cases, ["JAXCONTEXT"]):
        names = [i.name for i in c.impls]
        assert any(i.baseline for i in c.impls)
        assert all(i.baseline or "jaxcontext" in i.name.lower() for i in c.impls), names
    assert H.select_impls(cases, ["no-such-impl"]) == []
    solvers = H.select_impls(H.suite_cases("solvers", "tiny"), ["[j]axcontext", "eigsh"])
    assert solvers
    assert all(
        "jaxcontext" in [i.name for i in c.impls] for c in solvers if not c.name.startswith("rbf")
    )
    for c in solvers:
        names = [i.name for i in c.impls if not i.baseline]
        assert names and all(n == "jaxcontext" or "eigsh" in n for n in names), names
    assert H.select_impls(cases, None) == list(cases)


def test_select_impls_exclude_drops_the_baseline_too():
    solvers = H.suite_cases("solvers", "tiny")
    base = {c.name: next(i.name for i in c.impls if i.baseline) for c in solvers}
    out = H.select_impls(solvers, ["[j]axcontext"], ["arpack", "eigsh"])
    with_auto = [c.name for c in solvers if "jaxcontext" in [i.name for i in c.impls]]
    assert len(with_auto) >= 3 and [c.name for c in out] == with_auto
    for c in out:
        assert [i.name for i in c.impls] == ["jaxcontext"], c.name
        assert base[c.name] not in [i.name for i in c.impls]
    # exclude alone keeps everything else
    only_ex = H.select_impls(solvers, None, ["lanczos"])
    for c, full in zip(only_ex, solvers, strict=True):
        assert [i.name for i in c.impls] == [i.name for i in full.impls if "lanczos" not in i.name]
    # nothing left but a baseline: the case goes
    assert H.select_impls(solvers, ["[j]axcontext"], ["jaxcontext"]) == []


def test_rebase_takes_speedups_against_the_named_peer():
    solvers = H.select_impls(H.suite_cases("solvers", "tiny"), None, ["arpack", "scipy eigsh"])
    out = H.rebase(solvers, ["cupy svds", "cupy eigsh"])
    for c in out:
        base = [i.name for i in c.impls if i.baseline]
        names = [i.name for i in c.impls]
        want = [n for n in ("cupy svds", "cupy eigsh") if n in names][:1]
        assert base == want, (c.name, base)
    # no match: the case keeps its own baseline; several matches (cupy svds and cupy eigsh on
    # the symmetric block model): too
    full = H.suite_cases("solvers", "tiny")
    assert H.rebase(full, ["no-such-impl"]) == list(full)
    assert H.rebase(full, None) == list(full)
    sbm = [c for c in full if c.name.startswith("sbm/")]
    assert sbm and H.rebase(sbm, ["cupy"]) == sbm


def test_json_turns_non_finite_numbers_into_null(tmp_path):
    entry = H.Entry(
        suite="s",
        case="c",
        impl="i",
        params={},
        baseline=True,
        status="ok",
        rel_error=float("nan"),
        time_median_s=float("inf"),
        times_s=(1.0,),
    )
    report = H.Report(environment={"dtype": "float32"}, settings={}, entries=(entry,))
    H.write_json(report, str(tmp_path / "r.json"))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["entries"][0]["rel_error"] is None and doc["entries"][0]["time_median_s"] is None
    assert doc["entries"][0]["times_s"] == [1.0]


def test_memory_probe_reports_process_and_product_peaks():
    mem = bench.memory_probe("operators", "kernel-rbf/m300/k8", "jaxcontext", size="tiny")
    assert "error" not in mem, mem
    assert mem["process_peak_bytes"] >= mem["rss_after_setup_bytes"] > mem["rss_after_import_bytes"]
    assert mem["product_increment_bytes"] is not None and mem["product_increment_bytes"] >= 0
    assert mem["product_peak_bytes"] <= mem["process_peak_bytes"]
    assert mem["run_s"] > 0 and mem["compile_s"] > 0


def test_memory_probe_failure_is_reported_not_raised():
    mem = bench.memory_probe("operators", "no-such-case", "jaxcontext", size="tiny")
    assert "error" in mem and "no such case" in mem["error"]


def test_jax_inputs_are_not_closed_over():
    # the timed function receives the operator as an argument: a second operator of the same
    # shape reuses the executable and gives its own result
    case = _tiny("dense/200x100/k8")
    impl = case.impls[0]
    data = case.build()
    op, x = impl.prepare(data)
    f, _ = H.compile_jax(impl.fn, (op, x))
    op2 = type(op)(array=2.0 * op.array)
    np.testing.assert_allclose(np.asarray(f(op2, x)), 2.0 * np.asarray(f(op, x)), rtol=1e-6)
