"""Row sharding (jaxcontext._sharding): products on 1 device and on 4 forced CPU devices.

The 4-device checks (products and svds) run in one subprocess (tests/_subproc.py), once per test
session, that rebuilds the same operators from the same arrays with :func:`make_cases`, shards them,
and returns the products, the shardings of the results and the svds solutions; the tests here
compare them with float64 numpy and with one device.
"""

import json
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from _subproc import once_per_session, run_python

from jaxcontext import kernels
from jaxcontext import operators as ops
from jaxcontext._sharding import RowShardedOperator, row_mesh, shard_block, shard_rows

RTOL = 1e-5
K = 3  # block width


def rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _random_sparse(rng, m, n, density, empty_rows):
    s = sp.random(m, n, density=density, random_state=rng, format="lil", dtype=np.float64)
    for i in empty_rows:
        s[i, :] = 0
    s = s.tocsr().astype(np.float32).astype(np.float64)
    s.eliminate_zeros()
    return s


def make_data(rng):
    """Host arrays (float32 values) from which :func:`make_cases` builds every operator."""
    f32 = np.float32
    s40 = _random_sparse(rng, 40, 40, 0.15, empty_rows=[0, 7, 39])
    # 37 rows on 4 devices: blocks of 10, the last one has 7 real rows, all of them empty here
    s37 = _random_sparse(rng, 37, 29, 0.2, empty_rows=[0, *range(30, 37)])
    data = {
        "a40": rng.standard_normal((40, 24)).astype(f32),
        "a37": rng.standard_normal((37, 29)).astype(f32),
        "b": rng.standard_normal((29, 11)).astype(f32),
        "x40": rng.standard_normal((40, 3)).astype(f32),
        "y24": rng.standard_normal((24, 3)).astype(f32),
        "x37": rng.standard_normal((37, 3)).astype(f32),
        "y29": rng.standard_normal((29, 3)).astype(f32),
        "d40": rng.uniform(0.5, 2.0, 40).astype(f32),
        "e40": rng.uniform(0.5, 2.0, 40).astype(f32),
        "d37": rng.uniform(0.5, 2.0, 37).astype(f32),
        "d29": rng.uniform(0.5, 2.0, 29).astype(f32),
    }
    for name, s in (("s40", s40), ("s37", s37)):
        coo = s.tocoo()
        data[f"{name}_ijv"] = np.stack([coo.row, coo.col, coo.data]).astype(np.float64)
        data[f"{name}_shape"] = np.array(s.shape)
    return data


def _sparse(data, name):
    i, j, v = data[f"{name}_ijv"]
    shape = tuple(int(t) for t in data[f"{name}_shape"])
    mat = sp.coo_matrix((v, (i.astype(np.int64), j.astype(np.int64))), shape=shape).tocsr()
    return ops.sparse_from_scipy(mat), mat.toarray()


def _rbf(x, y, gamma):
    d2 = ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)
    return np.exp(-gamma * d2)


