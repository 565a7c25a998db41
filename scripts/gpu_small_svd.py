"""Why Golub-Kahan block Lanczos missed its certificate on a GPU: a diagnosis in one call.

On an H200 (session 13) the kNN context (50k points, d = 64) stopped with every residual
*estimate* below tol but a certificate of 1.2e-4 (50 of 64 triplets), the same in float64 host
products; wider blocks were worse (block 32: 0 of 64). The device's sparse products were exact to
1e-7. This script runs the solve once with its stages driven from the host
(``svds(..., profile=True)``), keeps the final Lanczos state, and measures in float64 on the
host what the residual estimates assume:

* the bases' orthonormality ``|U^T U - I|``, ``|V^T V - I|``;
* the Lanczos relation ``|A V - U B|`` (host products, float64);
* the small SVD of ``B`` the solver used: ``|B y - theta x|``, ``|B^T x - theta y|``,
  orthonormality of ``X`` and ``Y``, values against float64 LAPACK;

then the same small problem through each algorithm of ``_lanczos._small_svd`` on the device
(accuracy and median time of a jitted call), and, per ``--solve`` algorithm, a full solve in a
fresh process (``_lanczos.SMALL_SVD``): time, triplets certified, error against float64.

    python scripts/gpu_small_svd.py [--size full|quick] [--solve default,qr,augmented,gram]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxcontext.bench import solvers  # noqa: E402
from jaxcontext.linalg import _lanczos, svds  # noqa: E402


def _case(size):
    case = next(c for c in solvers.cases(size) if c.name.startswith("knn/"))
    impl = next(i for i in case.impls if i.name == "jaxcontext")
    g = case.build()
    (op,) = impl.prepare(g)
    d = int(case.name.rsplit("/d", 1)[1])
    return case, g, op, d


def _small_report(name, B, X, th, Y, d):
    B, X, th, Y = (np.asarray(a, np.float64) for a in (B, X, th, Y))
    X, th, Y = X[:, :d], th[:d], Y[:, :d]
    s1 = np.linalg.svd(B, compute_uv=False)
    r1 = np.linalg.norm(B @ Y - X * th, axis=0).max() / s1[0]
    r2 = np.linalg.norm(B.T @ X - Y * th, axis=0).max() / s1[0]
    ox = np.abs(X.T @ X - np.eye(d)).max()
    oy = np.abs(Y.T @ Y - np.eye(d)).max()
    ev = np.abs(np.sort(th)[::-1] - s1[:d]).max() / s1[0]
    print(
        f"  {name:10s} |By-tx| {r1:.1e} |B'x-ty| {r2:.1e} |X'X-I| {ox:.1e} |Y'Y-I| {oy:.1e} "
        f"values {ev:.1e}",
        flush=True,
    )


def diagnose(size):
    case, g, op, d = _case(size)
    a64 = g.a64
    got = {}
    real = _lanczos._j_extract

    def keep(st, **kw):
        if "st" not in got:
            got["st"] = jax.device_get(st)
        return real(st, **kw)

    _lanczos._j_extract = keep
    try:
        out = svds(op, d, key=0, tol=solvers.TOL, hermitian=False, on_fail="ignore", profile=True)
    finally:
        _lanczos._j_extract = real
    print(f"profiled solve: {out.info.reason[-160:]}", flush=True)
    st = got["st"]
    c = int(st.c)
    b = out.info.block_size
    V = np.asarray(st.V, np.float64)[: c + b]
    U = np.asarray(st.U, np.float64)[:c]
    H = np.asarray(st.H, np.float64)
    B = H[:c, :c]
    print(f"state: c = {c}, block {b}, restarts {int(st.restarts)}", flush=True)
    print(f"  |U'U - I| {np.abs(U @ U.T - np.eye(c)).max():.1e}  "
          f"|V'V - I| {np.abs(V @ V.T - np.eye(c + b)).max():.1e}", flush=True)
    AV = (a64 @ V[:c].T)  # (m, c)
    rel = np.linalg.norm(AV - U.T @ B) / np.linalg.norm(B)
    print(f"  |A V - U B| / |B| = {rel:.1e} (locked couplings dropped count too)", flush=True)
    # the solver's own small SVD (st.X, st.Y are ordered and padded to K)
    _small_report("solver's", B, st.X[:c], st.theta, st.Y[:c], d)
    # each algorithm on the device, on the same masked problem the solver builds
    K = st.H.shape[0] - b
    s = c
    Hd = jnp.asarray(st.H)
    cd = jnp.asarray(c, jnp.int32)
    for how in ("default", "qr", "augmented", "gram"):
        f = jax.jit(
            lambda H, c, how=how: _lanczos._small_solve(H, c, s=s, K=K, hermitian=False, how=how)
        )
        try:
            th, Y, X, mu, rs = jax.block_until_ready(f(Hd, cd))
        except Exception as e:  # an algorithm the backend lacks is a line, not the end
            print(f"  {how:10s} failed: {type(e).__name__}: {str(e)[:120]}", flush=True)
            continue
        ts = []
        for _ in range(20):
            t0 = time.perf_counter()
            jax.block_until_ready(f(Hd, cd))
            ts.append(time.perf_counter() - t0)
        th = np.asarray(th)[:c]  # past c: padding (value mu)
        order = np.argsort(-th)
        _small_report(how, B, np.asarray(X)[:c, :c][:, order], th[order],
                      np.asarray(Y)[:c, :c][:, order], d)
        print(f"  {how:10s} median {np.median(ts) * 1e3:.2f} ms (s = {s}); "
              f"max rs {float(np.max(np.asarray(rs)[:c])):.1e}", flush=True)


def solve(size, how, repeats=5):
    _lanczos.SMALL_SVD = how
    case, g, op, d = _case(size)
    ref = case.reference(g)["s"][:d]

    def run():
        return jax.block_until_ready(
            svds(op, d, key=0, tol=solvers.TOL, hermitian=False, on_fail="ignore")
        )

    t0 = time.perf_counter()
    out = run()
    first = time.perf_counter() - t0
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    sv = np.asarray(out.s, np.float64)
    err = np.max(np.abs(sv - ref) / ref)
    conv = int(np.sum(np.asarray(out.info.converged)))
    again = "solved again" in out.info.reason
    print(
        f"solve {how:10s}: {np.median(ts) * 1e3:7.1f} ms (first {first:5.1f} s) it "
        f"{out.info.iterations} conv {conv}/{d} res {float(np.max(np.asarray(out.residuals))):.1e} "
        f"err {err:.1e} retried {again}",
        flush=True,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="full", choices=("full", "quick", "tiny"))
    p.add_argument("--solve", default="", help="comma-separated: auto default qr augmented gram")
    p.add_argument("--skip-diagnosis", action="store_true")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: one solve
    a = p.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}", flush=True)
    if a.one:
        solve(a.size, a.one)
        return
    if not a.skip_diagnosis:
        diagnose(a.size)
    for how in [h for h in a.solve.split(",") if h]:
        subprocess.run([sys.executable, __file__, "--size", a.size, "--one", how], check=False)


if __name__ == "__main__":
    main()
