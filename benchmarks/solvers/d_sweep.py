"""Sweep ``svds`` over d in one process: wall time of the first call at each d and of a later one.

Usage (one problem per process, so compile caches start empty)::

    python benchmarks/solvers/d_sweep.py rbf   # normalised RBF kernel, 3000 x 3000, materialised
    python benchmarks/solvers/d_sweep.py sbm   # block model, 20k nodes, 100 blocks (scipy CSR)

``svds(A, d, tol=1e-4, hermitian=True)`` with every other argument at its default (the kernel is
passed as a jax array; the block model as the float32 scipy CSR matrix, as a user would;
``hermitian=True`` so that both versions take the same symmetric path). For each d in
16, 24, ..., 64: the first call (tracing and compilation included where the compiled solver is
new) and the median of two later calls. Run it with ``PYTHONPATH`` pointing at another checkout
to measure that one (the "before" figures in README.md came from ``git archive`` of the commit
named there). Prints one JSON line per d and a markdown table.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def build(which: str):
    from jaxcontext.bench import solvers as S

    if which == "rbf":
        x, gamma = S.rbf_points(3000, 8, np.random.default_rng(0))
        x = x.astype(np.float32)
        dis = (1.0 / np.sqrt(S.rbf_degrees64(x, gamma))).astype(np.float32)
        return jnp.asarray(S.rbf_materialise(x, np.float32(gamma), dis))
    if which == "sbm":
        return S.sbm_matrix(20_000, 100, 30.0, 20.0, 0).astype(np.float32)
    raise SystemExit(f"unknown problem {which!r}: rbf or sbm")


def main(which: str) -> None:
    from jaxcontext.linalg import svds

    A = build(which)
    rows = []
    for d in range(16, 65, 8):
        t0 = time.perf_counter()
        sp = svds(A, d, tol=1e-4, hermitian=True)
        jax.block_until_ready(sp.U)
        first = time.perf_counter() - t0
        later = []
        for _ in range(2):
            t0 = time.perf_counter()
            sp = svds(A, d, tol=1e-4, hermitian=True)
            jax.block_until_ready(sp.U)
            later.append(time.perf_counter() - t0)
        row = dict(
            problem=which,
            d=d,
            first_s=round(first, 3),
            later_s=round(float(np.median(later)), 3),
            method=sp.info.method,
            matvecs=int(sp.info.matvecs),
            converged=f"{int(np.sum(sp.info.converged))}/{d}",
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    total_first = sum(r["first_s"] for r in rows)
    print(f"\n| d | first call | later call | method | product columns |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['d']} | {r['first_s']:.2f} s | {r['later_s']:.3f} s | {r['method']} | "
            f"{r['matvecs']} |"
        )
    print(f"\nsum of first calls: {total_first:.1f} s; jax {jax.__version__}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "rbf")