def make_cases(data):
    """``(name, operator, float64 dense reference)`` for every supported kind and composition."""
    d = {k: np.asarray(v) for k, v in data.items()}
    f64 = {k: v.astype(np.float64) for k, v in d.items()}
    S40, s40 = _sparse(d, "s40")
    S37, s37 = _sparse(d, "s37")
    A40, A37 = ops.dense(d["a40"]), ops.dense(d["a37"])
    K40 = ops.kernel_operator(d["x40"], d["y24"], kernels.RBF(0.7), block_rows=4)
    K37 = ops.kernel_operator(d["x37"], d["y29"], kernels.RBF(0.7), block_rows=4)
    k40, k37 = _rbf(d["x40"], d["y24"], 0.7), _rbf(d["x37"], d["y29"], 0.7)
    D40, D37 = np.diag(f64["d40"]), np.diag(f64["d37"])
    S37_segment = ops.sparse_from_scipy(sp.csr_matrix(s37), kernel="segment")
    return [
        ("dense40", A40, f64["a40"]),
        ("dense37", A37, f64["a37"]),
        ("sparse40", S40, s40),
        ("sparse37", S37, s37),
        ("sparse37-segment", S37_segment, s37),
        ("kernel40", K40, k40),
        ("kernel37", K37, k37),
        ("diag40", ops.diag(d["d40"]), D40),
        ("diag37", ops.diag(d["d37"]), D37),
        (
            "context40",
            ops.diag(d["d40"]) @ S40 @ ops.diag(d["e40"]),
            D40 @ s40 @ np.diag(f64["e40"]),
        ),
        (
            "context37",
            ops.diag(d["d37"]) @ S37 @ ops.diag(d["d29"]),
            D37 @ s37 @ np.diag(f64["d29"]),
        ),
        ("transpose", S37.T, s37.T),
        ("lazy-transpose", ops.TransposedOperator(A37), f64["a37"].T),
        ("kernel-transpose", ops.TransposedOperator(K37), k37.T),
        ("sum", 0.3 * S37 + 0.7 * K37, 0.3 * s37 + 0.7 * k37),
        ("difference", A37 - S37, f64["a37"] - s37),
        ("hstack", ops.hstack([S37, K37, A37]), np.hstack([s37, k37, f64["a37"]])),
        ("diag-plus-sparse", ops.diag(d["d40"]) + S40, D40 + s40),
        ("product-dense", A37 @ ops.dense(d["b"]), f64["a37"] @ f64["b"]),
        (
            "sum-of-contexts",  # like a masked-RBF context: a convex mix of diag @ kernel terms
            ops.weighted_sum(
                [ops.diag(d["d37"]) @ K37, ops.diag(d["d37"]) @ S37 @ ops.diag(d["d29"])],
                [0.25, 0.75],
            ),
            0.25 * D37 @ k37 + 0.75 * D37 @ s37 @ np.diag(f64["d29"]),
        ),
    ]


# --------------------------------------------------------------------------------------------------
# One device (this process)
# --------------------------------------------------------------------------------------------------
CASE_NAMES = [c[0] for c in make_cases(make_data(np.random.default_rng(0)))]


# the "40" cases differ from the "37" ones only on several devices (even vs padded row blocks)
@pytest.mark.parametrize("name", [n for n in CASE_NAMES if "40" not in n])
def test_one_device_products_match_float64(rng, name):
    (case,) = [c for c in make_cases(make_data(rng)) if c[0] == name]
    _, op, ref = case
    A = shard_rows(op)
    m, n = ref.shape
    x = rng.standard_normal((n, K)).astype(np.float32)
    y = rng.standard_normal((m, K)).astype(np.float32)
    assert A.shape == (m, n)
    assert rel_err(A.matmat(x), ref @ x) < RTOL
    assert rel_err(A.T.matmat(y), ref.T @ y) < RTOL


def test_structure_of_sharded_compositions(rng):
    cases = dict((c[0], c[1]) for c in make_cases(make_data(rng)))
    assert shard_rows(cases["dense40"]).kind == "rows"
    assert shard_rows(cases["diag40"]).kind == "blockdiag"
    # leaves and sums / stacks of leaves become one sharded operator (one gather per product)
    for name in ("sum", "difference", "hstack", "transpose", "kernel-transpose", "lazy-transpose"):
        assert isinstance(shard_rows(cases[name]), RowShardedOperator), name
    # diag @ B @ diag (a context operator) and sums of them: one sharded operator too
    for name in ("context40", "context37", "sum-of-contexts"):
        assert isinstance(shard_rows(cases[name]), RowShardedOperator), name
    # other products keep their structure, with every factor sharded
    prod = shard_rows(cases["product-dense"])
    assert isinstance(prod, ops.ProductOperator)
    assert [o.kind for o in prod.ops] == ["rows", "rows"]
    dd = shard_rows(ops.diag(np.ones(5)) @ ops.diag(np.ones(5)))
    assert [o.kind for o in dd.ops] == ["blockdiag", "blockdiag"]
    mixed = shard_rows(cases["diag-plus-sparse"])
    assert isinstance(mixed, ops.SumOperator)
    assert all(isinstance(o, RowShardedOperator) for o in mixed.ops)
    # sharding an already sharded operator is a no-op
    A = shard_rows(cases["dense40"])
    assert shard_rows(A) is A


def test_sharded_operator_is_a_pytree(rng):
    A = shard_rows(ops.dense(rng.standard_normal((8, 5))))
    leaves, treedef = jax.tree.flatten(A)
    B = jax.tree.unflatten(treedef, leaves)
    assert isinstance(B, RowShardedOperator) and B.shape == (8, 5)
    x = rng.standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_allclose(B.matmat(x), A.matmat(x), rtol=1e-6)


