"""Scaling law: encoders of growing size against the exact contexture (issue 11 item 1).

Encoders of several widths and depths (at least 5 sizes spanning at least 100x in parameters by
default), trained with one objective (default SVME) at the same budget for every size over
several seeds, each measured against the exact top-``d`` contexture: held-out R2_CCA, mutual kNN
(k = 10), and the ridge-probe error of learned and exact encoders; the per-size summary (mean, std,
min, max over seeds) and whether alignment shows diminishing returns, and from which size. All
logic is in :mod:`jaxcontext.workflows.scaling`; this script parses flags and writes
``<tag>.json`` (every record, summary, analysis, environment), ``<tag>.md`` and ``<tag>.png``.

Problems: ``--data gaussian_noise`` (default; Mehler, D = 3, rho = 0.7, d = 9: the Hermite
products of degrees 1 and 2, known analytically, as the exact contexture), any bundled data set
(``--data fair``, kNN K = 30 or RBF, d = 32, the solved contexture), ``gaussian_mixture``, or your
own arrays (``--npz PATH`` holding ``x`` and optionally ``y``).

Usage (after ``pip install -e .``, or with ``PYTHONPATH=.``)::

    python scripts/scaling_law.py                      # Mehler, 7 sizes x 3 seeds, CPU minutes
    python scripts/scaling_law.py --data fair          # fair, kNN K = 30, d = 32
    python scripts/scaling_law.py --data fair --full   # 8 sizes at depth 3, 5 seeds (GPU)
    python scripts/scaling_law.py --npz mine.npz --context rbf --d 16 --widths 16 64 256 1024 \\
        --depths 2 --steps 2000
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

import jax


def parser() -> argparse.ArgumentParser:
    """The command line (every flag; defaults from ``scaling.PRESETS``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--data",
        default="gaussian_noise",
        help="gaussian_noise (default), gaussian_mixture, or a "
        "jaxcontext.datasets.available() name",
    )
    p.add_argument("--npz", help="your own arrays: an .npz with x (rows, features) and optional y")
    p.add_argument(
        "--context",
        choices=("knn", "rbf"),
        default="knn",
        help="context of real data and arrays (default knn)",
    )
    p.add_argument("--k", type=int, default=30, help="kNN neighbours (default 30)")
    p.add_argument("--gamma", type=float, help="RBF bandwidth (default 1 / (D Var[x]))")
    p.add_argument(
        "--d",
        type=int,
        help="contexture dimension (default: gaussian_noise, the "
        "Hermite degrees 1-2 (9 in D = 3); else 32)",
    )
    p.add_argument("--objective", default="svme", help="a jaxcontext.objectives.NAMES name")
    p.add_argument("--widths", type=int, nargs="+", help="widths of the grid (default 8 .. 512)")
    p.add_argument("--depths", type=int, nargs="+", help="depths of the grid (default 2)")
    p.add_argument(
        "--sizes", nargs="+", metavar="WIDTHxDEPTH", help="WIDTHxDEPTH sizes instead of a grid"
    )
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2)")
    p.add_argument("--steps", type=int, help="optimiser steps per run, every size (default 600)")
    p.add_argument("--batch", type=int, help="batch size (default 512)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument("--activation", default="relu")
    p.add_argument("--kind", choices=("mlp", "resmlp"), default="mlp")
    p.add_argument("--knn-k", type=int, default=10, help="mutual kNN neighbours (default 10)")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.01,
        help="diminishing returns: R2_CCA gain per doubling of parameters (0.01)",
    )
    p.add_argument(
        "--fall-tolerance",
        type=float,
        default=0.01,
        help="alignment falls: drop below the peak's mean (0.01)",
    )
    p.add_argument(
        "--min-width",
        type=int,
        help="skip sizes narrower than this (default d: narrower outputs have rank < d)",
    )
    p.add_argument("--min-sizes", type=int, default=5, help="refuse smaller grids (default 5)")
    p.add_argument(
        "--min-span",
        type=float,
        default=100.0,
        help="refuse grids spanning less (largest / smallest params, default 100)",
    )
    p.add_argument("--m", type=int, default=4000, help="gaussian_noise / mixture training rows")
    p.add_argument("--m-test", type=int, default=1000, help="gaussian_noise held-out rows")
    p.add_argument("--dim", type=int, default=3, help="gaussian_noise / mixture dimension (3)")
    p.add_argument("--rho", type=float, default=0.7, help="gaussian_noise correlation (0.7)")
    p.add_argument(
        "--no-solve",
        action="store_true",
        help="gaussian_noise: skip solving the finite-sample contexture",
    )
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-rows", type=int, help="use at most this many rows")
    p.add_argument("--eval-every", type=int, help="record held-out R2_CCA every N steps")
    p.add_argument("--full", action="store_true", help="the larger grid (for a GPU)")
    p.add_argument("--x64", action="store_true", help="float64 throughout")
    p.add_argument(
        "--cache",
        help="JAX persistent compilation cache directory (default: a "
        "temporary one, so seeds of one size compile once)",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--out", default="benchmarks/scaling", help="output directory")
    p.add_argument("--tag", help="file name stem (default <data>-<context>-<objective>[-full])")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the scaling study from flags; returns the result written to ``<out>/<tag>.json``."""
    p = parser()
    a = p.parse_args(argv)
    if a.x64:
        jax.config.update("jax_enable_x64", True)
    if a.cache:
        jax.config.update("jax_compilation_cache_dir", a.cache)
    elif not jax.config.jax_compilation_cache_dir:
        # every seed of a size compiles the same trainer: a private persistent cache (removed at
        # exit) lets the later seeds load it; it changes no result, only compile time
        tmp = tempfile.mkdtemp(prefix="scaling-law-xla-")
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        jax.config.update("jax_compilation_cache_dir", tmp)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    from jaxcontext import bridge, contexts, datasets
    from jaxcontext.workflows import scaling

    grid = bridge.override(
        scaling.PRESETS["full" if a.full else "default"],
        widths=a.widths,
        depths=a.depths,
        seeds=a.seeds,
        steps=a.steps,
        batch_size=a.batch,
    )
    if a.sizes:
        try:
            grid["sizes"] = [bridge.parse_size(s) for s in a.sizes]
        except ValueError as e:
            p.error(f"--sizes: {e}")
        if a.widths is None:
            grid["widths"], grid["depths"] = [], []

    t0 = time.perf_counter()
    if a.npz is None and a.data == "gaussian_noise":
        problem = scaling.gaussian_noise_problem(
            a.m, a.dim, a.rho, m_test=a.m_test, key=a.split_seed
        )
        d, cname = a.d or scaling.hermite_count(a.dim, 2), "mehler"
    else:
        if a.npz is not None:
            data, dname = datasets.from_npz(a.npz, standardize=True), os.path.basename(a.npz)
            dname = dname.rsplit(".", 1)[0]
        elif a.data == "gaussian_mixture":
            data = datasets.gaussian_mixture(
                a.m + a.m_test,
                clusters=4,
                dim=max(a.dim, 4),
                separation=4.0,
                key=jax.random.key(a.split_seed),
            )
            dname = "gaussian_mixture"
        else:
            data, dname = a.data, a.data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", contexts.ContextWarning)  # nobody's neighbour
            problem = bridge.problem(
                data,
                context=a.context,
                k=a.k,
                gamma=a.gamma,
                test_fraction=a.test_fraction,
                max_rows=a.max_rows,
                seed=a.split_seed,
            )
        d, cname = a.d or 32, a.context
        a.data = dname
    tag = a.tag or f"{a.data}-{cname}-{a.objective}" + ("-full" if a.full else "")
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, tag)
    out = {
        "environment": bridge.environment(),
        "command": " ".join(["scaling_law.py", *(sys.argv[1:] if argv is None else argv)]),
        "preset": "full" if a.full else "default",
    }
    done: list[dict] = []

    def record(rec: dict) -> None:
        if rec.get("kind") == "exact":
            msg = {k: rec.get(k) for k in ("method", "d", "solve_s", "probe_error")}
            if "solved" in rec:
                msg["solved_r2_cca"] = rec["solved"]["r2_cca"]
        else:
            done.append(rec)
            msg = {
                k: rec.get(k)
                for k in (
                    "model",
                    "params",
                    "seed",
                    "r2_cca",
                    "mutual_knn",
                    "probe_error",
                    "train_s",
                )
            }
        print(json.dumps(msg), flush=True)
        with open(stem + ".partial.json", "w") as f:
            json.dump({**out, "runs": done}, f, indent=1)

    res = scaling.run(
        problem,
        d=d,
        widths=grid["widths"],
        depths=grid["depths"],
        sizes=grid.get("sizes", ()),
        seeds=grid["seeds"],
        objective=a.objective,
        steps=grid["steps"],
        batch_size=grid["batch_size"],
        learning_rate=a.lr,
        model_options={"activation": a.activation, "kind": a.kind},
        solve=not a.no_solve,
        knn_k=a.knn_k,
        threshold=a.threshold,
        fall_tolerance=a.fall_tolerance,
        min_width=a.min_width,
        min_sizes=a.min_sizes,
        min_span=a.min_span,
        eval_every=a.eval_every,
        on_record=record,
    )
    out.update(res)
    out["wall_s"] = time.perf_counter() - t0
    with open(stem + ".json", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    if os.path.exists(stem + ".partial.json"):
        os.remove(stem + ".partial.json")
    md = scaling.table(out)
    with open(stem + ".md", "w") as f:
        f.write(
            f"# Scaling law: {problem_name(out)}\n\n`{out['command']}` ({out['wall_s']:.0f} s "
            f"wall, {out['environment']['device']}, JAX {out['environment']['jax']}, "
            f"{out['environment']['dtype']})\n\n{md}\n"
        )
    print(md)
    if not a.no_plot:
        fig = scaling.plot(out, stem + ".png")
        import matplotlib.pyplot as plt

        plt.close(fig)
    print("wrote", stem + ".json", flush=True)
    return out


def problem_name(out: dict) -> str:
    """``data / context (settings)`` of a result, for headings."""
    p = out["problem"]
    extra = ", ".join(f"{k} = {p[k]:g}" for k in ("k", "gamma", "rho", "dim") if k in p)
    return f"{p.get('data')} / {p.get('context')}" + (f" ({extra})" if extra else "")


if __name__ == "__main__":
    main()
