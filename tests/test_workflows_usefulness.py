"""jaxcontext.workflows.usefulness and scripts/context_usefulness.py: the Table 1 protocol."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import numpy as np
import pytest

from jaxcontext import bridge
from jaxcontext import contexts as C
from jaxcontext.workflows import usefulness as U

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "context_usefulness.py"


# ------------------------------------------------------------------------------------------------
# Correlations
# ------------------------------------------------------------------------------------------------
def test_distance_correlation_hand_computed():
    # x = (0, 1, 2), y = (0, 1, 0). Distances a = [[0,1,2],[1,0,1],[2,1,0]] (row means 1, 2/3, 1;
    # grand mean 8/9) and b = [[0,1,0],[1,0,1],[0,1,0]] (row means 1/3, 2/3, 1/3; grand 4/9).
    # Double centring A_ij = a_ij - r_i - r_j + g, by hand:
    #   A = (1/9) [[-10, 2, 8], [2, -4, 2], [8, 2, -10]],
    #   B = (1/9) [[-2, 4, -2], [4, -8, 4], [-2, 4, -2]];
    # sum(A B) = (12 + 48 + 12) / 81 = 72 / 81, sum(A A) = 360 / 81, sum(B B) = 144 / 81, so
    # dCor^2 = 72 / sqrt(360 * 144) = 72 / (72 sqrt(10)) = 10^(-1/2) and dCor = 10^(-1/4).
    assert U.distance_correlation([0, 1, 2], [0, 1, 0]) == pytest.approx(10**-0.25, rel=1e-12)
    assert U.distance_correlation([0, 1, 0], [0, 1, 2]) == pytest.approx(10**-0.25, rel=1e-12)


def _dcor_sums(x, y):
    """Szekely et al.'s other form: dCov^2 = S1 + S2 - 2 S3 (no double centring)."""
    a = np.abs(x[:, None] - x[None, :])
    b = np.abs(y[:, None] - y[None, :])
    s1 = (a * b).mean()
    s2 = a.mean() * b.mean()
    s3 = (a.mean(1) * b.mean(1)).mean()
    return s1 + s2 - 2 * s3


def test_distance_correlation_matches_the_sums_form(rng):
    x = rng.normal(size=40)
    y = x**2 + 0.3 * rng.normal(size=40)
    expected = math.sqrt(_dcor_sums(x, y) / math.sqrt(_dcor_sums(x, x) * _dcor_sums(y, y)))
    assert U.distance_correlation(x, y) == pytest.approx(expected, rel=1e-10)


def test_distance_correlation_properties(rng):
    x = rng.normal(size=200)
    assert U.distance_correlation(x, 3.0 - 2.0 * x) == pytest.approx(1.0, abs=1e-12)
    assert U.distance_correlation(x, np.full(200, 4.0)) == 0.0
    # a symmetric quadratic: Pearson near 0, distance correlation clearly not
    xs = np.linspace(-1, 1, 201)
    assert abs(U.pearson(xs, xs**2)) < 1e-10
    assert U.distance_correlation(xs, xs**2) > 0.4
    # independent samples: small
    assert U.distance_correlation(x, rng.normal(size=200)) < 0.25
    # scale and shift invariant; 2-D samples allowed
    z = rng.normal(size=(200, 2))
    v = U.distance_correlation(z, z[:, 0] ** 2)
    assert U.distance_correlation(5 * z + 1, 0.1 * z[:, 0] ** 2) == pytest.approx(v, rel=1e-10)
    with pytest.raises(ValueError, match="same number"):
        U.distance_correlation(x, x[:10])


def test_pearson_spearman_against_scipy(rng):
    stats = pytest.importorskip("scipy.stats")
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    y[:5] = y[5]  # ties
    assert U.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], rel=1e-10)
    assert U.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], rel=1e-10)
    assert math.isnan(U.pearson(x, np.ones(30)))


