"""Where block Lanczos loses to cupy on a GPU: block sizes and the time outside the stages.

Session 11's H200 run (benchmarks/solvers/README.md, "Session 11") left two cases where cupy's
Lanczos was faster: the kNN context (50k points, d = 64; Golub-Kahan block Lanczos, block 8:
158 ms against 144 ms) and the materialised RBF kernel (20k, d = 64; block Lanczos, block 16:
129 ms against 62 ms). There the products were the smaller part: the kNN profile had 70
Rayleigh-Ritz steps (small ``eigh``) and 140 orthonormalisations at 211 of 271 ms, the RBF solve
spent about 70 ms outside its stages. On a GPU a product of 8 or 32 columns costs about the same,
so wider blocks (fewer sequential steps) should pay there; this script measures that, per case:

* ``auto`` and ``method="lanczos"`` with each ``--blocks`` width: first call (compile included),
  the median of ``--repeats`` warm calls, iterations, product columns, certificate, and the
  largest error against the suite's cached float64 values;
* one profiled solve of ``auto`` (``svds(..., profile=True)``): the time per stage and outside;
* with ``--growth 0.25,0.5``: ``auto`` with its convergence checks spaced wider (``check_growth``);
* with ``--one-bucket``: ``auto`` without the Lanczos size buckets (``one_bucket``).

    python scripts/gpu_lanczos_sweep.py [--size full|quick] [--blocks 8,16,32] [--cases knn,rbf]
        [--growth 0.25,0.5] [--one-bucket]

For the sparse (kNN) case it also checks the device's products against float64 host products
and recomputes each result's residuals with float64 host products (``res64``: equal to the
device's certificate when that is right; session 13 used it to find that the residual
*estimates* were wrong, see ``scripts/gpu_small_svd.py``). ``--rbf-blocks`` sets the RBF widths.

It uses the solvers suite's problems and reference cache (``$JAXCONTEXT_BENCH_CACHE``); each
variant compiles once (20-50 s each on the H200: budget a lease for it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from unittest import mock

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

from jaxcontext.bench import solvers  # noqa: E402
from jaxcontext.linalg import _svds, svds  # noqa: E402
from jaxcontext.linalg._stages import format_stages  # noqa: E402

IMPL = {"knn": "jaxcontext", "rbf": "jaxcontext[dense K]"}


def _lanczos_configs(transform):
    """Context: every Lanczos config ``svds`` builds passed through ``transform(cfg)``."""
    real = _svds._lanczos_config

    def patched(*args, **kwargs):
        cfg, sel, notes = real(*args, **kwargs)
        return transform(cfg), sel, notes

    return mock.patch.object(_svds, "_lanczos_config", patched)


def one_bucket(on: bool):
    """With ``on``: Lanczos configs without size buckets (no ``lax.switch`` in the loop).

    The projections run on the whole padded basis (rows past the filled size masked) and the
    Rayleigh-Ritz problem at the full basis size. On a CPU the buckets make the cost follow the
    filled size; on a GPU a full-size product of a few hundred rows costs microseconds, while
    every conditional may cost a device-to-host sync: this variant measures that trade.
    """
    if not on:
        return contextlib.nullcontext()
    return _lanczos_configs(
        lambda cfg: cfg._replace(chunk=-(-(cfg.K + cfg.b) // cfg.b) * cfg.b, g=cfg.K)
    )


def check_growth(growth: float | None):
    """With ``growth``: Lanczos configs whose convergence checks are spaced by that fraction.

    The check (a Rayleigh-Ritz step on the small projected matrix) runs when the basis has grown
    by ``growth`` times its size since the last one (default 0.1: about every other step past
    half the basis). On the CPU a check costs a fraction of a step; on a GPU, where a step of 8
    columns takes about a millisecond, the small eigensolver may cost more than the steps a
    sparser schedule overshoots by. This variant measures that trade.
    """
    if growth is None:
        return contextlib.nullcontext()
    return _lanczos_configs(lambda cfg: cfg._replace(growth=growth))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="full", choices=("full", "quick", "tiny"))
    p.add_argument("--blocks", default="8,16,32")
    p.add_argument("--rbf-blocks", default=None, help="widths for the RBF case (default --blocks)")
    p.add_argument("--cases", default="knn,rbf")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--one-bucket", action="store_true",
        help="also run auto with bucket-free Lanczos configs (see one_bucket)",
    )
    p.add_argument(
        "--growth", default="",
        help="comma list of check growths: also run auto with each (see check_growth)",
    )
    args = p.parse_args(argv)
    widths = {
        "knn": [int(b) for b in args.blocks.split(",") if b],
        "rbf": [int(b) for b in (args.rbf_blocks or args.blocks).split(",") if b],
    }
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}", flush=True)
    rows = []
    for case in solvers.cases(args.size):
        kind = case.name.split("/")[0]
        if kind not in args.cases.split(","):
            continue
        impl = next(i for i in case.impls if i.name == IMPL[kind])
        g = case.build()
        ref = case.reference(g)["s"]
        (op,) = impl.prepare(g)
        d = int(case.name.rsplit("/d", 1)[1])
        herm = kind == "rbf" or g.symmetric
        a64 = getattr(g, "a64", None)  # float64 scipy matrix (sparse cases)
        if a64 is not None:
            # the device's products against float64 ones on the host
            X = np.random.default_rng(0).standard_normal((a64.shape[1], 8)).astype(np.float32)
            Y = np.random.default_rng(1).standard_normal((a64.shape[0], 8)).astype(np.float32)
            for name, got, want in (
                ("A X", op.matmat(jax.numpy.asarray(X)), a64 @ X.astype(np.float64)),
                ("A^T Y", op.rmatmat(jax.numpy.asarray(Y)), a64.T @ Y.astype(np.float64)),
            ):
                err = np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)
                print(f"{case.name} product {name}: rel. error {err:.2e} (float64)", flush=True)
        variants = [("auto", {})] + [(f"lanczos b={b}", {"block_size": b}) for b in widths[kind]]
        if args.one_bucket:
            variants.append(("auto one-bucket", {}))
        variants += [(f"auto growth={g}", {}) for g in args.growth.split(",") if g]
        for label, kw in variants:
            method = "auto" if label.startswith("auto") else "lanczos"

            def solve(op=op, d=d, herm=herm, kw=kw, method=method, label=label, **extra):
                growth = float(label.split("=")[1]) if "growth=" in label else None
                with one_bucket(label.endswith("one-bucket")), check_growth(growth):
                    out = svds(
                        op, d, key=0, method=method, tol=solvers.TOL, hermitian=herm,
                        on_fail="ignore", **kw, **extra,
                    )
                return jax.block_until_ready(out)

            t0 = time.perf_counter()
            try:
                out = solve()
            except Exception as e:  # a width the solver refuses is a row, not the end
                rows.append((case.name, label, f"{type(e).__name__}: {e}"[:80]))
                continue
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                solve()
                times.append(time.perf_counter() - t0)
            s = np.asarray(out.s, np.float64)
            err = float(np.max(np.abs(s - ref[:d]) / ref[:d]))
            info = out.info
            conv = int(np.sum(np.asarray(info.converged)))
            row = (
                f"{np.median(times) * 1e3:8.1f} ms (first {first:5.1f} s) it {info.iterations:4d} "
                f"mv {info.matvecs:6d} block {info.block_size:3d} basis {info.basis_size:4d} "
                f"conv {conv}/{d} res {float(np.max(np.asarray(out.residuals))):.1e} err {err:.1e}"
            )
            if a64 is not None:  # the same residuals as the certificate's, float64 products
                U = np.asarray(out.U, np.float64)
                V = np.asarray(out.V, np.float64)
                r1 = np.linalg.norm(a64 @ V - U * s, axis=0)
                r2 = np.linalg.norm(a64.T @ U - V * s, axis=0)
                r64 = np.maximum(r1, r2) / s.max()
                row += f" res64 {r64.max():.1e} conv64 {int(np.sum(r64 <= solvers.TOL))}/{d}"
            rows.append((case.name, label, row))
            print(f"{case.name} {label}: {row}", flush=True)
            if "solved again" in info.reason or "certificate missed" in info.reason:
                print(f"  retried: {info.reason.rsplit(';', 1)[-1]}", flush=True)
            if label == "auto":
                prof = solve(profile=True)
                print(f"  profile: {format_stages(prof.info.stages)}", flush=True)
    print("\ncase | variant | result")
    for r in rows:
        print(" | ".join(r))


if __name__ == "__main__":
    main()
