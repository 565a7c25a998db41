"""Tests of the ``solvers`` benchmark suite (``python -m jaxcontext.bench --suite solvers``).

The CLI runs once in a subprocess on the tiny block model; the rest runs in-process on the tiny
cases with scipy peers only (no JAX compilation). No test asserts anything about timings.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxcontext.bench import _harness as H
from jaxcontext.bench import solvers as S

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("JAXCONTEXT_BENCH_CACHE", str(d))
    return d


def _case(name: str, size: str = "tiny") -> H.Case:
    (case,) = [c for c in S.cases(size) if c.name == name]
    return case


def _impl(case: H.Case, name: str) -> H.Impl:
    (impl,) = [i for i in case.impls if i.name == name]
    return impl


# --------------------------------------------------------------------------------------------------
# The CLI end to end
# --------------------------------------------------------------------------------------------------
def test_cli_tiny_sbm_entries_are_checked_timed_and_certified(tmp_path):
    out = tmp_path / "solvers.json"
    md = tmp_path / "solvers.md"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["JAX_PLATFORMS"] = "cpu"
    env["JAXCONTEXT_BENCH_CACHE"] = str(tmp_path / "cache")
    env.pop("JAX_ENABLE_X64", None)
    args = ["--suite", "solvers", "--size", "tiny", "--only", "sbm/", "--repeats", "1",
            "--no-memory", "--json", str(out), "--markdown", str(md)]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "jaxcontext.bench", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert doc["settings"]["suite"] == "solvers"
    assert doc["environment"]["load_average_start"] is not None
    entries = {e["impl"]: e for e in doc["entries"]}
    assert set(entries) == {i.name for i in _case("sbm/n2400/d8").impls}
    assert entries["scipy svds arpack"]["baseline"]
    for name, e in entries.items():
        assert e["case"] == "sbm/n2400/d8"
        assert e["status"] in ("ok", "failed", "skipped"), (name, e["message"])
        if e["status"] == "skipped":  # optional peers (PRIMME, cupy, torch) when unavailable
            assert name.split()[0] in ("primme", "cupy", "torch"), name
            assert "not installed" in e["message"] or "CUDA" in e["message"], e["message"]
            continue
        if e["status"] == "failed":  # only a peer may give up (PROPACK, PRIMME), with its reason
            assert name in ("scipy svds propack", "primme svds", "primme eigsh"), name
            assert "PROPACK" in e["message"] or "PRIMME" in e["message"]
            continue
        assert np.isfinite(e["time_median_s"]) and e["time_median_s"] > 0
        assert e["speedup"] is not None and e["baseline_impl"] == "scipy svds arpack"
        assert 0 <= e["rel_error"] <= e["tol"]
        assert "max_residual" in e["details"]
    for name in ("jaxcontext", "jaxcontext[lanczos]"):
        e = entries[name]
        assert e["tol"] == S.TOL and e["rel_error"] <= 1e-4
        det = e["details"]
        method = "chebyshev" if name == "jaxcontext" else "lanczos"  # auto: n > 500
        assert det["method"] == method and det["converged"] == "8/8"
        assert det["matvecs"] >= 0 and det["max_residual"] <= S.TOL
        # where the time goes: a stage profile from one more (untimed) solve
        assert "products" in det["stages"] and "stages total" in det["stages"], det["stages"]
        assert "orthonormalisation" in det["stages"] and "rayleigh-ritz" in det["stages"]
    for name in ("scipy svds arpack", "scipy eigsh LM"):  # peers under one thread count
        assert entries[name]["details"]["threads"] == S.peer_threads()
    text = md.read_text()
    assert "## Details" in text and "max_residual=" in text and "sbm/n2400/d8" in text


# --------------------------------------------------------------------------------------------------
# Flagging broken solvers
# --------------------------------------------------------------------------------------------------
def _off_by(a, d, factor):
    sol = S._arpack_svds(a, d)
    return sol._replace(s=sol.s * factor)


def _small_sbm_case() -> H.Case:
    return S._sbm_case(600, 6, 20.0, 6.0, 6, np.dtype(np.float32), 0, "tiny", False)


def test_broken_solver_is_flagged_wrong_and_not_timed(cache):
    case = _small_sbm_case()
    base = _impl(case, "scipy svds arpack")
    broken = base._replace(
        name="broken", baseline=False, peer=False, fn=lambda a, d: _off_by(a, d, 1.001)
    )
    slightly = base._replace(
        name="approx", baseline=False, tol=S.APPROX_TOL, fn=lambda a, d: _off_by(a, d, 1.001)
    )

    def gives_up(a, d):
        raise H.ImplFailed("did not converge")

    failing = base._replace(name="gives up", baseline=False, fn=gives_up)
    case = case._replace(impls=(base, broken, slightly, failing))
    entries = {e.impl: e for e in H.run_case(case, repeats=1)}
    assert entries["scipy svds arpack"].status == "ok"
    assert entries["scipy svds arpack"].rel_error < 1e-5
    e = entries["broken"]
    assert e.status == "wrong" and e.time_median_s is None and e.times_s == ()
    assert e.rel_error == pytest.approx(1e-3, rel=1e-2) and "exceeds the tolerance" in e.message
    # the same error is accepted where the entry declares an approximate method
    assert entries["approx"].status == "ok" and entries["approx"].tol == S.APPROX_TOL
    gave_up = entries["gives up"]
    assert gave_up.status == "failed" and "did not converge" in gave_up.message
    with pytest.raises(H.CorrectnessError, match="broken"):
        H.run_case(case._replace(impls=(base, broken)), repeats=1, strict=True)


def test_inaccurate_peer_is_a_finding_and_a_wrong_jaxcontext_entry_fails_the_run(
    cache, monkeypatch, capsys
):
    """A peer missing the accuracy bar is recorded (not timed) and the CLI still exits 0.

    The same wrong values from an entry that is not a peer (jaxcontext's) make it exit 1.
    """
    cli = importlib.import_module("jaxcontext.bench.__main__")
    case = _small_sbm_case()
    base = _impl(case, "scipy svds arpack")
    assert base.peer and not _impl(case, "jaxcontext").peer
    off = base._replace(name="off peer", baseline=False, fn=lambda a, d: _off_by(a, d, 1.01))
    argv = ["--suite", "solvers", "--size", "tiny", "--repeats", "1", "--no-memory"]

    def run_cli(*impls, strict=False):
        monkeypatch.setattr(H, "suite_cases", lambda *a, **k: [case._replace(impls=impls)])
        status = cli.main(argv + ["--strict"] * strict)
        return status, capsys.readouterr()

    status, out = run_cli(base, off)
    assert status == 0, out.err
    assert "inaccurate (peer): error > tol, not timed" in out.out and "WRONG:" not in out.out
    assert "FAILED" not in out.err and "inaccurate peer result" in out.err
    assert run_cli(base, off, strict=True)[0] == 0  # a peer's inaccuracy never stops a run
    (e,) = [
        e for e in H.run_case(case._replace(impls=(base, off)), repeats=1) if e.impl == "off peer"
    ]
    assert e.status == "inaccurate" and e.time_median_s is None and e.speedup is None
    assert e.rel_error == pytest.approx(1e-2, rel=1e-2) and e.rel_error > e.tol
    assert H.failures([e]) == []

    ours = off._replace(name="jaxcontext", peer=False)
    status, out = run_cli(base, ours)
    assert status == 1
    assert "WRONG: error > tol, not timed" in out.out
    assert "FAILED solvers/sbm/n600/d6 [jaxcontext]: wrong" in out.err


def test_sv_error_is_the_largest_relative_singular_value_error():
    ref = {"s": np.array([2.0, 1.0, 0.5]), "centered": np.array([1.0, 0.5, 0.25])}
    out = S.Solved(np.array([2.0, 1.001, 0.5]), None, None)
    assert S.sv_error(out, ref) == pytest.approx(1e-3)
    assert S.sv_error(S.Solved(np.array([1.0, 0.5, 0.26]), None, None, "centered"), ref) == (
        pytest.approx(0.04)
    )
    # the top d of a longer reference; a longer result than the reference cannot be compared
    assert S.sv_error(S.Solved(np.array([2.0, 1.0]), None, None), ref) == 0.0
    assert S.sv_error(S.Solved(np.array([2.0, 1.0, 0.5, 0.1]), None, None), ref) == float("inf")


# --------------------------------------------------------------------------------------------------
# Problems: the operators are the contexts' operators, references are right and cached
# --------------------------------------------------------------------------------------------------
def test_sbm_matrix_is_the_graph_context_operator():
    from jaxcontext import contexts

    r, c = S.sbm_graph_edges(300, 3, 12.0, 4.0, seed=1)
    z = S.sbm_matrix(300, 3, 12.0, 4.0, seed=1).toarray()
    ctx = contexts.graph(edges=np.stack([r, c], 1), num_nodes=300)
    want = np.asarray(ctx.operator().to_dense())
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(z, z.T, atol=1e-15)
    mean_deg = 2 * r.size / 300
    assert 10 < mean_deg < 22  # deg_in + deg_out = 16 expected


def test_knn_matrix_is_the_knn_context_operator(rng):
    from jaxcontext import contexts

    x = rng.standard_normal((200, 3))
    z = S.knn_matrix(x, 5).toarray()
    want = np.asarray(contexts.knn(x.astype(np.float32), 5).operator().to_dense())
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-7)
    assert np.linalg.svd(z, compute_uv=False)[0] == pytest.approx(1.0, abs=1e-10)


def test_sparse_reference_matches_dense_float64(rng, monkeypatch):
    z = S.sbm_matrix(600, 4, 20.0, 6.0, seed=2)
    dense = np.sort(np.abs(np.linalg.eigvalsh(z.toarray())))[::-1][:6]
    monkeypatch.setattr(S, "DENSE_REF_MAX", 100)  # take the ARPACK path
    np.testing.assert_allclose(S._sparse_reference(z, 6, True), dense, rtol=1e-9)
    svals = np.linalg.svd(z.toarray(), compute_uv=False)[:6]
    np.testing.assert_allclose(S._sparse_reference(z, 6, False), svals, rtol=1e-9)
    assert dense[0] == pytest.approx(1.0, abs=1e-10)


def test_rbf_reference_iterative_path_matches_eigvalsh(rng, monkeypatch):
    x, gamma = S.rbf_points(400, 4, rng)
    x = x.astype(np.float32)
    dis = (1.0 / np.sqrt(S.rbf_degrees64(x, gamma, chunk=64))).astype(np.float32)
    K = S.rbf_materialise(x, np.float32(gamma), dis)
    k64 = K.astype(np.float64)
    d2 = ((x[:, None, :].astype(np.float64) - x[None].astype(np.float64)) ** 2).sum(-1)
    exact = np.exp(-gamma * d2)
    dd = 1.0 / np.sqrt(exact.sum(1))
    np.testing.assert_allclose(k64, dd[:, None] * exact * dd[None, :], rtol=2e-5, atol=1e-8)
    h = np.eye(400) - 1.0 / 400
    want = np.sort(np.linalg.eigvalsh(k64))[::-1][:6]
    want_c = np.sort(np.linalg.eigvalsh(h @ k64 @ h))[::-1][:6]
    np.testing.assert_allclose(S._rbf_reference(K, 6, centered=False, seed=0), want, rtol=1e-7)
    monkeypatch.setattr(S, "DENSE_REF_MAX", 100)  # randomized range finder + float64 lobpcg
    np.testing.assert_allclose(S._rbf_reference(K, 6, centered=False, seed=0), want, rtol=1e-7)
    np.testing.assert_allclose(S._rbf_reference(K, 6, centered=True, seed=0), want_c, rtol=1e-7)


def test_reference_is_cached_on_disk_by_parameters(cache):
    calls = []

    def compute():
        calls.append(1)
        return {"s": np.array([3.0, 2.0])}

    a = S.cached({"problem": "t", "n": 1}, compute)
    b = S.cached({"problem": "t", "n": 1}, compute)
    c = S.cached({"problem": "t", "n": 2}, compute)
    assert len(calls) == 2 and np.array_equal(a["s"], b["s"]) and np.array_equal(a["s"], c["s"])
    assert len(list(cache.glob("t-*.npz"))) == 2


# --------------------------------------------------------------------------------------------------
# The suite's cases
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["tiny", "quick", "full"])
def test_cases_have_unique_names_one_baseline_and_the_right_accuracy_bars(size):
    cases = S.cases(size)
    assert len({c.name for c in cases}) == len(cases)
    for c in cases:
        assert sum(i.baseline for i in c.impls) == 1, c.name
        for i in c.impls:
            approx = any(w in i.name for w in ("krylov", "randomized", "lowrank"))
            if c.params["kind"] == "rbf-free":
                assert i.tol == S.APPROX_TOL  # no reference: the certificate bound is recorded
            else:
                assert i.tol == (S.APPROX_TOL if approx else None), (c.name, i.name)
            assert i.details is not None
    kinds = {c.params["kind"] for c in cases}
    assert kinds >= {"sbm", "sbm-bulk", "knn", "rbf"}


def test_full_sizes_are_the_acceptance_problems():
    cases = {c.name: c for c in S.cases("full")}
    assert {
        "sbm/n100000/d64",
        "sbm/n1000000/d32",
        "sbm-bulk/n100000/d64",
        "knn/m50000/d64",
        "rbf/m20000/d64",
        "rbf-free/m100000/d64",
    } <= set(cases)
    bulk = cases["sbm-bulk/n100000/d64"].params  # issue 8 item 9: d cuts into the bulk
    assert (bulk["blocks"], bulk["deg_in"], bulk["deg_out"], bulk["d"]) == (50, 20.0, 5.0, 64)
    assert "scipy svds arpack" in {i.name for i in cases["sbm-bulk/n100000/d64"].impls}
    sbm = cases["sbm/n100000/d64"].params
    assert sbm["deg_in"] + sbm["deg_out"] == 50  # about 5M non-zeros on 100k nodes
    big = cases["sbm/n1000000/d32"].params
    assert big["deg_in"] + big["deg_out"] == 20  # about 20M non-zeros on 1M nodes
    assert cases["knn/m50000/d64"].params["K"] == 30
    assert cases["rbf-free/m100000/d64"].memory
    names = {i.name for i in cases["rbf/m20000/d64"].impls}
    assert {"sklearn KernelPCA arpack", "scipy eigsh LM", "jaxcontext[matrix-free, lanczos]"} <= (
        names
    )
    sbm_impls = {i.name for i in cases["sbm/n100000/d64"].impls}
    assert "jaxcontext[lanczos, non-hermitian]" in sbm_impls


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_peers_eigsh_primme_and_gpu_entries(size, monkeypatch):
    """eigsh beside svds on symmetric cases; PRIMME, cupy, torch peers present, skipped by name."""
    for c in S.cases(size):
        names = {i.name for i in c.impls}
        if c.params["kind"] in ("sbm", "sbm-bulk", "rbf"):
            assert "scipy eigsh LM" in names, c.name
        if c.params["kind"] in ("sbm", "sbm-bulk", "knn"):
            assert {"primme svds", "cupy svds"} <= names, c.name
            if c.params["kind"] != "knn":  # symmetric
                assert {"primme eigsh", "cupy eigsh", "torch lobpcg"} <= names, c.name
        for i in c.impls:
            if i.name.split()[0] in ("cupy", "torch") and i.skip:
                assert "not installed" in i.skip or "CUDA" in i.skip, i.skip
    monkeypatch.setattr(S, "_missing", lambda module: f"{module} is not installed (optional peer)")
    knn = [c for c in S.cases("tiny") if c.params["kind"] == "knn"][0]
    assert _impl(knn, "primme svds").skip == "primme is not installed (optional peer)"


def test_peers_run_under_the_recorded_thread_count():
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import threadpool_info

    seen = []

    def probe():
        seen.append([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"])
        return 0

    assert S._threaded(probe)() == 0
    assert all(t == S.peer_threads() for t in seen[0])


def test_bad_size_and_dtype_are_refused():
    with pytest.raises(ValueError, match="size must be one of"):
        S.cases("huge")
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        S.cases("tiny", dtype=np.int32)


# --------------------------------------------------------------------------------------------------
# --dtype float64 computes in float64
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["float64"], indirect=True)
def test_float64_run_solves_in_float64(cache, precision):
    """Under x64 (what ``--dtype float64`` turns on) jaxcontext entries solve in float64.

    The block Lanczos entry of the tiny kNN case (it failed under x64 before); the whole tiny
    suite in float64 is ``python -m jaxcontext.bench --dtype float64 --size tiny`` (exit 0).
    """
    (case,) = [c for c in S.cases("tiny", dtype=np.float64) if c.name.startswith("knn/")]
    impls = tuple(i for i in case.impls if i.name == "jaxcontext[lanczos]")
    (e,) = H.run_case(case._replace(impls=impls), repeats=1)
    assert e.status == "ok", (e.impl, e.message)
    assert e.details["dtype"] == "float64" and e.details["converged"] == "8/8"
    assert e.rel_error <= 1e-6  # tol 1e-4 residuals: values to about tol^2
    # an entry that solved in float32 would be an error, not a float64 figure
    with pytest.raises(TypeError, match="not in the benchmark dtype float64"):
        S._in_dtype(S.Solved(np.ones(2, np.float32), None, None), np.float64)
