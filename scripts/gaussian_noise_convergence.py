"""Sampling error of the Gaussian-noise (Mehler) context against the analytic spectrum, versus m.

X ~ N(0, I_D), A = rho X + sqrt(1 - rho^2) eps (REFERENCE.md section 7). The top non-trivial squared
singular values of total degree 1 (multiplicity D) and 2 (multiplicity D(D+1)/2) should approach
rho^2 and rho^4 as m grows, with error ~ 1/sqrt(m). Writes benchmarks/known_spectra/gaussian_noise.json.

usage: python scripts/gaussian_noise_convergence.py [--ms 2000 4000 8000 16000] [--seeds 3]
"""

import argparse
import json
import pathlib
import platform
import time

import jax
import numpy as np

from jaxcontext import datasets, spectrum


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ms", type=int, nargs="+", default=[2000, 4000, 8000, 16000])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rho", type=float, default=0.6)
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/known_spectra/gaussian_noise.json")
    a = ap.parse_args()
    D, rho = a.dim, a.rho
    n1, n2 = D, D * (D + 1) // 2
    exact = np.r_[np.full(n1, rho**2), np.full(n2, rho**4)]
    rows = []
    for m in a.ms:
        for seed in range(a.seeds):
            t = time.perf_counter()
            prob = datasets.gaussian_noise(m, D, rho, key=jax.random.key(seed))
            ct = spectrum.contexture(prob.context, n1 + n2, method="lanczos", key=0, tol=1e-5)
            s2 = np.asarray(ct.s, np.float64) ** 2
            rel = np.abs(s2 - exact) / exact
            rows.append(
                dict(
                    m=m,
                    seed=seed,
                    s2=s2.tolist(),
                    max_rel_err=float(rel.max()),
                    max_rel_err_deg1=float(rel[:n1].max()),
                    max_rel_err_deg2=float(rel[n1:].max()),
                    seconds=time.perf_counter() - t,
                )
            )
            print(
                f"m={m:6d} seed={seed} max rel err {rel.max():.4f} (deg1 {rel[:n1].max():.4f}, "
                f"deg2 {rel[n1:].max():.4f})  {rows[-1]['seconds']:.1f}s",
                flush=True,
            )
    summary = {}
    for m in a.ms:
        e = [r["max_rel_err"] for r in rows if r["m"] == m]
        summary[str(m)] = dict(median=float(np.median(e)), worst=float(np.max(e)))
    out = dict(
        problem=f"gaussian_noise D={D} rho={rho}",
        exact_s2=exact.tolist(),
        rows=rows,
        summary=summary,
        jax=jax.__version__,
        device=str(jax.devices()[0]),
        dtype="float32",
        machine=platform.processor() or platform.machine(),
    )
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