def test_rebuilt_sharded_operator_does_not_retrace(rng):
    import chex

    a = rng.standard_normal((12, 5)).astype(np.float32)
    s = _random_sparse(rng, 12, 5, 0.4, empty_rows=[2])
    x = rng.standard_normal((5, 2)).astype(np.float32)
    for build, ref in ((lambda: ops.dense(a), a), (lambda: ops.sparse_from_scipy(s), s.toarray())):
        chex.clear_trace_counter()  # chex counts traces per source text; this loop reuses one
        f = jax.jit(chex.assert_max_traces(lambda A, v: A.matmat(v), n=1))
        f(shard_rows(build()), x)
        # a second, separately built operator with the same structure reuses the compilation
        out = f(shard_rows(build()), x + 1.0)
        assert rel_err(out, ref @ (x + 1.0)) < RTOL


class _Custom(ops.LinearOperator):
    shape = (3, 3)
    dtype = np.dtype(np.float32)


def test_bad_input_raises_clear_errors(rng):
    with pytest.raises(TypeError, match="cannot shard a _Custom"):
        shard_rows(_Custom())
    with pytest.raises(ValueError, match="axis: 'cols' is not a mesh axis"):
        shard_rows(ops.dense(np.ones((4, 4))), row_mesh(), axis="cols")
    with pytest.raises(TypeError, match="mesh: expected a jax.sharding.Mesh"):
        shard_rows(ops.dense(np.ones((4, 4))), mesh="rows")
    with pytest.raises(ValueError, match="pass a mesh to shard over several axes"):
        shard_rows(ops.dense(np.ones((4, 4))), axis=("a", "b"))
    with pytest.raises(TypeError, match="traced value; build the sharded operator outside jit"):
        jax.jit(lambda a: shard_rows(ops.dense(a)).matmat(jnp.ones((4, 1))))(jnp.ones((4, 4)))
    A = shard_rows(ops.dense(np.ones((4, 4))))
    with pytest.raises(ValueError, match="already sharded over a different mesh"):
        shard_rows(A, row_mesh(axis="other"), axis="other")
    with pytest.raises(ValueError, match=r"operand has shape \(3, 2\)"):
        A.matmat(np.ones((3, 2)))
    with pytest.raises(ValueError, match="x: empty input"):
        shard_block(np.ones((0, 2)))
    with pytest.raises(ValueError, match="x: expected an array with ndim"):
        shard_block(np.ones((2, 2, 2)))


# --------------------------------------------------------------------------------------------------
# Four forced CPU devices (one subprocess for all checks, products and svds)
# --------------------------------------------------------------------------------------------------
EXTRA = ("dense40", "sparse37", "kernel40", "context40")  # also vectors, row-sharded operands
_FOUR_DEVICES = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh
sys.path.insert(0, "tests")
from test_sharding import make_cases
from jaxcontext import operators as ops
from jaxcontext._sharding import shard_block, shard_rows

from test_sharding import EXTRA
assert len(jax.devices()) == 4, jax.devices()
data = dict(np.load(FOLDER + "/in.npz"))
out, info = {}, {}

def shards(a):
    s = a.sharding
    rows = sorted((sh.index[0].start or 0, sh.index[0].stop or a.shape[0], sh.device.id)
                  for sh in a.addressable_shards)
    spec = [list(e) if isinstance(e, tuple) else e for e in getattr(s, "spec", [None])]
    return {"spec": spec, "rows": rows}

both_j = jax.jit(lambda A, X, Y: (A.matmat(X), A.rmatmat(Y)))
mm_j = jax.jit(lambda A, X: A.matmat(X))
rm_j = jax.jit(lambda A, Y: A.rmatmat(Y))
for name, op, _ in make_cases(data):
    A = shard_rows(op)
    X, Y = data["X/" + name], data["Y/" + name]
    res = {"mm": A.matmat(X), "rm": A.rmatmat(Y)}
    res["mmj"], res["rmj"] = both_j(A, X, Y)
    if name in EXTRA:  # vectors and row-sharded operands (each a new compilation)
        res["mv"], res["rmv"] = A.matvec(X[:, 0]), A.rmatvec(Y[:, 0])
        res["mm_sharded_in"] = A.matmat(shard_block(X))
        res["rm_sharded_in"] = rm_j(A, shard_block(Y))
    info[name] = {k: shards(v) for k, v in res.items()}
    out.update({f"{name}/{k}": np.asarray(v) for k, v in res.items()})

