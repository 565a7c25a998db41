"""jaxcontext.bridge: exact contexture beside learned encoders, as JSON-serialisable records."""

import json
import warnings

import jax
import numpy as np
import pytest

from jaxcontext import bridge, contexts, evaluation


def _points(rng, n=240, dim=3):
    x = rng.normal(size=(n, dim))
    y = x[:, 0] + 0.5 * np.sin(2 * x[:, 1]) + 0.1 * rng.normal(size=n)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.fixture
def small(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", contexts.ContextWarning)
        prob = bridge.problem(_points(rng), context="knn", k=8, test_fraction=0.25, seed=1)
    return prob, bridge.exact(prob, 4, key=0)


def test_problem_split_is_disjoint_and_complete(rng):
    x, y = _points(rng, n=101)
    prob = bridge.problem((x, y), context="knn", k=5, test_fraction=0.2, seed=3)
    assert prob.x.shape == (81, 3) and prob.x_test.shape == (20, 3)
    rows = np.concatenate([prob.x, prob.x_test])
    # every row used exactly once: the split is a permutation of the data
    order = np.lexsort(rows.T)
    np.testing.assert_array_equal(rows[order], x[np.lexsort(x.T)])
    np.testing.assert_array_equal(np.concatenate([prob.y, prob.y_test])[order], y[np.lexsort(x.T)])
    assert prob.context.num_samples == 81 and prob.info["k"] == 5
    with pytest.raises(ValueError, match="context"):
        bridge.problem((x, y), context="labels")
    with pytest.raises(ValueError, match="test_fraction"):
        bridge.problem((x, y), test_fraction=1.0)


def test_rbf_problem_default_gamma_is_sklearn_scale(rng):
    x, y = _points(rng, n=80)
    prob = bridge.problem((x, y), context="rbf", test_fraction=0.25, seed=0)
    assert prob.info["gamma"] == pytest.approx(1.0 / (3 * np.var(prob.x.astype(np.float64))))


def test_exact_against_itself_scores_one(small):
    prob, ref = small
    rec = ref.record
    assert rec["self_r2_cca"] == pytest.approx(1.0, abs=1e-5)
    assert rec["self_subspace_distance"] < 1e-5
    assert rec["d"] == 4 and len(rec["s"]) == 4 and rec["converged"]
    assert ref.mu_test.shape == (prob.x_test.shape[0], 4)
    # the out-of-sample extension, not the sample values, is what encoders are measured against
    np.testing.assert_allclose(
        ref.mu_test, ref.contexture.evaluate(prob.x_test), rtol=1e-5, atol=1e-5
    )
    # the same measure scores an encoder of the reference's span (any invertible map) as 1
    mix = np.random.default_rng(0).normal(size=(4, 4)) + 3 * np.eye(4)
    out = bridge.assess(
        prob, ref, np.asarray(ref.mu) @ mix + 2.0, np.asarray(ref.mu_test) @ mix + 2.0, key=0
    )
    assert out["r2_cca"] == pytest.approx(1.0, abs=1e-5)
    assert out["r2_cca_train"] == pytest.approx(1.0, abs=1e-5)
    assert out["probe_error"] == pytest.approx(rec["probe_error"], rel=1e-3)


def test_assess_uses_held_out_rows_and_probe(small, rng):
    prob, ref = small
    noise_tr = rng.normal(size=(prob.x.shape[0], 4))
    noise_te = rng.normal(size=(prob.x_test.shape[0], 4))
    out = bridge.assess(prob, ref, noise_tr, noise_te, key=0)
    assert out["r2_cca"] < 0.5 and out["r2_cca_train"] < 0.5
    assert out["subspace_distance"] == pytest.approx(1 - out["r2_cca"], abs=1e-5)
    direct = evaluation.ridge_probe(noise_tr, prob.y, noise_te, prob.y_test, key=0)
    assert out["probe_error"] == pytest.approx(direct.test["rel_mse"])
    assert out["probe_metric"] == "rel_mse"


def test_model_sizes_sorted_by_params():
    specs = bridge.model_sizes(3, 4, [(64, 2), (8, 1)], widths=[16], depths=[1, 3])
    assert [(s.width, s.depth) for s in specs] == [(8, 1), (16, 1), (16, 3), (64, 2)]
    assert [s.params for s in specs] == sorted(s.params for s in specs)
    assert specs[0].params == 3 * 8 + 8 + 8 * 4 + 4
    with pytest.raises(ValueError, match="sizes"):
        bridge.model_sizes(3, 4)


RUN_FIELDS = {
    "objective",
    "model",
    "width",
    "depth",
    "params",
    "seed",
    "steps",
    "batch_size",
    "d",
    "learning_rate",
    "r2_cca",
    "subspace_distance",
    "r2_cca_train",
    "probe_error",
    "train_s",
    "compile_s",
    "wall_s",
    "final_loss",
    "diverged",
    "dtype",
    "rank",
}


def test_compare_records_fields_and_json(small):
    prob, ref = small
    seen = []
    out = bridge.compare(
        prob,
        d=4,
        objectives=["kise"],
        sizes=[(16, 1), (32, 1)],
        seeds=[0],
        steps=30,
        batch_size=64,
        reference=ref,
        eval_every=15,
        on_record=seen.append,
    )
    assert len(out["runs"]) == 2 and seen[0] is out["exact"] and seen[1:] == out["runs"]
    for r in out["runs"]:
        assert RUN_FIELDS <= set(r), RUN_FIELDS - set(r)
        assert r["objective"] == "kise" and r["diverged"] is None and r["d"] == 4
        assert 0.0 <= r["r2_cca"] <= 1.0 + 1e-6
        assert r["r2_cca"] + r["subspace_distance"] == pytest.approx(1.0, abs=1e-5)
        assert r["curve"]["step"] == [0, 15, 30]
        # the last point of the in-training curve is the final encoder on the same held-out rows
        assert r["curve"]["r2_cca"][-1] == pytest.approx(r["r2_cca"], abs=1e-4)
    assert [r["width"] for r in out["runs"]] == [16, 32]
    assert out["runs"][0]["params"] < out["runs"][1]["params"]
    json.loads(json.dumps(out, allow_nan=False))
    rows = out["summary"]
    assert {r["model"] for r in rows} == {"mlp-w16-d1", "mlp-w32-d1"}
    assert rows[0]["r2_cca"]["mean"] >= rows[1]["r2_cca"]["mean"]
    assert bridge.best(rows) is rows[0]


def test_training_improves_alignment(small):
    """A trained encoder is closer to the contexture than its own initialisation."""
    prob, ref = small
    rec = bridge.train(
        prob,
        ref,
        objective="svme",
        seed=0,
        steps=150,
        batch_size=96,
        spec=bridge.model_sizes(3, 4, [(32, 2)])[0],
        eval_every=150,
        learning_rate=3e-3,
    )
    r0, r1 = rec["curve"]["r2_cca"]
    assert r1 > r0 + 0.05 and r1 > 0.6


def test_summarize_spread_over_seeds():
    runs = [
        {
            "objective": "svme",
            "model": "m",
            "width": 8,
            "depth": 1,
            "params": 10,
            "seed": s,
            "r2_cca": v,
            "diverged": None,
        }
        for s, v in enumerate([0.8, 0.9, 1.0])
    ]
    runs.append({**runs[0], "seed": 9, "r2_cca": float("nan"), "diverged": 3})
    # a diverged run measured at its last finite parameters stays out of the statistics too
    runs.append({**runs[0], "seed": 10, "r2_cca": 0.1, "diverged": 40})
    runs.append({**runs[0], "seed": 11, "r2_cca": float("nan")})  # a NaN measure alone
    (row,) = bridge.summarize(runs)
    assert row["n"] == 6 and row["diverged"] == 2
    want = {"mean": 0.9, "std": 0.1, "min": 0.8, "max": 1.0, "count": 3}
    assert row["r2_cca"] == pytest.approx(want)


def test_float64_kept(x64, rng):
    x, y = _points(rng, n=160)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", contexts.ContextWarning)
        prob = bridge.problem(
            (x.astype(np.float64), y.astype(np.float64)), context="knn", k=6, seed=0
        )
    ref = bridge.exact(prob, 3, key=0)
    assert ref.record["dtype"] == "float64" and ref.mu_test.dtype == np.float64
    out = bridge.compare(
        prob,
        d=3,
        objectives=["nested_sequential"],
        sizes=[(16, 1)],
        seeds=[0],
        steps=10,
        batch_size=32,
        reference=ref,
    )
    assert out["runs"][0]["dtype"] == "float64" and out["problem"]["dtype"] == "float64"


def test_environment_fields():
    env = bridge.environment()
    assert {"date", "jax", "device", "dtype", "command", "backend"} <= set(env)
    assert env["jax"] == jax.__version__


def test_table_lists_exact_and_every_configuration(small):
    prob, ref = small
    runs = [
        {
            "objective": "svme",
            "model": f"mlp-w{w}-d1",
            "width": w,
            "depth": 1,
            "params": w,
            "seed": 0,
            "r2_cca": 0.5,
            "diverged": None,
        }
        for w in (8, 16)
    ]
    res = {"exact": ref.record, "summary": bridge.summarize(runs)}
    lines = bridge.table(res).splitlines()
    assert len(lines) == 2 + 1 + 2
    assert "exact contexture (d = 4)" in lines[2] and "1.000 (itself)" in lines[2]
    assert "mlp-w8-d1" in bridge.table(res) and "0.500 +- 0.000" in lines[3]


def test_parse_size_reads_width_x_depth_and_refuses_bad_input():
    assert bridge.parse_size("256x3") == (256, 3)
    assert bridge.parse_size(" 64X0 ") == (64, 0)  # case and spaces; depth 0 is a linear map
    for bad in ("abc", "256", "256x", "x3", "1x2x3", "2.5x3", "", "256 by 3"):
        with pytest.raises(ValueError, match=r"expected an encoder size WIDTHxDEPTH"):
            bridge.parse_size(bad)
    for bad in ("0x2", "4x-1"):
        with pytest.raises(ValueError, match=r"width must be >= 1 and the depth >= 0"):
            bridge.parse_size(bad)


def test_override_replaces_only_the_values_given():
    preset = {"steps": 600, "seeds": [0, 1, 2], "sizes": ["64x2"]}
    out = bridge.override(preset, steps=None, seeds=[7], sizes=None)
    assert out == {"steps": 600, "seeds": [7], "sizes": ["64x2"]}
    assert preset["seeds"] == [0, 1, 2]  # the preset is left as it was
    with pytest.raises(ValueError, match=r"\['batch'\] not in the preset"):
        bridge.override(preset, batch=512)  # a misspelt flag does not pass silently
