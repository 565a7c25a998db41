"""Measure the sparse x dense block product kernels of jaxcontext._spmm against scipy.

Honest-benchmark rules (STYLE.md 9): every kernel is jitted and compiled first (compile time
reported apart), checked against scipy's float64 product before any timing, then timed with
``block_until_ready`` over several rounds. Rounds are *interleaved* (every candidate, scipy
included, runs once per round in a rotating order), so load from other processes on a shared
machine hits all candidates alike; the median and the spread are reported.

Usage::

    python scripts/measure_sparse_kernels.py                      # the recorded suite
    python scripts/measure_sparse_kernels.py --quick              # a 2-minute smoke run
    python scripts/measure_sparse_kernels.py --only-key           # 100k/5M/64: best kernel vs scipy
    python scripts/measure_sparse_kernels.py --only-key --key-all-graphs \
        --append-key benchmarks/sparse_kernels/key_reruns.json    # one more rerun of the key case
    python scripts/measure_sparse_kernels.py --out benchmarks/sparse_kernels/cpu.json

On a GPU machine the same command measures the GPU kernels (scipy stays on the host CPU as the
baseline); ``--variants`` adds the exploratory variants (unchunked segment, ``.at[].add``,
ELL with stored values, ``jax.experimental.sparse.CSR`` which is cuSPARSE on CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from functools import partial

import numpy as np
import scipy
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxcontext import _spmm  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------------


def _finish(r, c, n, rng):
    """Symmetrise an edge list, drop self-loops and duplicates, random positive float32 weights."""
    keep = r != c
    r, c = r[keep], c[keep]
    a = sp.coo_matrix((np.ones(r.size, np.float32), (r, c)), shape=(n, n)).tocsr()
    a = (a + a.T).tocsr()
    a.sum_duplicates()
    a.sort_indices()
    # symmetric weights: draw for the upper triangle, mirror
    up = sp.triu(a, k=1).tocoo()
    w = rng.uniform(0.5, 1.5, up.nnz).astype(np.float32)
    ij = (np.concatenate([up.row, up.col]), np.concatenate([up.col, up.row]))
    a = sp.coo_matrix((np.concatenate([w, w]), ij), shape=(n, n)).tocsr()
    a.sort_indices()
    return a.astype(np.float32)


def sbm_graph(n, avg_deg, *, blocks=20, p_in=0.8, seed=0):
    """SBM-like random graph: ``n * avg_deg / 2`` edges, a fraction ``p_in`` inside blocks."""
    rng = np.random.default_rng(seed)
    half = int(n * avg_deg / 2)
    blk = rng.integers(0, blocks, n)
    order = np.argsort(blk, kind="stable")
    start = np.searchsorted(blk[order], np.arange(blocks))
    size = np.bincount(blk, minlength=blocks)
    r = rng.integers(0, n, half)
    c = rng.integers(0, n, half)
    inside = rng.random(half) < p_in
    b = blk[r[inside]]
    c[inside] = order[start[b] + (rng.random(inside.sum()) * size[b]).astype(np.int64)]
    return _finish(r, c, n, rng)


def powerlaw_graph(n, avg_deg, *, gamma=2.5, seed=0):
    """Chung-Lu graph with expected degrees ``~ i^(-1/(gamma-1))`` (power-law tail)."""
    rng = np.random.default_rng(seed)
    half = int(n * avg_deg / 2)
    wts = (np.arange(1, n + 1, dtype=np.float64)) ** (-1.0 / (gamma - 1.0))
    p = wts / wts.sum()
    r = rng.choice(n, size=half, p=p)
    c = rng.choice(n, size=half, p=p)
    perm = rng.permutation(n)  # hubs spread over the index range
    return _finish(perm[r], perm[c], n, rng)


def device_arrays(a):
    """The row-sorted arrays a SparseOperator stores, from a scipy CSR matrix."""
    m = a.shape[0]
    deg = np.diff(a.indptr)
    rows = np.repeat(np.arange(m, dtype=np.int32), deg)
    return dict(
        rows=jnp.asarray(rows),
        cols=jnp.asarray(a.indices.astype(np.int32)),
        vals=jnp.asarray(a.data.astype(np.float32)),
        indptr=jnp.asarray(a.indptr.astype(np.int32)),
    )


# --------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------


def _lib(name):
    def f(d, x, m):
        return _spmm.spmm(
            d["rows"], d["cols"], d["vals"], d["indptr"], x, m, kernel=name, layout=d.get("layout")
        )

    return f


def _segment_nochunk(d, x, m):
    return _spmm._segment_cols(d["rows"], d["cols"], d["vals"], x, m)


def _segment_unsorted(d, x, m):
    def one(xc):
        contrib = d["vals"][:, None] * xc[d["cols"]]
        return jax.ops.segment_sum(contrib, d["rows"], num_segments=m)

    return _spmm._column_chunks(one, x, _spmm.SEGMENT_CHUNK_COLS)


def _segment_addat(d, x, m):
    contrib = d["vals"][:, None] * x[d["cols"]]
    return jnp.zeros((m, x.shape[1]), x.dtype).at[d["rows"]].add(contrib, indices_are_sorted=True)


def _ell_stored(d, x, m):
    # ELL with the slot values stored (no per-call take): the cost of keeping values out of the
    # layout
    lay = d["layout"]
    out = _spmm._ell_sum(d["ell_c"], d["ell_v"], x)
    if lay.tail.shape[0]:
        out = out + _spmm._ell_tail(d["rows"], d["cols"], d["vals"], lay.tail, lay.tail_ptr, x, m)
    return out


def _ell_segment_tail(d, x, m):
    # ELL with the tail through segment_sum (the non-CPU path), same layout
    lay = d["layout"]
    v_ell = jnp.take(d["vals"], lay.slots, mode="fill", fill_value=0)
    out = _spmm._ell_sum(lay.cols, v_ell, x)
    if lay.tail.shape[0]:
        t = lay.tail
        out = out + _spmm.spmm_segment(d["rows"][t], d["cols"][t], d["vals"][t], None, x, m)
    return out


def _csr(d, x, m):
    from jax.experimental import sparse as jsparse

    mat = jsparse.CSR((d["vals"], d["cols"], d["indptr"]), shape=(m, x.shape[0]))
    return mat @ x


LIBRARY = {k: _lib(k) for k in ("auto", *_spmm.KERNELS)}
UNCHUNKED = ("segment_nochunk", "segment_addat", "csr")  # materialise an (nnz, k) array on CPU
UNCHUNKED_MAX_BYTES = 2**30
VARIANTS = {
    "segment_nochunk": _segment_nochunk,
    "segment_unsorted": _segment_unsorted,
    "segment_addat": _segment_addat,
    "ell_stored": _ell_stored,
    "ell_segment_tail": _ell_segment_tail,
    "csr": _csr,
}


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def _now():
    return time.perf_counter()


def scipy_block(a, xn):
    return a @ xn


def scipy_columns(a, xt):
    # k single-vector products (xt is x transposed, rows contiguous)
    return [a @ xt[j] for j in range(xt.shape[0])]


def measure_case(a, d, ks, names, *, repeats, check_tol=1e-5, log=print):
    """Compile, check and time every candidate for each column count in ``ks``."""
    m = a.shape[0]
    a64 = a.astype(np.float64)
    rng = np.random.default_rng(1)
    cands = {**LIBRARY, **VARIANTS}
    results = []
    for k in ks:
        xn = rng.standard_normal((a.shape[1], k)).astype(np.float32)
        x = jnp.asarray(xn)
        xt = np.ascontiguousarray(xn.T)
        ref = a64 @ xn.astype(np.float64)
        ref_norm = np.linalg.norm(ref)
        runs = {}
        compiled = {}
        row = {"k": k, "compile_s": {}, "rel_err": {}, "skipped": {}}
        for name in names:
            if name.startswith("ell") and d.get("layout") is None:
                row["skipped"][name] = "no layout"
                continue
            if name in UNCHUNKED and a.nnz * k * 4 > UNCHUNKED_MAX_BYTES:
                row["skipped"][name] = f"(nnz, k) intermediate over {UNCHUNKED_MAX_BYTES >> 20} MiB"
                continue
            f = jax.jit(partial(cands[name], m=m))
            t0 = _now()
            try:
                comp = f.lower(d, x).compile()
            except Exception as e:  # noqa: BLE001 - report and go on
                row["skipped"][name] = f"compile failed: {type(e).__name__}: {e}"[:300]
                continue
            row["compile_s"][name] = _now() - t0
            y = np.asarray(comp(d, x).block_until_ready(), dtype=np.float64)
            err = float(np.linalg.norm(y - ref) / ref_norm)
            row["rel_err"][name] = err
            if not err < check_tol:
                raise AssertionError(f"{name} k={k}: relative error {err:.2e} >= {check_tol}")
            compiled[name] = comp
            runs[name] = []
            del y
        # scipy correctness too (float32 arithmetic)
        baselines = (("scipy_block", scipy_block, xn), ("scipy_columns", scipy_columns, xt))
        for name, fn, arg in baselines:
            y = fn(a, arg)
            y = np.asarray(y if name == "scipy_block" else np.stack(y, axis=1), np.float64)
            row["rel_err"][name] = float(np.linalg.norm(y - ref) / ref_norm)
            runs[name] = []
            del y
        del ref
        order = list(runs)
        for rep in range(repeats):
            rot = order[rep % len(order) :] + order[: rep % len(order)]
            for name in rot:
                if name == "scipy_block":
                    t0 = _now()
                    scipy_block(a, xn)
                    runs[name].append(_now() - t0)
                elif name == "scipy_columns":
                    t0 = _now()
                    scipy_columns(a, xt)
                    runs[name].append(_now() - t0)
                else:
                    t0 = _now()
                    compiled[name](d, x).block_until_ready()
                    runs[name].append(_now() - t0)
        row["times_s"] = runs
        row["median_s"] = {n: float(np.median(t)) for n, t in runs.items()}
        row["min_s"] = {n: float(np.min(t)) for n, t in runs.items()}
        jax_names = [n for n in runs if not n.startswith("scipy") and n != "auto"]
        best = min(jax_names, key=lambda n: row["median_s"][n]) if jax_names else None
        row["best_jax"] = best
        if best:
            row["speedup_vs_scipy_block"] = row["median_s"]["scipy_block"] / row["median_s"][best]
            row["speedup_vs_scipy_columns"] = (
                row["median_s"]["scipy_columns"] / row["median_s"][best]
            )
        results.append(row)
        med = "  ".join(f"{n}={1e3 * row['median_s'][n]:.1f}" for n in runs)
        log(f"  k={k:4d} median ms: {med}  best={best}")
        del compiled, x
    return results


def key_comparison(a, d, kernel, *, k=64, rounds=10, log=print):
    """Paired rounds of (kernel, scipy block product) on one case: the ratio's median and spread."""
    m = a.shape[0]
    rng = np.random.default_rng(2)
    xn = rng.standard_normal((a.shape[1], k)).astype(np.float32)
    x = jnp.asarray(xn)
    comp = jax.jit(partial(LIBRARY[kernel], m=m)).lower(d, x).compile()
    y = np.asarray(comp(d, x), np.float64)
    ref = a.astype(np.float64) @ xn.astype(np.float64)
    err = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
    assert err < 1e-5, err
    tj, ts = [], []
    for r in range(rounds):
        pair = [("jax", None), ("scipy", None)]
        if r % 2:
            pair.reverse()
        for who, _ in pair:
            t0 = _now()
            if who == "jax":
                comp(d, x).block_until_ready()
                tj.append(_now() - t0)
            else:
                a @ xn
                ts.append(_now() - t0)
    ratio = np.array(ts) / np.array(tj)
    out = {
        "kernel": kernel,
        "k": k,
        "rounds": rounds,
        "rel_err": err,
        "jax_s": tj,
        "scipy_s": ts,
        "ratio_scipy_over_jax": ratio.tolist(),
        "ratio_median": float(np.median(ratio)),
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        "load_avg": os.getloadavg(),
    }
    log(
        f"  key {kernel} k={k}: jax median {1e3 * np.median(tj):.1f} ms, scipy median "
        f"{1e3 * np.median(ts):.1f} ms, scipy/jax ratio median {out['ratio_median']:.2f} "
        f"[{out['ratio_min']:.2f}, {out['ratio_max']:.2f}]  load {os.getloadavg()[0]:.1f}"
    )
    return out