# a solver-like loop under jit: (A^T A)^3 X with the blocks sharded throughout
ctx = [c for c in make_cases(data) if c[0] == "context40"][0][1]
A = shard_rows(ctx)
power = jax.jit(lambda A, X: jax.lax.fori_loop(0, 3, lambda i, Z: A.rmatmat(A.matmat(Z)), X))
res = power(A, shard_block(data["X/context40"]))
out["power/context40"] = np.asarray(res)
info["power"] = shards(res)

# 2-D mesh: shard over one axis (2 blocks, replicated over "data") or over both (4 blocks)
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "rows"))
dense = [c for c in make_cases(data) if c[0] == "dense40"][0][1]
for axis in ("rows", ("data", "rows")):
    A = shard_rows(dense, mesh, axis=axis)
    key = "mesh2d-" + "-".join([axis] if isinstance(axis, str) else axis)
    mm, rm = mm_j(A, data["X/dense40"]), rm_j(A, data["Y/dense40"])
    out[key + "/mm"], out[key + "/rm"] = np.asarray(mm), np.asarray(rm)
    info[key] = {"num_shards": A.num_shards, "mm": shards(mm), "rm": shards(rm)}

np.savez(FOLDER + "/out.npz", **out)
with open(FOLDER + "/info.json", "w") as f:
    json.dump(info, f)
"""


def _run_four_devices(folder: Path) -> None:
    """The one 4-device subprocess: products (``out.npz``, ``info.json``), svds (``svds.json``)."""
    # a fixture cannot use the function-scoped `rng`; seed the same way it does
    rng = np.random.default_rng(zlib.crc32(b"tests/test_sharding.py::four_devices"))
    data = make_data(rng)
    for name, _, ref in make_cases(data):
        m, n = ref.shape
        data[f"X/{name}"] = rng.standard_normal((n, K)).astype(np.float32)
        data[f"Y/{name}"] = rng.standard_normal((m, K)).astype(np.float32)
    np.savez(folder / "in.npz", **data)
    code = f"FOLDER = {str(folder)!r}\n" + _FOUR_DEVICES + _SVDS_FOUR
    run_python(code, devices=4, timeout=450)


@pytest.fixture(scope="module")
def four_devices_run(tmp_path_factory):
    """The folder of the 4-device subprocess's files (run once per session, see _subproc)."""
    return once_per_session(tmp_path_factory, "test_sharding-four-devices", _run_four_devices)


@pytest.fixture(scope="module")
def four_devices(four_devices_run):
    """(float64 references, inputs, outputs, shard info) of the 4-device products."""
    data = dict(np.load(four_devices_run / "in.npz"))
    cases = {name: ref for name, _, ref in make_cases(data)}
    out = dict(np.load(four_devices_run / "out.npz"))
    info = json.loads((four_devices_run / "info.json").read_text())
    return cases, data, out, info


@pytest.mark.multiprocess
@pytest.mark.parametrize("name", CASE_NAMES)
def test_four_devices_products_match_float64(four_devices, name):
    cases, data, out, _ = four_devices
    ref, X, Y = cases[name], data[f"X/{name}"], data[f"Y/{name}"]
    wanted = {
        "mm": ref @ X,
        "mmj": ref @ X,
        "mm_sharded_in": ref @ X,
        "mv": ref @ X[:, 0],
        "rm": ref.T @ Y,
        "rmj": ref.T @ Y,
        "rm_sharded_in": ref.T @ Y,
        "rmv": ref.T @ Y[:, 0],
    }
    keys = [k for k in wanted if f"{name}/{k}" in out]
    assert len(keys) == (8 if name in EXTRA else 4), keys
    for key in keys:
        want, got = wanted[key], out[f"{name}/{key}"]
        assert got.shape == want.shape, key
        assert rel_err(got, want) < RTOL, (key, rel_err(got, want))


