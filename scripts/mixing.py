"""Mixing contexts that are too strong or too weak (issue 11 item 3).

On a real data set (scikit-learn's digits by default): contexts too strong (kNN with K = 2, RBF
with a large gamma), too weak (kNN with m/8 neighbours, RBF with a tiny gamma) and partial (kNN
on random halves of the features), mixed by convolution, convex combination and concatenation;
for every context its exact spectrum, tau and its arg-min d*, and the ridge-probe error of the
exact encoder; for every mix whether it beats each of its parts. Optionally (default on) the
same mixes of bit-flip contexts on the hypercube, whose spectra are known in closed form. All
logic is in :mod:`jaxcontext.workflows.mixing`; this script parses flags and writes JSON,
markdown and a PNG.

Usage (after ``pip install -e ".[test]"``)::

    python scripts/mixing.py                               # digits, about 3 minutes on 2 cores
    python scripts/mixing.py --datasets digits Ecdat/Computers --strong-k 3
    python scripts/mixing.py --full                        # more data sets, 5,000 rows, d0 256
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from jaxcontext.workflows import mixing as X  # noqa: E402

DEFAULT = {"datasets": list(X.DEFAULT_DATASETS), "max_rows": 2000, "d0": 64}
FULL = {
    "datasets": ["digits", "ggplot2/diamonds", "Ecdat/Computers", "DAAG/spam7"],
    "max_rows": 5000,
    "d0": 256,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--datasets",
        nargs="+",
        help="data set names (default digits; see scripts/context_usefulness.py --list)",
    )
    p.add_argument("--full", action="store_true", help="4 data sets, 5,000 rows, d0 256")
    p.add_argument("--max-rows", type=int, help="subsample cap (default 2000; 0: all rows)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--d0", type=int, help="tau's largest d (default 64)")
    p.add_argument("--strong-k", type=int, default=2, help="too strong kNN (default 2)")
    p.add_argument("--weak-k", type=int, help="too weak kNN (default training rows / 8)")
    p.add_argument(
        "--strong-gamma",
        type=float,
        default=5.0,
        help="too strong RBF, multiple of 1/(D Var x) (default 5)",
    )
    p.add_argument("--weak-gamma", type=float, default=0.03, help="too weak RBF (default 0.03)")
    p.add_argument("--moderate-k", type=int, default=10, help="reference kNN (default 10)")
    p.add_argument("--moderate-gamma", type=float, default=1.0, help="reference RBF (default 1)")
    p.add_argument("--half-k", type=int, default=10, help="kNN on half the features (10)")
    p.add_argument("--half-ratio", type=float, default=0.5, help="share of features hidden")
    p.add_argument("--weight", type=float, default=0.5, help="convex weight of the strong part")
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=("convolve", "combine", "concat"),
        help="mixing operators to run (default all three)",
    )
    p.add_argument(
        "--no-references", action="store_true", help="leave out the moderate reference contexts"
    )
    p.add_argument("--no-known", action="store_true", help="skip the hypercube section")
    p.add_argument("--known-dim", type=int, default=6, help="hypercube dimension (default 6)")
    p.add_argument("--classification", choices=("ridge", "logistic"), default="ridge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--x64", action="store_true", help="float64 throughout")
    p.add_argument("--cache", help="JAX persistent compilation cache directory")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", default="benchmarks/mixing", help="output directory")
    p.add_argument("--tag", help="file name stem (default 'default' or 'full')")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    if a.x64:
        jax.config.update("jax_enable_x64", True)
    if a.cache:
        jax.config.update("jax_compilation_cache_dir", a.cache)
    grid = dict(FULL if a.full else DEFAULT)
    for k, v in (("datasets", a.datasets), ("max_rows", a.max_rows), ("d0", a.d0)):
        if v is not None:
            grid[k] = v
    plan_options = {
        "strong_k": a.strong_k,
        "weak_k": a.weak_k,
        "strong_gamma": a.strong_gamma,
        "weak_gamma": a.weak_gamma,
        "moderate_k": a.moderate_k,
        "moderate_gamma": a.moderate_gamma,
        "half_k": a.half_k,
        "weight": a.weight,
        "references": not a.no_references,
    }
    if a.kinds:
        plan_options["kinds"] = list(a.kinds)
    tag = a.tag or ("full" if a.full else "default")
    os.makedirs(a.out, exist_ok=True)

    def record(r: dict) -> None:
        nan = float("nan")
        print(
            f"{r['dataset']:16s} {r['label']:30s} {r['settings']['role']:8s} tau "
            f"{r['tau']:10.3f} d* {r['argmin_d']:4d} error {r.get('probe_error', nan):.4f} "
            f"(d {r.get('best_d')}) at d* {r.get('probe_error_at_tau_d', nan):.4f}  "
            f"{r['wall_s']:.1f}s",
            flush=True,
        )

    result = X.run(
        grid["datasets"],
        known=not a.no_known,
        known_options={"dim": a.known_dim, "weight": a.weight},
        on_record=record,
        max_rows=None if grid["max_rows"] == 0 else grid["max_rows"],
        test_fraction=a.test_fraction,
        seed=a.seed,
        d0=grid["d0"],
        classification=a.classification,
        half_ratio=a.half_ratio,
        plan_options=plan_options,
    )
    result["settings"]["command_flags"] = list(argv if argv is not None else sys.argv[1:])
    files = [os.path.join(a.out, f"{tag}.json"), os.path.join(a.out, f"{tag}.md")]
    if not a.no_plots:
        for i, d in enumerate(result["datasets"]):
            slug = re.sub(r"[^A-Za-z0-9]+", "-", d["dataset"]["name"]).strip("-").lower()
            files.append(X.plot(result, os.path.join(a.out, f"{tag}-{slug}.png"), dataset=i))
    result["files"] = [os.path.basename(f) for f in files]
    with open(files[0], "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(files[1], "w") as f:
        env = result["environment"]
        f.write(
            f"# Mixing contexts ({tag})\n\n`python scripts/mixing.py "
            f"{' '.join(result['settings']['command_flags'])}`: {env['date']}, "
            f"{env['device']} ({env['backend']}), JAX {env['jax']}, {env['dtype']}, "
            f"{result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU (load average at the "
            f"end {result['load_average']}).\n\n"
        )
        f.write(X.table(result))
        f.write("\n")
    for s in result["summary"]:
        print(
            f"{s['dataset']}: mixes beating each of their parts: "
            f"{', '.join(s['beat_all_parts']) or 'none'}"
        )
    print(f"{result['wall_s']:.0f} s; wrote", ", ".join(files))
    return result


if __name__ == "__main__":
    main()