def test_correlations_and_misleads():
    taus = [1.5, 1.6, 1.8, 2.0, 2.4]
    errs = [0.50, 0.20, 0.25, 0.30, 0.40]  # the smallest tau has the worst error
    recs = [
        {"label": f"c{i}", "tau": t, "probe_error": e, "near_extreme": t > 1.95}
        for i, (t, e) in enumerate(zip(taus, errs, strict=True))
    ]
    c = U.correlations(recs)
    assert c["n"] == 5 and c["n_trusted"] == 3
    assert c["pearson"] == pytest.approx(np.corrcoef(taus, errs)[0, 1])
    assert c["pearson_trusted"] == pytest.approx(np.corrcoef(taus[:3], errs[:3])[0, 1])
    assert c["best_tau_context"] == "c0" and c["best_error_context"] == "c1"
    assert c["regret"] == pytest.approx(0.30) and c["best_tau_error_rank"] == 5
    assert c["misleads"]
    # within 10% of the best error: not misleading
    recs[0]["probe_error"] = 0.21
    c = U.correlations(recs)
    assert not c["misleads"] and c["best_tau_error_rank"] == 2
    # summary over data sets
    s = U.summarize(
        [
            {"correlation": {"pearson": 0.2, "misleads": True}},
            {"correlation": {"pearson": 0.6}},
            {"correlation": {"pearson": float("nan")}},
        ]
    )
    assert s["pearson"] == {"mean": pytest.approx(0.4), "median": pytest.approx(0.4), "n": 2}
    assert s["misleads"] == 1 and s["datasets"] == 3


# ------------------------------------------------------------------------------------------------
# One context
# ------------------------------------------------------------------------------------------------
def test_grids_and_registry():
    g = U.context_grid()
    assert len(g) == 20 and len({c.label for c in g}) == 20
    assert len(U.context_grid(U.FULL_KS, U.FULL_GAMMA_FACTORS)) == 40
    assert U.d_grid(64) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert U.d_grid(10) == [1, 2, 3, 4, 6, 8, 10]
    assert len(U.FULL_DATASETS) >= 20 and set(U.DEFAULT_DATASETS) <= set(U.DATASETS)
    assert all(s.task in ("regression", "classification") for s in U.DATASETS.values())


def test_padded_probe_equals_unpadded(rng):
    f = rng.normal(size=(160, 3)).astype(np.float32)
    ft = rng.normal(size=(40, 3)).astype(np.float32)
    y = f @ rng.normal(size=3) + 0.5 * rng.normal(size=160)
    yt = ft @ rng.normal(size=3)
    a = U.probe_error(f, y, ft, yt, "regression", pad=True)
    b = U.probe_error(f, y, ft, yt, "regression", pad=False)
    assert a["alpha"] == b["alpha"] and a["error"] == pytest.approx(b["error"], rel=1e-4)
    W = rng.normal(size=(3, 10))  # ten linear classes (the shapes of the digits probes below)
    labels, labels_t = np.argmax(f @ W, axis=1), np.argmax(ft @ W, axis=1)
    a = U.probe_error(f, labels, ft, labels_t, "classification", pad=True)
    b = U.probe_error(f, labels, ft, labels_t, "classification", pad=False)
    assert a["error"] == b["error"] and a["probe"] == "ridge_onehot"
    assert a["error"] < 0.6  # linear classes: far better than chance (0.9)


def _circle(m, shift=0.0):
    th = 2 * np.pi * (np.arange(m) + shift) / m
    return th, np.c_[np.cos(th), np.sin(th)].astype(np.float32)


def test_evaluate_context_on_a_known_spectrum():
    # RBF on m equally spaced points of a circle: P is circulant, its singular values are the
    # |DFT| of one kernel row over its sum (pairs k, m - k); the singular functions are
    # cos / sin(k theta). The target sin(2 theta) needs the first two pairs: d >= 4.
    m, g, d0 = 160, 1.0, 4  # tau_d = 2.37, 1.94, 2.02, 2.01: an interior minimum at d = 2
    th, x = _circle(m)
    tht, xt = _circle(m, 0.5)
    prob = bridge.Problem(
        "circle", C.rbf(x, g), x, xt, np.sin(2 * th), np.sin(2 * tht), "regression", {}
    )
    rec = U.evaluate_context(prob, d0=d0)
    k0 = np.exp(-g * ((x[0].astype(np.float64) - x) ** 2).sum(1))
    lam = np.sort(np.abs(np.fft.fft(k0).real / k0.sum())[1:])[::-1][: d0 + 1]
    np.testing.assert_allclose(rec["spectrum"]["s"], lam, atol=2e-5)
    assert len(rec["spectrum"]["s"]) == rec["d_max"] == d0 + 1 and rec["spectrum"]["converged"]
    # tau from the exact values, independently: 1/(1 - s_{d+1}^2) + sum_{<=d} s^2 / sum_{<=d0} s^2
    s2 = lam**2
    curve = 1 / (1 - s2[1 : d0 + 1]) + np.cumsum(s2[:d0]) / s2[:d0].sum()
    assert rec["argmin_d"] == int(np.argmin(curve)) + 1
    assert rec["tau"] == pytest.approx(curve.min(), rel=1e-5)
    assert 1 < rec["argmin_d"] < d0  # an interior minimum: the check is not vacuous
    by_d = dict(zip(rec["probe_error_by_d"]["d"], rec["probe_error_by_d"]["error"], strict=True))
    assert by_d[2] > 0.9 and by_d[4] < 1e-3
    assert rec["best_d"] == 4 and rec["probe_error"] == min(by_d.values())
    assert rec["probe_error_at_tau_d"] == by_d[2]
    assert rec["probe_metric"] == "rel_mse" and rec["dtype"] == "float32"