# --------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------


def environment():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": str(getattr(dev, "device_kind", dev)),
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "dtype": "float32",
        "scipy_threads": "1 (scipy.sparse products are single-threaded)",
        "jax_threads": (
            "1 (XLA_FLAGS single-threaded)"
            if "intra_op_parallelism_threads=1" in os.environ.get("XLA_FLAGS", "")
            else f"XLA CPU intra-op pool (all {os.cpu_count()} cores)"
        ),
        "load_avg_start": os.getloadavg(),
        "spmm_settings": {
            k: getattr(_spmm, k)
            for k in dir(_spmm)
            if k.isupper()
            and not k.startswith("_")
            and isinstance(getattr(_spmm, k), (int, float, str, tuple, dict))
        },
    }


def graph_info(a, name):
    deg = np.diff(a.indptr)
    return {
        "name": name,
        "n": int(a.shape[0]),
        "nnz": int(a.nnz),
        "deg_mean": float(deg.mean()),
        "deg_max": int(deg.max()),
        "deg_p99": float(np.percentile(deg, 99)),
        "symmetric": True,
    }


def add_layout(a, d, log=print):
    t0 = _now()
    lay = _spmm.prepare("ell", d["rows"], d["cols"], d["vals"], d["indptr"], a.shape)
    d["layout"] = lay
    # for the ell_stored variant
    d["ell_c"] = jnp.take(d["cols"], lay.slots, mode="fill", fill_value=0)
    d["ell_v"] = jnp.take(d["vals"], lay.slots, mode="fill", fill_value=0)
    t = _now() - t0
    w, tail = int(lay.slots.shape[1]), int(lay.tail.shape[0])
    log(
        f"  ell layout: width {w}, tail {tail} entries, padding {lay.slots.size - (a.nnz - tail)}, "
        f"prepare {t:.2f} s"
    )
    return {"ell_width": w, "ell_tail": tail, "ell_slots": int(lay.slots.size), "prepare_s": t}


