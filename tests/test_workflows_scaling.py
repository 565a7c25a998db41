"""jaxcontext.workflows.scaling: size grids, the diminishing-returns rule, records, the script."""

import importlib.util
import json
import os
import warnings

import numpy as np
import pytest

from jaxcontext import bridge, contexts
from jaxcontext.workflows import scaling

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------
# Size grids
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(scaling.PRESETS))
@pytest.mark.parametrize("in_dim,out_dim", [(2, 5), (8, 32)])
def test_presets_span_the_requested_range_sorted_by_params(preset, in_dim, out_dim):
    g = scaling.PRESETS[preset]
    specs = scaling.size_grid(
        in_dim, out_dim, widths=g["widths"], depths=g["depths"], min_sizes=5, min_span=100
    )
    params = [s.params for s in specs]
    assert len(specs) >= 5 and params == sorted(params) and len(set(params)) == len(params)
    assert params[-1] / params[0] >= 100 and scaling.param_span(specs) == params[-1] / params[0]
    assert len(g["seeds"]) >= 3
    # every requested width x depth is there, with its real parameter count
    assert {(s.width, s.depth) for s in specs} == {(w, d) for w in g["widths"] for d in g["depths"]}
    w, dp = specs[0].width, specs[0].depth
    expect = in_dim * w + w + (dp - 1) * (w * w + w) + w * out_dim + out_dim
    assert specs[0].params == expect


def test_size_grid_mixes_pairs_and_grid_and_refuses_bad_grids():
    specs = scaling.size_grid(3, 4, widths=[64, 8], depths=[1], pairs=[(16, 3), (8, 1)])
    # deduplicated, sorted by parameters (16x3: 676 > 64x1: 516)
    assert [(s.width, s.depth, s.params) for s in specs] == [(8, 1, 68), (64, 1, 516), (16, 3, 676)]
    with pytest.raises(ValueError, match="at least 5 sizes"):
        scaling.size_grid(3, 4, widths=[8, 16], depths=[1], min_sizes=5)
    with pytest.raises(ValueError, match="span"):
        scaling.size_grid(3, 4, widths=[8, 9, 10, 11, 12], depths=[1], min_span=100)
    with pytest.raises(ValueError, match="widths, depths"):
        scaling.size_grid(3, 4, widths=[8, 16])


# ------------------------------------------------------------------------------------------------
# The diminishing-returns rule on synthetic curves
# ------------------------------------------------------------------------------------------------
P = 1000.0 * 2.0 ** np.arange(7)  # one doubling per size


def test_rising_then_flat_diminishes_from_the_knee():
    r = [0.3, 0.5, 0.7, 0.8, 0.805, 0.808, 0.809]  # gains .2 .2 .1 .005 .003 .001
    out = scaling.diminishing_returns(P, r, threshold=0.01)
    np.testing.assert_allclose(out["gains_per_doubling"], np.diff(r), atol=1e-12)
    assert out["diminishing"] and out["from_index"] == 3 and out["from_params"] == P[3]
    assert not out["falls"] and out["peak_index"] == 6
    assert out["verdict"] == f"diminishing from {P[3]:,.0f} parameters"
    # a stricter threshold moves the knee up; a looser one down
    assert scaling.diminishing_returns(P, r, threshold=0.002)["from_index"] == 5
    assert scaling.diminishing_returns(P, r, threshold=0.15)["from_index"] == 2


def test_gain_is_per_doubling_not_per_step():
    # the same rise over 4 doublings and over 1 doubling: 4x smaller gain per doubling
    out = scaling.diminishing_returns([1e3, 16e3, 32e3], [0.5, 0.54, 0.58])
    np.testing.assert_allclose(out["gains_per_doubling"], [0.01, 0.04])
    assert not out["diminishing"]  # the last step still gains 0.04 per doubling
    out = scaling.diminishing_returns([1e3, 16e3, 32e3], [0.5, 0.54, 0.58], threshold=0.02)
    assert out["from_index"] is None  # the last step is above: earlier slow steps don't count


def test_monotone_rise_never_diminishes():
    r = 0.2 + 0.05 * np.arange(7)  # 0.05 per doubling throughout
    out = scaling.diminishing_returns(P, r, threshold=0.01)
    assert not out["diminishing"] and out["from_index"] is None and not out["falls"]
    assert out["verdict"].startswith("still rising")
    # a constant curve diminishes from the smallest size
    flat = scaling.diminishing_returns(P, np.full(7, 0.9))
    assert flat["from_index"] == 0 and not flat["falls"]