# ------------------------------------------------------------------------------------------------
# A tiny data set, and the script
# ------------------------------------------------------------------------------------------------
_TINY = dict(max_rows=200, d0=4, seed=0)


@pytest.fixture(scope="module")
def tiny():
    ctxs = [
        U.ContextSpec("knn", 5, None, "knn-k5"),
        U.ContextSpec("rbf", None, 1.0, "rbf-g1x"),
        U.ContextSpec("masked_knn", 5, None, "mknn-k5"),
        U.ContextSpec("knn", 500, None, "knn-k500"),
    ]  # K above the rows: left out
    # one mask: the masked kNN operator has the shapes of knn-k5 (compiled programs are shared)
    return U.run(["digits"], contexts=ctxs, num_masks=1, **_TINY)


def test_records_structure_and_invariants(tiny):
    json.loads(json.dumps(tiny))  # JSON-serialisable
    assert tiny["environment"]["dtype"] == "float32" and "jax" in tiny["environment"]
    (d,) = tiny["datasets"]
    info = d["dataset"]
    assert info["rows_total"] == 1797 and info["rows_used"] == 200 and info["subsampled"]
    assert info["train_rows"] == 160 and info["test_rows"] == 40
    assert info["task"] == "classification" and info["classes"] == 10
    assert [r["label"] for r in d["records"]] == ["knn-k5", "rbf-g1x", "mknn-k5"]
    for r in d["records"]:
        s = np.asarray(r["spectrum"]["s"])
        assert s.size == 5 and np.all(np.diff(s) <= 1e-6) and s.max() <= 1 + 1e-5 and s.min() >= 0
        assert 1 <= r["argmin_d"] <= 4 and r["tau"] >= 1.0
        assert r["tau"] <= min(r["tau_curve"]["tau_d"]) * (1 + 1e-5)  # the curve has 6 digits
        errs = r["probe_error_by_d"]["error"]
        assert r["probe_error"] == pytest.approx(min(errs + [r["probe_error_at_tau_d"]]))
        assert r["probe_error"] <= r["probe_error_at_tau_d"]
        assert 0.0 <= r["probe_error"] <= 1.0 and r["probe"] == "ridge_onehot"
    assert d["records"][2]["settings"] == {
        "family": "masked_knn",
        "k": 5,
        "mask_ratio": 0.2,
        "num_masks": 1,
    }
    assert d["records"][1]["settings"]["gamma"] == pytest.approx(info["gamma_scale"])
    c = d["correlation"]
    assert c["n"] == 3 and -1 <= c["pearson"] <= 1 and 0 <= c["distance_correlation"] <= 1
    taus = [r["tau"] for r in d["records"]]
    assert c["best_tau_context"] == d["records"][int(np.argmin(taus))]["label"]
    assert tiny["summary"]["pearson"]["mean"] == pytest.approx(c["pearson"])
    assert "best_tau_context" in d["correlation_at_tau_d"]
    assert "Pearson" in U.table(tiny) and "0.431" in U.table(tiny)


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("context_usefulness_script", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def test_script_writes_json_markdown_and_plots(script, tmp_path):
    pytest.importorskip("matplotlib")
    out = script.main(
        [
            "--datasets",
            "digits",
            "--max-rows",
            "200",
            "--d0",
            "4",
            "--ks",
            "5",
            "--gammas",
            "1",
            "3",
            "--no-masked",
            "--out",
            str(tmp_path),
            "--tag",
            "t",
        ]
    )
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["summary"]["datasets"] == 1 and len(data["datasets"][0]["records"]) == 3
    assert data["settings"]["max_rows"] == 200 and data["settings"]["d0"] == 4
    assert data["environment"]["dtype"] == "float32"
    assert data["datasets"][0]["correlation"]["pearson"] == pytest.approx(
        out["datasets"][0]["correlation"]["pearson"]
    )
    md = (tmp_path / "t.md").read_text()
    assert "digits" in md and "paper mean" in md
    for f in ("t-tau-error.png", "t-tau-error-at-d-star.png", "t-spectra-digits.png"):
        assert (tmp_path / f).stat().st_size > 1000
    assert script.main(["--list"]) is None
