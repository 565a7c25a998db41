"""scripts/orthonormality.py: metrics, the Newton-Schulz whitening, one tiny run, the summary."""

from __future__ import annotations

import importlib.util
import math
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcontext import datasets

_PATH = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "orthonormality.py"


@pytest.fixture(scope="module")
def ortho():
    spec = importlib.util.spec_from_file_location("orthonormality_script", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def mehler(ortho):
    return ortho.mehler_problem(m=2000, n_eval=3000, n_probe=600)


def test_offdiag_stats(ortho):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(500, 4)) - 0.0)
    q = q - q.mean(axis=0)
    q, _ = np.linalg.qr(q)  # centred and orthogonal columns: correlation exactly I
    mx, fro = ortho.offdiag_stats(q)
    assert mx < 1e-10 and fro < 1e-10
    # two columns x and x + y (x, y orthogonal, same norm): correlation 1/sqrt(2), twice in R
    f = np.c_[q[:, 0], q[:, 0] + q[:, 1], q[:, 2]]
    mx, fro = ortho.offdiag_stats(f)
    assert mx == pytest.approx(1 / math.sqrt(2), abs=1e-9)
    assert fro == pytest.approx(1.0, abs=1e-9)


def test_rel_s_error(ortho):
    assert ortho.rel_s_error([0.5, 1.0], [1.0, 0.5]) == 0.0
    assert ortho.rel_s_error([1.0, 0.6], [1.0, 0.5]) == pytest.approx(0.2)


def test_mehler_posthoc_is_exact_and_span_invariant(ortho):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    H = datasets.hermite_functions(x, 10)
    exact = np.array([0.6, 0.6, 0.36, 0.36, 0.36])
    mix = H[:, 1:6] @ rng.normal(size=(5, 5)) + 3.0  # any invertible map and shift of the span
    np.testing.assert_allclose(ortho.mehler_posthoc_s(mix, x, 0.6), exact, rtol=1e-6)
    # replace one degree-2 function by a degree-3 one: its value rho^3 appears
    wrong = np.c_[H[:, 1:5], H[:, 6]]
    np.testing.assert_allclose(ortho.mehler_posthoc_s(wrong, x, 0.6),
                               [0.6, 0.6, 0.36, 0.36, 0.216], rtol=1e-6)


def test_newton_schulz_whitens_ill_conditioned(ortho):
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    C = (q * np.array([1.0, 0.3, 0.1, 1e-2, 1e-3, 1e-4])) @ q.T
    W = np.asarray(ortho.newton_schulz_inv_sqrt(jnp.asarray(C, jnp.float32)), np.float64)
    np.testing.assert_allclose(W @ C @ W, np.eye(6), atol=2e-3)
    # too few iterations leave the low-variance directions under-whitened (documented)
    W4 = np.asarray(ortho.newton_schulz_inv_sqrt(jnp.asarray(C, jnp.float32), 4), np.float64)
    assert np.linalg.eigvalsh(W4 @ C @ W4).min() < 0.1


def test_make_objective_options(ortho):
    obj = ortho.make_objective("vicreg3")
    assert dict(obj.options)["constraint"] == "vicreg"
    assert dict(obj.options)["c_std"] == 3.0 and dict(obj.options)["c_cov"] == 3.0
    assert dict(ortho.make_objective("whiten").options)["constraint"] == "whiten"
    assert ortho.make_objective("nested_sequential").even_batch
    with pytest.raises(ValueError):
        ortho.make_objective("nope")


def test_exact_features_score_perfectly(ortho, mehler):
    rec = ortho.measure_features(mehler, ortho._fixed(mehler))
    assert rec["subspace_distance"] < 1e-10
    assert rec["r2_cca"] == pytest.approx(1.0, abs=1e-10)
    assert rec["s_err_posthoc"] < 1e-6
    assert rec["probe_gap"] == 0.0
    # Hermite products are orthonormal: sample correlations of order 1/sqrt(n)
    assert rec["offdiag_max"] < 0.1
    # a feature set missing one exact direction is 1/5 away, and the metric says so
    def missing_one(z):  # h_(0,2) replaced by h_(2,1): degree 3, orthogonal to the exact span
        H = datasets.hermite_functions(z, 10)
        return np.c_[H[:, 1:5], H[:, 7]]

    bad = ortho._measure(mehler, missing_one, None, method="bad", batch=0, seed=0, steps=0)
    assert bad["subspace_distance"] == pytest.approx(0.2, abs=0.02)
    assert bad["r2_cca"] == pytest.approx(0.8, abs=0.02)
    assert bad["probe_gap"] > 0.05  # He_2(x_2) is no longer in the span
    assert bad["s_err_posthoc"] == pytest.approx(0.4, abs=0.01)  # 0.216 in place of 0.36


def test_run_one_record(ortho, mehler):
    rec = ortho.run_one(mehler, "nested_sequential", batch=64, seed=0, steps=30, width=16)
    for k in ortho.RECORD_FIELDS:
        assert k in rec, k
    assert rec["method"] == "nested_sequential" and rec["batch"] == 64 and rec["d"] == 5
    for k in ("subspace_distance", "r2_cca", "offdiag_max", "s_err_posthoc", "s_err_objective",
              "probe_gap", "wall_s"):
        assert np.isfinite(rec[k]), k
    assert rec["subspace_distance"] == pytest.approx(1 - rec["r2_cca"], abs=1e-5)
    assert len(rec["s_objective"]) == 5


def test_summary_and_acceptance(ortho):
    recs = []
    for seed, (v1, v3, ns) in enumerate([(0.10, 0.2, 0.010), (0.12, 0.3, 0.020),
                                         (0.08, 0.4, 0.015)]):
        for m, v in (("vicreg1", v1), ("vicreg3", v3), ("nested_sequential", ns)):
            recs.append({"problem": "mehler", "method": m, "batch": 128, "seed": seed,
                         "subspace_distance": v})
    summ = ortho.summarise(recs)
    cell = summ["mehler"]["vicreg1"]["128"]["subspace_distance"]
    assert cell == {"median": 0.10, "min": 0.08, "max": 0.12}
    acc = ortho.acceptance(summ)["mehler"]
    row = acc["per_batch"][0]
    assert row["vicreg_best"] == "vicreg1" and row["best_method"] == "nested_sequential"
    assert row["ratio_median"] == pytest.approx(0.10 / 0.015)
    assert row["ratio_conservative"] == pytest.approx(0.08 / 0.020)
    assert acc["met_all_batches_median"] and not acc["met_any_batch_conservative"]