def test_falling_curve_names_the_peak():
    r = [0.5, 0.7, 0.85, 0.9, 0.88, 0.84, 0.8]  # the paper's shape: best in the middle
    out = scaling.diminishing_returns(P, r, threshold=0.01, fall_tolerance=0.01)
    assert out["falls"] and out["peak_index"] == 3 and out["peak_params"] == P[3]
    assert (
        out["from_index"] == 3
        and out["verdict"] == f"falls after the peak at {P[3]:,.0f} parameters"
    )
    # a drop within the tolerance is not a fall
    small = scaling.diminishing_returns(P[:5], [0.5, 0.7, 0.85, 0.9, 0.895], fall_tolerance=0.01)
    assert not small["falls"] and small["from_index"] == 3


def test_rule_validates_inputs_and_reports_standard_errors():
    with pytest.raises(ValueError, match="strictly increasing"):
        scaling.diminishing_returns([1e3, 1e3, 2e3], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="at least 2"):
        scaling.diminishing_returns([1e3], [0.1])
    with pytest.raises(ValueError, match="finite"):
        scaling.diminishing_returns([1e3, 2e3], [0.1, np.nan])
    out = scaling.diminishing_returns([1e3, 4e3], [0.5, 0.6], spread=[0.03, 0.04], counts=[3, 3])
    np.testing.assert_allclose(out["gains_se"], [np.sqrt(0.03**2 / 3 + 0.04**2 / 3) / 2])


# ------------------------------------------------------------------------------------------------
# Records on a tiny problem, written by the script
# ------------------------------------------------------------------------------------------------
def _points(rng, n=160, dim=3):
    x = rng.normal(size=(n, dim))
    y = x[:, 0] + 0.5 * np.sin(2 * x[:, 1]) + 0.1 * rng.normal(size=n)
    return x.astype(np.float32), y.astype(np.float32)