def _single_thread_key(args):
    """Rerun the key comparison in a subprocess with XLA limited to one thread."""
    env = dict(os.environ)
    one = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + one).strip()
    cmd = [
        sys.executable,
        __file__,
        "--only-key",
        "--key-rounds",
        str(args.key_rounds),
        "--json-stdout",
        "--key-kernels",
        ",".join(args.key_kernels),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    line = [s for s in out.stdout.splitlines() if s.startswith("JSON ")][-1]
    return json.loads(line[5:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    p.add_argument("--only-key", action="store_true", help="only the 100k/5M/64 key comparison")
    p.add_argument("--no-big", action="store_true", help="skip the 1M-node / 20M-nnz case")
    p.add_argument("--variants", action="store_true", help="also time the exploratory variants")
    p.add_argument("--kernels", default=",".join(_spmm.KERNELS), help="library kernels to time")
    p.add_argument("--cols", default="1,2,4,8,16,32,64,128")
    p.add_argument("--big-cols", default="32,64")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--key-rounds", type=int, default=10)
    p.add_argument("--key-kernels", default="auto,bcsr")
    p.add_argument(
        "--single-thread-key",
        action="store_true",
        help="rerun the key comparison with XLA on one thread (subprocess)",
    )
    p.add_argument("--graphs", default="sbm,powerlaw")
    p.add_argument(
        "--key-all-graphs",
        action="store_true",
        help="with --only-key: every graph of --graphs, not only sbm",
    )
    p.add_argument(
        "--append-key",
        default=None,
        metavar="JSON",
        help="with --only-key: append this run to a JSON list (reruns' spread)",
    )
    p.add_argument("--json-stdout", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--table",
        default=None,
        metavar="JSON",
        help="print the Markdown tables of a saved report and exit",
    )
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as fh:
            print(render_table(json.load(fh)))
        return None
    args.key_kernels = [s for s in args.key_kernels.split(",") if s]

    def log(s):
        print(s, file=sys.stderr if args.json_stdout else sys.stdout, flush=True)

    names = [s for s in args.kernels.split(",") if s]
    if args.variants:
        names += list(VARIANTS)
    n, deg = (20_000, 50) if args.quick else (100_000, 50)
    report = {"env": environment(), "cases": [], "key": []}
    log(json.dumps(report["env"]))

    gens = {
        "sbm": lambda: sbm_graph(n, deg, seed=0),
        "powerlaw": lambda: powerlaw_graph(n, deg, seed=0),
    }
    graphs = [g for g in args.graphs.split(",") if g]

    if args.only_key:
        for g in graphs if args.key_all_graphs else ["sbm"]:
            a = gens[g]()
            d = device_arrays(a)
            add_layout(a, d, log)
            info = graph_info(a, f"{g}-{n // 1000}k")
            for kern in args.key_kernels:
                res = key_comparison(a, d, kern, rounds=args.key_rounds, log=log)
                res["graph"] = info
                report["key"].append(res)
            del a, d
        if args.json_stdout:
            print("JSON " + json.dumps(report))
        if args.append_key:
            runs = []
            if os.path.exists(args.append_key):
                with open(args.append_key) as fh:
                    runs = json.load(fh)
            report["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
            runs.append(report)
            with open(args.append_key, "w") as fh:
                json.dump(runs, fh, indent=1)
            log(f"appended to {args.append_key}")
        return report

    ks = [int(s) for s in args.cols.split(",")]
    for g in graphs:
        t0 = _now()
        a = gens[g]()
        info = graph_info(a, f"{g}-{n // 1000}k")
        log(f"{info}  (generated in {_now() - t0:.1f} s)")
        d = device_arrays(a)
        info.update(add_layout(a, d, log))
        res = measure_case(a, d, ks, names, repeats=args.repeats, log=log)
        report["cases"].append({"graph": info, "results": res})
        if g == "sbm":
            for kern in args.key_kernels:
                report["key"].append(key_comparison(a, d, kern, rounds=args.key_rounds, log=log))
        del a, d

        save(report, args.out, log)

    if args.single_thread_key:
        log("single-thread XLA key comparison (subprocess)")
        try:
            st = _single_thread_key(args)
        except subprocess.CalledProcessError as e:
            report["key_single_thread"] = {"error": (e.stderr or "")[-2000:]}
            log(f"  failed: {(e.stderr or '')[-500:]}")
        else:
            report["key_single_thread"] = {"env": st["env"], "key": st["key"]}
            for r in st["key"]:
                log(
                    f"  1-thread {r['kernel']}: ratio median {r['ratio_median']:.2f} "
                    f"[{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]"
                )
        save(report, args.out, log)

    if not args.no_big and not args.quick:
        t0 = _now()
        a = sbm_graph(1_000_000, 20, blocks=50, seed=3)
        info = graph_info(a, "sbm-1M")
        log(f"{info}  (generated in {_now() - t0:.1f} s)")
        d = device_arrays(a)
        info.update(add_layout(a, d, log))
        ks_big = [int(s) for s in args.big_cols.split(",")]
        res = measure_case(a, d, ks_big, names, repeats=max(3, args.repeats // 2), log=log)
        report["cases"].append({"graph": info, "results": res})
        del a, d

    report["env"]["load_avg_end"] = os.getloadavg()
    save(report, args.out, log)
    return report


def render_table(report):
    """Markdown tables (median ms per product; best JAX kernel in bold) from a saved report."""
    lines = []
    for case in report["cases"]:
        g = case["graph"]
        lines.append(
            f"\n**{g['name']}**: n = {g['n']:,}, nnz = {g['nnz']:,}, mean degree "
            f"{g['deg_mean']:.1f}, max {g['deg_max']}; ELL width {g.get('ell_width')}, tail "
            f"{g.get('ell_tail', 0):,} entries\n"
        )
        names = []
        for row in case["results"]:
            names += [n for n in row["median_s"] if n not in names]
        lines.append("| k | " + " | ".join(names) + " | scipy_block / best | faster scipy / best |")
        lines.append("|---:|" + "---:|" * len(names) + "---:|---:|")
        for row in case["results"]:
            cells = []
            for n in names:
                t = row["median_s"].get(n)
                if t is None:
                    cells.append("-")
                elif n == row.get("best_jax"):
                    cells.append(f"**{1e3 * t:.0f}**")
                else:
                    cells.append(f"{1e3 * t:.0f}")
            best = row.get("best_jax")
            if best:
                med = row["median_s"]
                fast = min(med["scipy_block"], med["scipy_columns"])
                ratio = f" | {med['scipy_block'] / med[best]:.2f} | {fast / med[best]:.2f} |"
            else:
                ratio = " | - | - |"
            lines.append(f"| {row['k']} | " + " | ".join(cells) + ratio)
    return "\n".join(lines)


def save(report, path, log=print):
    """Write the report so far (the run is long; partial results survive an interruption)."""
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
