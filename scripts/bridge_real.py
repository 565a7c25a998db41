"""Real data: the exact contexture beside learned encoders (issue 10 item 2).

A kNN (K = 30) or RBF context on the training rows of a bundled real data set (statsmodels'
``fair``, 6,366 rows, by default), its exact top-``d`` contexture, and encoders of several sizes
trained with SVME, KISE and the nested objective over several seeds; held-out R2_CCA and
subspace distance against the exact contexture (evaluated out of sample), and the ridge-probe
error of both on the data set's own target. All logic is in :mod:`jaxcontext.bridge`; this script
parses flags and writes JSON (records, per-configuration summary, environment).

Usage (after ``pip install -e .``, or with ``PYTHONPATH=.``)::

    python scripts/bridge_real.py              # default: 18 runs, about 10 minutes on 2 CPU cores
    python scripts/bridge_real.py --full       # more sizes, objectives, steps; d = 32 and 128
    python scripts/bridge_real.py --context rbf --d 64 --objectives svme --sizes 256x2
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

import jax

from jaxcontext import bridge, contexts

DEFAULT = {
    "objectives": ["svme", "kise", "nested_sequential"],
    "sizes": ["64x2", "256x2"],
    "seeds": [0, 1, 2],
    "steps": 600,
    "batch": 512,
    "d": [32],
}
FULL = {
    "objectives": ["svme", "kise", "nested_sequential", "nested_joint"],
    "sizes": ["64x2", "256x2", "512x3", "1024x3"],
    "seeds": [0, 1, 2],
    "steps": 4000,
    "batch": 2048,
    "d": [32, 128],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="fair", help="a jaxcontext.datasets.available() name")
    p.add_argument("--context", choices=("knn", "rbf"), default="knn")
    p.add_argument("--k", type=int, default=30, help="kNN neighbours (default 30)")
    p.add_argument("--gamma", type=float, help="RBF bandwidth (default 1 / (D Var[x]))")
    p.add_argument("--d", type=int, nargs="+", help="contexture dimensions (default 32)")
    p.add_argument(
        "--objectives", nargs="+", help="objective names (default svme kise nested_sequential)"
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        metavar="WIDTHxDEPTH",
        help="encoder sizes WIDTHxDEPTH (default 64x2 256x2)",
    )
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2)")
    p.add_argument("--steps", type=int, help="optimiser steps per run (default 600)")
    p.add_argument("--batch", type=int, help="batch size (default 512)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument("--activation", default="relu")
    p.add_argument("--eval-every", type=int, help="record held-out R2_CCA every N steps")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-rows", type=int, help="use at most this many rows")
    p.add_argument("--full", action="store_true", help="the larger grid (hours on a CPU)")
    p.add_argument("--x64", action="store_true", help="float64 throughout")
    p.add_argument("--cache", help="JAX persistent compilation cache directory")
    p.add_argument("--out", default="benchmarks/bridge", help="output directory")
    p.add_argument("--tag", help="file name stem (default <data>-<context>[-full])")
    a = p.parse_args()

    if a.x64:
        jax.config.update("jax_enable_x64", True)
    if a.cache:
        jax.config.update("jax_compilation_cache_dir", a.cache)
    grid = bridge.override(
        FULL if a.full else DEFAULT,
        objectives=a.objectives,
        sizes=a.sizes,
        seeds=a.seeds,
        steps=a.steps,
        batch=a.batch,
        d=a.d,
    )
    try:
        sizes = [bridge.parse_size(s) for s in grid["sizes"]]
    except ValueError as e:
        p.error(f"--sizes: {e}")
    tag = a.tag or f"{a.data}-{a.context}" + ("-full" if a.full else "")
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"{tag}.json")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", contexts.ContextWarning)  # nobody's neighbour: zero weight
        prob = bridge.problem(
            a.data,
            context=a.context,
            k=a.k,
            gamma=a.gamma,
            test_fraction=a.test_fraction,
            max_rows=a.max_rows,
            seed=a.split_seed,
        )
    out = {
        "environment": bridge.environment(),
        "grid": grid,
        "learning_rate": a.lr,
        "activation": a.activation,
        "results": [],
    }
    print(prob.name, json.dumps(prob.info), flush=True)

    def save() -> None:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")

    for d in grid["d"]:
        res = {"problem": prob.info, "exact": None, "runs": [], "summary": []}
        out["results"].append(res)

        def record(rec: dict, res: dict = res) -> None:
            if rec.get("kind") == "exact":
                res["exact"] = rec
                msg = {k: rec[k] for k in ("d", "solve_s", "max_residual", "probe_error")}
            else:
                res["runs"].append(rec)
                res["summary"] = bridge.summarize(res["runs"])
                msg = {
                    k: rec.get(k)
                    for k in ("objective", "model", "seed", "r2_cca", "probe_error", "train_s")
                }
            print(json.dumps(msg), flush=True)
            save()

        bridge.compare(
            prob,
            d=d,
            objectives=grid["objectives"],
            sizes=sizes,
            seeds=grid["seeds"],
            steps=grid["steps"],
            batch_size=grid["batch"],
            learning_rate=a.lr,
            model_options={"activation": a.activation},
            eval_every=a.eval_every,
            on_record=record,
        )
        top = bridge.best(res["summary"])
        if top is not None:
            r = top["r2_cca"]
            print(
                f"d={d} best: {top['objective']} {top['model']} ({top['params']} params) "
                f"R2_CCA {r['mean']:.4f} +- {r['std']:.4f} [{r['min']:.4f}, {r['max']:.4f}] "
                f"over {top['n']} seeds",
                flush=True,
            )
    print("wrote", path)


if __name__ == "__main__":
    main()