def _row_sharded_over_4(shard_info, rows):
    blocks = [(lo, hi) for lo, hi, _ in shard_info["rows"]]
    devices = {dev for _, _, dev in shard_info["rows"]}
    b = rows // 4
    return (
        shard_info["spec"] == ["rows"]
        and blocks == [(i * b, (i + 1) * b) for i in range(4)]
        and len(devices) == 4
    )


@pytest.mark.multiprocess
@pytest.mark.parametrize("name", [n for n in CASE_NAMES if "40" in n] + ["diag-plus-sparse"])
def test_four_devices_outputs_are_row_sharded(four_devices, name):
    cases, _, _, info = four_devices
    m, n = cases[name].shape  # all these have m and n divisible by 4
    for key, shard_info in info[name].items():
        rows = m if key.startswith("m") else n
        assert _row_sharded_over_4(shard_info, rows), (key, shard_info)


@pytest.mark.multiprocess
def test_four_devices_jitted_power_loop(four_devices):
    cases, data, out, info = four_devices
    ref, X = cases["context40"], data["X/context40"].astype(np.float64)
    want = X
    for _ in range(3):
        want = ref.T @ (ref @ want)
    assert rel_err(out["power/context40"], want) < RTOL
    assert _row_sharded_over_4(info["power"], 40)


@pytest.mark.multiprocess
def test_four_devices_two_dimensional_mesh(four_devices):
    cases, data, out, info = four_devices
    ref, X, Y = cases["dense40"], data["X/dense40"], data["Y/dense40"]
    for key, shards in (("mesh2d-rows", 2), ("mesh2d-data-rows", 4)):
        assert info[key]["num_shards"] == shards
        assert rel_err(out[key + "/mm"], ref @ X) < RTOL
        assert rel_err(out[key + "/rm"], ref.T @ Y) < RTOL
    # over ("data", "rows") the 4 blocks of rows land on 4 devices
    spec = info["mesh2d-data-rows"]["mm"]["spec"]
    assert spec == [["data", "rows"]], spec
    assert len({dev for *_, dev in info["mesh2d-data-rows"]["mm"]["rows"]}) == 4
    # over "rows" alone: 2 blocks of 20 rows, each held by the 2 devices along "data"
    blocks = {(lo, hi) for lo, hi, _ in info["mesh2d-rows"]["mm"]["rows"]}
    assert blocks == {(0, 20), (20, 40)}


# --------------------------------------------------------------------------------------------------
# svds on 4 forced CPU devices (in the same subprocess, after the products)
# --------------------------------------------------------------------------------------------------
_SVDS_FOUR = r"""
from _svds_problems import SVDS_D, SVDS_METHODS, problems
from jaxcontext.linalg import svds
assert len(jax.devices()) == 4
out = {}
for name, (a, hermitian) in problems().items():
    A = shard_rows(ops.sparse_from_scipy(a.astype(np.float32)))
    for method in SVDS_METHODS:
        sp = svds(A, SVDS_D, method=method, hermitian=hermitian, tol=1e-5, on_fail="ignore")
        out[f"{name}/{method}"] = {"s": np.asarray(sp.s).tolist(),
                                   "residuals": np.asarray(sp.residuals).tolist(),
                                   "shards": len(sp.V.sharding.device_set)}
with open(FOLDER + "/svds.json", "w") as f:
    json.dump(out, f)
"""


@pytest.fixture(scope="module")
def svds_four_devices(four_devices_run):
    return json.loads((four_devices_run / "svds.json").read_text())


@pytest.mark.multiprocess
@pytest.mark.parametrize("name", ["sbm", "knn"])
@pytest.mark.parametrize("method", ["chebyshev", "lanczos", "krylov", "randomized"])
def test_four_devices_svds_match_one_device(svds_four_devices, svds_one_device, name, method):
    """svds on a row-sharded operator over 4 devices = 1 device (1e-5) = float64 (exact methods)."""
    from _svds_problems import SVDS_D, problems, reference

    a, hermitian = problems()[name]
    one_s = svds_one_device(name, method)  # the same svds call on one device (conftest.py)
    got = svds_four_devices[f"{name}/{method}"]
    np.testing.assert_allclose(got["s"], one_s, rtol=1e-5)
    if method in ("chebyshev", "lanczos"):
        np.testing.assert_allclose(got["s"], reference(a, SVDS_D, hermitian), rtol=1e-5)
        assert max(got["residuals"]) <= 1e-5
