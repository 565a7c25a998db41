"""jaxcontext.workflows.mixing and scripts/mixing.py: mixing strong and weak contexts."""

from __future__ import annotations

import functools
import importlib.util
import json
import pathlib
import pickle
import sys

import numpy as np
import pytest
from _subproc import once_per_session

from jaxcontext import datasets as D
from jaxcontext.workflows import mixing as X

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "mixing.py"


# ------------------------------------------------------------------------------------------------
# Known spectra on the hypercube, checked against float64 numpy built independently
# ------------------------------------------------------------------------------------------------
def _flips(dim, p):
    q = np.array([[1 - p, p], [p, 1 - p]])
    return functools.reduce(np.kron, [q] * dim)  # states in the hypercube's bit order


def _normalised_svals(P):
    w = np.full(P.shape[0], 1.0 / P.shape[0])
    pa = w @ P
    keep = pa > 0
    Z = np.sqrt(w)[:, None] * P[:, keep] / np.sqrt(pa[keep])[None, :]
    return np.linalg.svd(Z, compute_uv=False)[1:]  # the trivial s_0 = 1 left out


def test_known_spectra_match_independent_float64():
    dim, ps, pw, lam = 4, 0.1, 0.3, 0.25
    res = X.known_spectra(dim=dim, p_strong=ps, p_weak=pw, weight=lam, d0=8)
    by = {c["label"]: c for c in res["contexts"]}
    P1, P2 = _flips(dim, ps), _flips(dim, pw)
    khatri_rao = np.einsum("ia,ib->iab", P2, P2).reshape(2**dim, -1)
    independent = {
        "strong": D.hypercube_spectrum(dim, ps).expand()[1:],
        "weak": D.hypercube_spectrum(dim, pw).expand()[1:],
        # flipping twice with p is flipping once with 2 p (1 - p)
        "conv(strong,strong)": D.hypercube_spectrum(dim, 2 * ps * (1 - ps)).expand()[1:],
        "comb(strong,weak)": _normalised_svals(lam * P1 + (1 - lam) * P2),
        "concat(weak,weak)": _normalised_svals(khatri_rao),
    }
    for label, ref in independent.items():
        c = by[label]
        assert len(c["s"]) == 2**dim - 1
        np.testing.assert_allclose(c["s"], ref, atol=2e-6, err_msg=label)
        np.testing.assert_allclose(c["expected"], ref, atol=1e-12, err_msg=label)
        assert c["max_abs_error"] < 2e-6
    # mixing moves the spectrum the way the thesis says: convolution weakens, concatenation
    # strengthens, a convex combination lies between its parts
    s = {k: np.asarray(v["s"]) for k, v in by.items()}
    assert np.all(s["conv(strong,strong)"] < s["strong"])
    assert np.all(s["concat(weak,weak)"] > s["weak"])
    assert np.all(s["weak"] < s["comb(strong,weak)"])
    assert np.all(s["comb(strong,weak)"] < s["strong"])
    assert by["concat(weak,weak)"]["context_shape"] == [16, 256]


# ------------------------------------------------------------------------------------------------
# Outcomes from records
# ------------------------------------------------------------------------------------------------
def test_outcomes_logic():
    plan = [
        X.MixSpec("a", "strong", "knn", 2),
        X.MixSpec("b", "weak", "knn", 50),
        X.MixSpec("conv(a,a)", "mix", "convolve", None, ("a", "a")),
        X.MixSpec("comb(a,b)", "mix", "combine", (0.5, 0.5), ("a", "b")),
    ]
    recs = [
        {"label": "a", "tau": 5.0, "argmin_d": 64, "probe_error": 0.3, "probe_error_at_tau_d": 0.3},
        {"label": "b", "tau": 1.5, "argmin_d": 1, "probe_error": 0.2, "probe_error_at_tau_d": 0.9},
        {
            "label": "conv(a,a)",
            "tau": 3.0,
            "argmin_d": 40,
            "probe_error": 0.25,
            "probe_error_at_tau_d": 0.28,
        },
        {
            "label": "comb(a,b)",
            "tau": 2.0,
            "argmin_d": 10,
            "probe_error": 0.15,
            "probe_error_at_tau_d": 0.35,
        },
    ]
    oc = {o["mix"]: o for o in X.outcomes(recs, plan)}
    assert set(oc) == {"conv(a,a)", "comb(a,b)"}
    conv, comb = oc["conv(a,a)"], oc["comb(a,b)"]
    assert conv["parts"] == ["a"] and conv["beats_all_parts"] and conv["beats_all_parts_at_tau_d"]
    assert conv["margin"] == pytest.approx(0.05)
    assert comb["beats_all_parts"] and comb["best_part"] == "b"
    assert comb["margin"] == pytest.approx(0.05)
    assert not comb["beats_all_parts_at_tau_d"] and comb["best_part_at_tau_d"] == "a"
    assert comb["part_tau"] == {"a": 5.0, "b": 1.5}
    summary = X._summary(
        {
            "dataset": {"name": "t"},
            "outcomes": list(oc.values()),
            "records": [dict(r, settings={"role": "x"}) for r in recs],
        }
    )
    assert summary["accepted"] and summary["beat_all_parts"] == ["conv(a,a)", "comb(a,b)"]
    # a mix that loses to a part: no acceptance, and the reason names the part
    recs[3]["probe_error"] = 0.22
    recs[2]["probe_error"] = 0.31
    oc = X.outcomes(recs, plan)
    summary = X._summary(
        {
            "dataset": {"name": "t"},
            "outcomes": oc,
            "records": [dict(r, settings={"role": "x"}) for r in recs],
        }
    )
    assert not summary["accepted"] and len(summary["why_not"]) == 2
    assert "its best part b has error 0.2000" in summary["why_not"][1]