def _script():
    spec = importlib.util.spec_from_file_location(
        "scaling_law", os.path.join(_ROOT, "scripts", "scaling_law.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# 2 sizes x 2 seeds x 20 steps on 160 points, d = 3; 2x1 is narrower than d and skipped. The
# script runs once, in one test (a module fixture would run once per xdist worker), and the checks
# below each look at one aspect of its result.
TINY = {"k": 6, "d": 3, "steps": 20, "batch": 48, "sizes": ["16x1", "2x1", "8x1"], "seeds": [0, 1]}


def _check_files(tmp, out):
    with open(tmp / "t.json") as f:
        saved = json.load(f)
    assert saved["runs"] == json.loads(json.dumps(out["runs"]))  # JSON-serialisable throughout
    assert set(saved) >= {
        "environment",
        "problem",
        "config",
        "exact",
        "runs",
        "summary",
        "analysis",
    }
    assert saved["environment"]["jax"] and saved["analysis"]["r2_cca"]["verdict"]
    assert saved["problem"]["data"] == "mine" and saved["problem"]["k"] == TINY["k"]
    assert (tmp / "t.md").read_text().count("| mlp-") == 2
    assert not (tmp / "t.partial.json").exists()


def _check_records(res):
    runs = res["runs"]
    assert [(r["width"], r["seed"]) for r in runs] == [(8, 0), (8, 1), (16, 0), (16, 1)]
    for r in runs:
        assert r["steps"] == TINY["steps"] and r["batch_size"] == TINY["batch"]
        assert r["d"] == TINY["d"] and r["diverged"] is None and r["objective"] == "svme"
        assert 0.0 <= r["r2_cca"] <= 1.0 + 1e-6 and 0.0 <= r["mutual_knn"] <= 1.0
        assert np.isfinite(r["probe_error"]) and r["knn_k"] == 10
    # the same budget for every size, stated in the config; sizes narrower than d skipped
    assert res["config"]["steps"] == TINY["steps"] and "fixed" in res["config"]["budget"]
    assert res["config"]["skipped"] == ["mlp-w2-d1"] and res["config"]["min_width"] == TINY["d"]
    assert res["config"]["param_span"] == runs[-1]["params"] / runs[0]["params"]
    ex = res["exact"]
    assert ex["d"] == TINY["d"] and ex["self_r2_cca"] == pytest.approx(1.0, abs=1e-4)
    assert np.isfinite(ex["probe_error"])


def _check_summary(res):
    rows = res["summary"]
    assert [r["params"] for r in rows] == sorted({r["params"] for r in res["runs"]})
    for row in rows:
        mine = [r for r in res["runs"] if r["model"] == row["model"]]
        assert row["n"] == 2 and sorted(row["seeds"]) == TINY["seeds"]
        for m in ("r2_cca", "mutual_knn", "probe_error"):
            v = np.array([r[m] for r in mine])
            st = row[m]
            assert st["mean"] == pytest.approx(v.mean()) and st["std"] == pytest.approx(
                v.std(ddof=1)
            )
            assert st["min"] == pytest.approx(v.min()) and st["max"] == pytest.approx(v.max())
            assert st["count"] == 2
    an = res["analysis"]["r2_cca"]
    assert an["models"] == [r["model"] for r in rows]
    assert an["values"] == pytest.approx([r["r2_cca"]["mean"] for r in rows])
    assert scaling.table(res).count("\n| mlp-") == 2 and an["verdict"] in scaling.table(res)


def _check_plot(res, tmp):
    import matplotlib.pyplot as plt

    fig = scaling.plot(res, str(tmp / "s.png"))
    ax1, ax2 = fig.axes[:2]
    assert ax1.get_xscale() == "log" and ax2.get_xscale() == "log"
    # the exact encoder's probe error is a horizontal line on the probe panel
    ys = [tuple(line.get_ydata()) for line in ax2.get_lines()]
    assert (res["exact"]["probe_error"],) * 2 in ys
    assert (tmp / "s.png").stat().st_size > 1000
    plt.close(fig)


def _check_mutual_knn(res, tmp):
    """The record's mutual kNN is evaluation.mutual_knn between learned and exact, held out."""
    from flax import nnx

    from jaxcontext import datasets, evaluation, training

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", contexts.ContextWarning)
        prob = bridge.problem(
            datasets.from_npz(tmp / "mine.npz", standardize=True),
            context="knn",
            k=TINY["k"],
            seed=0,
        )
    ref = bridge.exact(prob, TINY["d"], key=0)
    rec = res["runs"][0]
    spec = scaling.size_grid(prob.x.shape[1], TINY["d"], pairs=[(rec["width"], rec["depth"])])[0]
    enc = training.fit(
        spec.make(nnx.Rngs(rec["seed"])),
        prob.context,
        objective="svme",
        steps=TINY["steps"],
        batch_size=TINY["batch"],
        key=rec["seed"],
        progress=False,
        log_every=250,
        optimizer=training.default_optimizer(TINY["steps"], learning_rate=2e-3),
    ).encoder
    f = np.asarray(enc(prob.x_test))
    assert rec["mutual_knn"] == pytest.approx(float(evaluation.mutual_knn(f, ref.mu_test, k=10)))
    assert rec["r2_cca"] == pytest.approx(float(evaluation.cca(f, ref.mu_test).r2), abs=1e-5)


def test_script_records_summary_files_and_plot(tmp_path):
    x, y = _points(np.random.default_rng(11))
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    out = _script().main(
        [
            "--npz",
            str(tmp_path / "mine.npz"),
            "--k",
            str(TINY["k"]),
            "--d",
            str(TINY["d"]),
            "--sizes",
            *TINY["sizes"],
            "--seeds",
            *map(str, TINY["seeds"]),
            "--steps",
            str(TINY["steps"]),
            "--batch",
            str(TINY["batch"]),
            "--min-sizes",
            "2",
            "--min-span",
            "1",
            "--no-plot",
            "--out",
            str(tmp_path),
            "--tag",
            "t",
        ]
    )
    _check_files(tmp_path, out)
    _check_records(out)
    _check_summary(out)
    _check_mutual_knn(out, tmp_path)
    if importlib.util.find_spec("matplotlib") is not None:
        _check_plot(out, tmp_path)
    # the script refuses a grid below the requested size and span by default, counting only the
    # sizes at least d wide (d = 32 by default)
    with pytest.raises(ValueError, match="at least 5 sizes"):
        _script().main(
            [
                "--npz",
                str(tmp_path / "mine.npz"),
                "--sizes",
                "8x1",
                "16x1",
                "32x1",
                "64x1",
                "128x1",
                "--steps",
                "5",
                "--no-plot",
                "--out",
                str(tmp_path),
            ]
        )
    with pytest.raises(ValueError, match="span"):
        _script().main(
            [
                "--npz",
                str(tmp_path / "mine.npz"),
                "--widths",
                *map(str, range(32, 37)),
                "--depths",
                "1",
                "--steps",
                "5",
                "--no-plot",
                "--out",
                str(tmp_path),
            ]
        )


def test_known_problem_uses_the_analytic_hermite_reference():
    from jaxcontext import datasets

    kp = scaling.gaussian_noise_problem(300, 2, 0.6, m_test=80, key=3)
    ref = scaling.analytic_reference(kp, 5)
    np.testing.assert_allclose(
        ref.mu_test, datasets.hermite_functions(kp.problem.x_test, 6)[:, 1:], rtol=1e-5, atol=1e-5
    )
    assert ref.record["s"] == pytest.approx([0.6, 0.6, 0.36, 0.36, 0.36])
    assert ref.record["self_r2_cca"] == pytest.approx(1.0, abs=1e-5)
    # the target is mostly explained by degrees 1-2: the exact encoder's probe beats raw features
    assert ref.record["probe_error"] < ref.record["raw_features_probe_error"]
    with pytest.raises(ValueError, match="splits a level"):
        scaling.analytic_reference(kp, 4)