# ------------------------------------------------------------------------------------------------
# The script on a tiny setting (one run; the tests below read its output)
# ------------------------------------------------------------------------------------------------
def test_plan_order_is_checked():
    plan = [X.MixSpec("conv(a,a)", "mix", "convolve", None, ("a", "a"))]
    with pytest.raises(ValueError, match="must come earlier"):
        X.build(plan[0], np.zeros((5, 2)), {}, gamma_scale=1.0, key=None)
    labels = [p.label for p in X.default_plan(800)]
    assert labels[:4] == ["knn-k2", "rbf-g5x", "knn-k100", "rbf-g0.03x"]
    assert len(labels) == len(set(labels)) == 14
    small = [p.label for p in X.default_plan(800, kinds=["combine"], references=False)]
    assert small == [
        "knn-k2",
        "rbf-g5x",
        "knn-k100",
        "rbf-g0.03x",
        "comb(knn-k2,knn-k100)",
        "comb(rbf-g5x,rbf-g0.03x)",
    ]


def _run_script(out_dir):
    spec = importlib.util.spec_from_file_location("mixing_script", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        # the hypercube of the test above (dim 4): its compiled programs are reused
        out = mod.main(
            [
                "--datasets",
                "digits",
                "--max-rows",
                "200",
                "--d0",
                "4",
                "--known-dim",
                "4",
                "--half-k",
                "5",
                "--kinds",
                "convolve",
                "concat",
                "--no-references",
                "--out",
                str(out_dir),
                "--tag",
                "t",
            ]
        )
    finally:
        sys.modules.pop(spec.name, None)
    (out_dir / "out.pickle").write_bytes(pickle.dumps(out))


@pytest.fixture(scope="module")
def script_run(tmp_path_factory):
    """The script's result and output folder: run once per session, in one test process (its two
    tests may land on different xdist workers: see tests/_subproc.once_per_session)."""
    pytest.importorskip("matplotlib")
    out_dir = once_per_session(tmp_path_factory, "test_workflows_mixing-script", _run_script)
    return pickle.loads((out_dir / "out.pickle").read_bytes()), out_dir


def test_script_writes_json_markdown_and_plot(script_run):
    out, out_dir = script_run
    data = json.loads((out_dir / "t.json").read_text())
    assert data["environment"]["dtype"] == "float32"
    assert data["known"]["dim"] == 4 and len(data["known"]["contexts"]) == 5
    assert all(c["max_abs_error"] < 2e-6 for c in data["known"]["contexts"])
    (d,) = data["datasets"]
    assert [r["label"] for r in d["records"]] == [
        "knn-k2",
        "rbf-g5x",
        "half-a-k5",
        "half-b-k5",
        "conv(knn-k2,knn-k2)",
        "conv(rbf-g5x,rbf-g5x)",
        "conv(knn-k2,rbf-g5x)",
        "concat(half-a-k5,half-b-k5)",
    ]
    assert len(d["outcomes"]) == 4
    assert d["dataset"]["train_rows"] == 160 and d["dataset"]["rows_total"] == 1797
    assert data["summary"][0]["accepted"] == out["summary"][0]["accepted"]
    assert data["settings"]["plan_options"]["kinds"] == ["convolve", "concat"]
    assert "Known spectra" in (out_dir / "t.md").read_text()
    assert (out_dir / "t-digits.png").stat().st_size > 1000


def test_records_and_spectral_invariants(script_run):
    out, _ = script_run
    (d,) = out["datasets"]
    recs = {r["label"]: r for r in d["records"]}
    assert recs["conv(knn-k2,knn-k2)"]["context_shape"] == [160, 160]
    assert recs["concat(half-a-k5,half-b-k5)"]["context_shape"][1] > 160
    assert recs["half-a-k5"]["settings"] == {
        "role": "partial",
        "kind": "half_knn",
        "k": 5,
        "mask_seed": 1,
        "mask_ratio": 0.5,
    }
    s = {k: np.asarray(r["spectrum"]["s"]) for k, r in recs.items()}
    for k, v in s.items():
        assert v.size == 5 and np.all(np.diff(v) <= 1e-6) and v.max() <= 1 + 1e-5, k
    # theory: the deflated operator of P1 P2 is Z1 Z2' with |Z2'| <= 1, so s_i(conv) <= s_i(P1);
    # A_1 is a function of (A_1, A_2), so s_i(concat) >= s_i of each part
    assert np.all(s["conv(knn-k2,knn-k2)"] <= s["knn-k2"] + 1e-5)
    assert np.all(s["conv(rbf-g5x,rbf-g5x)"] <= s["rbf-g5x"] + 1e-5)
    assert np.all(
        s["concat(half-a-k5,half-b-k5)"] >= np.maximum(s["half-a-k5"], s["half-b-k5"]) - 1e-5
    )
    for o in d["outcomes"]:
        errs = [recs[p]["probe_error"] for p in o["parts"]]
        assert o["beats_all_parts"] == all(recs[o["mix"]]["probe_error"] < e for e in errs)
        assert o["margin"] == pytest.approx(min(errs) - recs[o["mix"]]["probe_error"])
    (summary,) = out["summary"]
    assert summary["mixes"] == 4 and summary["accepted"] == bool(summary["beat_all_parts"])
    assert "best_reference" not in summary  # --no-references
    assert "concat(half-a-k5,half-b-k5)" in X.table(out)
