r"""Benchmark harness: cases, honest timing, correctness before timing, memory probes, reports.

A suite module (``jaxcontext.bench.operators``, ``jaxcontext.bench.solvers``, ...) exposes
``cases(size, *, dtype, seed) -> list[Case]``. A :class:`Case` holds lazy builders: ``build()``
makes the shared host data, ``reference(data)`` the float64 truth, and each :class:`Impl` turns the
data into its own arguments with ``prepare(data)`` and is timed on ``fn(*args)``. Nothing is built
until the case runs, so listing and filtering are free and every case's memory is released before
the next one.

For every implementation :func:`run_case`

1. prepares its inputs (not timed; ``prepare_s`` is recorded);
2. for JAX implementations compiles ahead of time, ``jax.jit(fn).lower(*args).compile()``, and
   records ``compile_s`` (tracing + lowering + XLA compilation) apart from run time;
3. calls it once, waits with ``jax.block_until_ready`` and checks the result against the float64
   reference, ``rel_error = ||out - ref||_F / ||ref||_F`` (or the case's own ``compare``); above the
   case tolerance the entry fails loudly (:class:`CorrectnessError`) and is never timed; a peer's
   result (``Impl.peer``) above it is recorded as ``inaccurate``, also never timed, a finding
   about the peer that does not fail the run (:func:`failures`);
4. warms up once more when a call is cheap, then times ``repeats`` calls (each blocked) and keeps
   the median, min and interquartile range; the count shrinks (to at least 3, or the case's
   ``max_repeats`` for calls of ``SLOW_CALL_S`` or more) when calls are slow, judged for a peer
   by its first call and for jaxcontext's own entries, whose first call may be mostly
   compilation, by the first timed call; with ``interleave`` every implementation goes through
   steps 1-3 first and the timed calls then run in rounds, one call of each per round;
5. optionally measures peak memory in a fresh subprocess (:func:`memory_probe`).

The ratio ``speedup = t_baseline / t_impl`` compares medians within one case and one run (> 1: the
implementation is faster than the case's baseline).

Example:
    >>> import numpy as np
    >>> case = Case(
    ...     suite="demo", name="double", params={},
    ...     build=lambda: np.arange(4.0),
    ...     reference=lambda x: 2.0 * x,
    ...     impls=(Impl("numpy", prepare=lambda x: (x,), fn=lambda x: x + x, baseline=True),),
    ...     tol=1e-6)
    >>> [e.status for e in run_case(case, repeats=3)]
    ['ok']
"""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from .._jit_maps import BOUNDARY_FRACTION, release_compiled_programs

SCHEMA = "jaxcontext.bench/1"
SIZES = ("tiny", "quick", "full")
DTYPES = ("float32", "float64")


class SuiteUnavailable(RuntimeError):
    """Raised by a suite's ``cases`` when the suite is not implemented yet."""


class ImplFailed(RuntimeError):
    """Raised by an implementation that gave up in a documented way.

    E.g. a peer solver that did not converge: recorded as status ``failed`` with the message, not
    counted as a broken run.
    """


class CorrectnessError(AssertionError):
    """An implementation's result differs from the float64 reference by more than the tolerance."""


# --------------------------------------------------------------------------------------------------
# Cases and results
# --------------------------------------------------------------------------------------------------
class Impl(NamedTuple):
    """One implementation of a case.

    Attributes:
        name: label in the table (``"jaxcontext"``, ``"scipy CSR @ X"``, ...).
        prepare: ``prepare(data) -> args``, builds this implementation's inputs (not timed).
        fn: the timed function, ``fn(*args) -> result``; pure JAX when ``jax`` is True.
        jax: compile ``fn`` with ``jax.jit`` ahead of time and block on its outputs.
        baseline: the established tool the case compares against (one per case).
        probe_memory: measure this implementation's peak memory when the case asks for it.
        skip: a reason not to run it (e.g. ``"needs 40 GB"``); recorded as a skipped entry.
        note: free text carried to the JSON.
        tol: this implementation's accepted error when it differs from the case's (e.g. an
            approximate method whose reached accuracy is the point of the entry); None:
            ``case.tol``.
        details: ``details(out, data) -> dict`` of facts about the checked result recorded with
            the entry (e.g. a solver's iterations and residual certificate); None: nothing.
        peer: another library's implementation, not jaxcontext's (e.g. scipy's ARPACK). A peer
            result above the tolerance is a finding about the peer: status ``inaccurate`` (not
            timed; no :class:`CorrectnessError`, even in strict mode) instead of ``wrong``, and
            it does not fail the run.
    """

    name: str
    prepare: Callable[[Any], tuple]
    fn: Callable[..., Any]
    jax: bool = False
    baseline: bool = False
    probe_memory: bool = True
    skip: str | None = None
    note: str = ""
    tol: float | None = None
    details: Callable[[Any, Any], dict] | None = None
    peer: bool = False


def rel_error(out: Any, ref: Any, data: Any = None) -> float:
    r"""Relative Frobenius error ``||out - ref||_F / ||ref||_F`` computed in float64."""
    o = np.asarray(out, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if o.shape != r.shape:
        raise CorrectnessError(f"result has shape {o.shape}, reference has shape {r.shape}")
    den = float(np.linalg.norm(r))
    num = float(np.linalg.norm(o - r))
    return num / den if den > 0 else num


class Case(NamedTuple):
    """A benchmark case: lazy data, a float64 reference and the implementations compared.

    Attributes:
        suite: suite name.
        name: unique name within the suite, e.g. ``"sparse/n10000/k64"`` (matched by ``--only``).
        params: sizes and settings, copied to every entry.
        build: ``build() -> data`` (host arrays shared by the implementations).
        reference: ``reference(data) -> truth`` in float64.
        impls: the implementations; exactly one should have ``baseline=True``.
        tol: largest accepted ``compare`` value.
        compare: ``compare(out, ref, data) -> float`` (default :func:`rel_error`).
        memory: also measure peak memory of the implementations in subprocesses.
        max_repeats: cap on the timed calls of each implementation whose call takes
            ``SLOW_CALL_S`` or more (None: the run's ``repeats``), for cases whose single call
            takes long on a CPU; faster entries (a GPU's) keep the run's ``repeats``.
    """

    suite: str
    name: str
    params: dict
    build: Callable[[], Any]
    reference: Callable[[Any], Any]
    impls: tuple
    tol: float
    compare: Callable[[Any, Any, Any], float] = rel_error
    memory: bool = False
    max_repeats: int | None = None


class Entry(NamedTuple):
    """One measured (case, implementation) pair.

    ``status`` is ``ok``, ``wrong`` (failed the correctness check, not timed), ``inaccurate`` (a
    peer's result failed the correctness check: recorded with its error, not timed, not a failure
    of the run), ``skipped``, ``failed`` (raised :class:`ImplFailed`: a documented give-up, e.g. no
    convergence) or ``error`` (raised anything else). Times are seconds; ``times_s`` holds every
    timed call. :func:`failures` says which statuses fail a run.
    """

    suite: str
    case: str
    impl: str
    params: dict
    baseline: bool
    status: str
    rel_error: float | None = None
    tol: float | None = None
    time_median_s: float | None = None
    time_min_s: float | None = None
    time_iqr_s: float | None = None
    times_s: tuple = ()
    repeats: int = 0
    compile_s: float | None = None
    first_call_s: float | None = None
    prepare_s: float | None = None
    speedup: float | None = None
    baseline_impl: str | None = None
    memory: dict | None = None
    dtype: str | None = None
    device: str | None = None
    message: str = ""
    details: dict | None = None


class Report(NamedTuple):
    """A whole run: environment header, settings and entries."""

    environment: dict
    settings: dict
    entries: tuple


# --------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info() -> list:
    try:
        import threadpoolctl

        return [
            {k: d.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
            for d in threadpoolctl.threadpool_info()
        ]
    except Exception:  # threadpoolctl is optional (comes with scikit-learn)
        return []


def _git_commit() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _source_digest() -> str:
    """Return a SHA-256 digest (16 hex digits) of the package's Python sources, bench excluded.

    It tells apart runs made on different (e.g. uncommitted) states of the working tree.
    """
    import hashlib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for dirpath, dirnames, files in sorted(os.walk(root)):
        dirnames[:] = sorted(d for d in dirnames if d not in ("bench", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:16]


def _version(mod: str) -> str | None:
    try:
        return importlib.import_module(mod).__version__
    except Exception:
        return None


def _host_memory() -> dict:
    """Host page settings that move large CPU solves: transparent huge pages and glibc tunables.

    XLA on CPU takes fresh buffers from ``malloc`` for every call; with 4 KiB pages each first
    touch of a large one faults (1M-node block model: ~2.8M faults a solve, a fifth of its CPU
    time in the kernel). ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` lets glibc advise huge pages
    where the system's THP mode is ``madvise`` (benchmarks/solvers/README.md, session 10).
    """
    out: dict[str, Any] = {"GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES")}
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            txt = f.read()
        out["transparent_hugepage"] = txt[txt.index("[") + 1 : txt.index("]")]
    except (OSError, ValueError):
        out["transparent_hugepage"] = None
    return out


def environment(dtype: str = "float32") -> dict:
    """Everything a figure depends on: device, versions, dtype, CPU and thread settings, load."""
    import jaxlib

    import jaxcontext

    dev = jax.devices()[0]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    env_threads = {
        k: os.environ.get(k)
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
        if os.environ.get(k) is not None
    }
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "backend": jax.default_backend(),
        "dtype": dtype,
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "sklearn": _version("sklearn"),
        "jaxcontext": jaxcontext.__version__,
        "git_commit": _git_commit(),
        "source_digest": _source_digest(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "thread_env": env_threads,
        "host_memory": _host_memory(),
        "blas": _blas_info(),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def device_label() -> str:
    """``"cpu (cpu)"`` / ``"gpu (NVIDIA H100 80GB HBM3)"``: platform and device kind."""
    dev = jax.devices()[0]
    return f"{dev.platform} ({dev.device_kind})"


# --------------------------------------------------------------------------------------------------
# Timing and correctness
# --------------------------------------------------------------------------------------------------
def _host_array(x: Any) -> Any:
    """``x`` as a numpy array; a GPU peer's cupy or torch array is copied to the host first."""
    mod = type(x).__module__ or ""
    if mod.startswith("cupy"):
        return np.asarray(x.get())
    if mod.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _to_host(out: Any) -> Any:
    return jax.tree.map(_host_array, out)


def _block(out: Any) -> Any:
    return jax.block_until_ready(out)


def summarize(times: Sequence[float]) -> tuple[float, float, float]:
    """Return ``(median, min, interquartile range)`` of a list of times."""
    t = np.asarray(times, dtype=np.float64)
    q25, q50, q75 = np.percentile(t, [25, 50, 75])
    return float(q50), float(t.min()), float(q75 - q25)


def compile_jax(fn: Callable, args: tuple) -> tuple[Callable, float]:
    """Compile ``fn`` for ``args`` ahead of time; return the executable and the seconds it took.

    The time covers tracing, lowering and XLA compilation, and never a run.
    """

    def fresh(*a):  # a new function object: no trace or compile cache hit from an earlier case
        return fn(*a)

    t0 = time.perf_counter()
    compiled = jax.jit(fresh).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def check(
    case: Case, impl_name: str, out: Any, ref: Any, data: Any, tol: float | None = None
) -> float:
    """Return the case's error measure of ``out``; raise :class:`CorrectnessError` above ``tol``.

    ``tol`` defaults to ``case.tol``.
    """
    tol = case.tol if tol is None else tol
    err = float(case.compare(_to_host(out), ref, data))
    if not math.isfinite(err) or err > tol:
        raise CorrectnessError(
            f"{case.suite}/{case.name} [{impl_name}]: error {err:.3e} exceeds the tolerance "
            f"{tol:.3e} against the float64 reference; the result is wrong, not timed"
        )
    return err


#: Calls at least this long are held to a case's ``max_repeats`` (seconds). The cap exists for
#: CPU solves of seconds to minutes; the same case on a GPU (40-150 ms) was timed once, and that
#: one call ran 149 ms where five calls in another process had a median of 44 ms (session 13,
#: H200, RBF 20k, same solver).
SLOW_CALL_S = 1.0


def _n_repeats(first_s: float, repeats: int, budget_s: float) -> int:
    """At most ``repeats`` timed calls, fewer (but >= 3) when one call is slow."""
    if first_s <= 0:
        return repeats
    return int(max(min(repeats, 3), min(repeats, math.floor(budget_s / first_s))))


class _Timing(NamedTuple):
    """An implementation checked and warmed up, with its timed calls to come (``times``)."""

    fn: Callable
    args: tuple
    times: list
    n: int
    base: dict
    err: float
    compile_s: float | None
    first_s: float
    prepare_s: float


def _start_impl(
    case: Case,
    impl: Impl,
    data: Any,
    ref: Any,
    *,
    repeats: int,
    budget_s: float,
    strict: bool,
    dtype: str | None,
) -> Entry | _Timing:
    """Steps 1-4 of the protocol up to the timed calls: an :class:`Entry` when it ends there."""
    base = dict(
        suite=case.suite,
        case=case.name,
        impl=impl.name,
        params=dict(case.params),
        baseline=impl.baseline,
        tol=case.tol if impl.tol is None else impl.tol,
        dtype=dtype,
        device=device_label(),
    )
    if impl.skip:
        return Entry(status="skipped", message=impl.skip, **base)
    t0 = time.perf_counter()
    args = _block(tuple(impl.prepare(data)))
    prepare_s = time.perf_counter() - t0
    compile_s = None
    fn = impl.fn
    if impl.jax:
        fn, compile_s = compile_jax(impl.fn, args)
    t0 = time.perf_counter()
    out = _block(fn(*args))
    first_s = time.perf_counter() - t0
    details = _details(impl, out, data)
    if details is not None:
        base["details"] = details
    try:
        err = check(case, impl.name, out, ref, data, tol=impl.tol)
    except CorrectnessError as e:
        if impl.peer:  # a finding about the peer, not a failure of this run
            print(f"note: inaccurate peer result: {e}", file=sys.stderr, flush=True)
        elif strict:
            raise
        else:
            print(f"FAILED: {e}", file=sys.stderr, flush=True)
        return Entry(
            status="inaccurate" if impl.peer else "wrong",
            rel_error=_safe_err(case, out, ref, data),
            compile_s=compile_s,
            first_call_s=first_s,
            prepare_s=prepare_s,
            message=str(e),
            **base,
        )
    del out
    times: list[float] = []
    if first_s >= 1.0 and not impl.peer:
        # a first call of our own entries can be mostly tracing and compilation (20-50 s of
        # XLA GPU compiles for 40-200 ms solves): the next call is the first timed one, and its
        # time, not the first call's, sets how many fit in the budget
        t0 = time.perf_counter()
        _block(fn(*args))
        times.append(time.perf_counter() - t0)
        n = _n_repeats(times[0], repeats, budget_s)
    else:
        if first_s < 1.0:  # one more warm-up when it is cheap (the checked call was the first)
            _block(fn(*args))
        n = _n_repeats(first_s, repeats, budget_s)
    if case.max_repeats is not None and (times[0] if times else first_s) >= SLOW_CALL_S:
        n = max(1, min(n, case.max_repeats))
    return _Timing(fn, args, times, n, base, err, compile_s, first_s, prepare_s)


def _timed_call(t: _Timing) -> _Timing:
    """One more timed (blocked) call of ``t``."""
    t0 = time.perf_counter()
    _block(t.fn(*t.args))
    t.times.append(time.perf_counter() - t0)
    return t


def _finish_impl(t: _Timing) -> Entry:
    med, mn, iqr = summarize(t.times)
    return Entry(
        status="ok",
        rel_error=t.err,
        time_median_s=med,
        time_min_s=mn,
        time_iqr_s=iqr,
        times_s=tuple(t.times),
        repeats=t.n,
        compile_s=t.compile_s,
        first_call_s=t.first_s,
        prepare_s=t.prepare_s,
        **t.base,
    )


def run_impl(
    case: Case,
    impl: Impl,
    data: Any,
    ref: Any,
    *,
    repeats: int,
    budget_s: float = 60.0,
    strict: bool = False,
    dtype: str | None = None,
) -> Entry:
    """Measure one implementation of a case (see the module docstring for the protocol)."""
    t = _start_impl(
        case, impl, data, ref, repeats=repeats, budget_s=budget_s, strict=strict, dtype=dtype
    )
    if isinstance(t, Entry):
        return t
    while len(t.times) < t.n:
        _timed_call(t)
    return _finish_impl(t)


#: Entry statuses that make a run fail (exit status 1 of ``python -m jaxcontext.bench``).
FAILING = ("wrong", "error")


def failures(entries: Sequence[Entry]) -> list[Entry]:
    """The entries that make a run fail: a wrong result or a crash (:data:`FAILING`).

    Not a skip, a documented give-up (``failed``) or a peer's inaccurate result
    (``inaccurate``): those are findings recorded in the report.
    """
    return [e for e in entries if e.status in FAILING]


def _details(impl: Impl, out: Any, data: Any) -> dict | None:
    """``impl.details(out, data)`` on the host copy of the checked result, or an error note."""
    if impl.details is None:
        return None
    try:
        return dict(impl.details(_to_host(out), data))
    except Exception as exc:  # details are a record, never the reason an entry fails
        return {"details_error": f"{type(exc).__name__}: {exc}"}


def _safe_err(case: Case, out: Any, ref: Any, data: Any) -> float | None:
    try:
        return float(case.compare(_to_host(out), ref, data))
    except Exception:
        return None


def _with_speedups(entries: list[Entry]) -> list[Entry]:
    base = next((e for e in entries if e.baseline and e.status == "ok"), None)
    if base is None:
        return entries
    out = []
    for e in entries:
        if e.status == "ok" and e.time_median_s:
            e = e._replace(speedup=base.time_median_s / e.time_median_s, baseline_impl=base.impl)
        else:
            e = e._replace(baseline_impl=base.impl)
        out.append(e)
    return out


def _entry_line(e: Entry) -> str:
    """One progress line for a finished entry: status, median time, error, compile time."""
    parts = [e.status]
    if e.time_median_s is not None:
        parts.append(f"median {e.time_median_s:.4g} s over {len(e.times_s or ())}")
    if e.rel_error is not None:
        parts.append(f"rel.err {e.rel_error:.2e}")
    if e.compile_s is not None:
        parts.append(f"compile {e.compile_s:.3g} s")
    if e.first_call_s is not None:
        parts.append(f"first call {e.first_call_s:.3g} s")
    return ", ".join(parts)


def _attempt(case: Case, impl: Impl, step: Callable[[], Any], *, strict: bool, dtype: str):
    """``step()``, or the entry a documented give-up or a crash of ``impl`` becomes."""
    try:
        return step()
    except CorrectnessError:
        raise
    except ImplFailed as exc:  # a documented give-up: recorded, not a broken run
        print(f"note: {case.suite}/{case.name} [{impl.name}]: {exc}", file=sys.stderr, flush=True)
        status, tol, msg = "failed", (case.tol if impl.tol is None else impl.tol), str(exc)
    except Exception as exc:  # a crash is an entry, not the end of the run
        if strict:
            raise
        msg = f"{type(exc).__name__}: {exc}"
        print(f"ERROR: {case.suite}/{case.name} [{impl.name}]: {msg}", file=sys.stderr, flush=True)
        status, tol = "error", case.tol
    return Entry(
        suite=case.suite,
        case=case.name,
        impl=impl.name,
        params=dict(case.params),
        baseline=impl.baseline,
        status=status,
        tol=tol,
        dtype=dtype,
        device=device_label(),
        message=msg,
    )


def run_case(
    case: Case,
    *,
    repeats: int = 5,
    budget_s: float = 60.0,
    strict: bool = False,
    memory: bool = False,
    size: str | None = None,
    dtype: str = "float32",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    interleave: bool = False,
) -> list[Entry]:
    """Build a case, compute its reference, and measure every implementation.

    Args:
        case: the case.
        repeats: timed calls per implementation (fewer, but at least 3, when one call takes more
            than ``budget_s / repeats``).
        budget_s: time budget of the timed calls of one implementation.
        strict: raise :class:`CorrectnessError` on a wrong result instead of recording it.
        memory: run :func:`memory_probe` for ``case.memory`` cases (needs ``size``).
        size: the size the suite built the case at (the memory probe rebuilds it).
        dtype: the benchmark dtype name, recorded with each entry.
        seed: the seed the suite built the case with.
        progress: called with one line per step (e.g. ``print`` to stderr).
        interleave: check and warm up every implementation first, then time them in rounds of
            one call each (alternating the order from round to round), so that a change of the
            host's load between entries lands in every entry alike: on a shared host the ratios
            of one run are then paired. All implementations' inputs are held at once.

    Returns:
        One :class:`Entry` per implementation, with speedups against the baseline filled in.
    """
    say = progress or (lambda s: None)
    data = case.build()
    ref = case.reference(data)
    kw = dict(repeats=repeats, budget_s=budget_s, strict=strict, dtype=dtype)
    slots: list[Any] = []
    for impl in case.impls:
        say(f"{case.suite}/{case.name} [{impl.name}]")
        if interleave:
            slot = _attempt(
                case, impl, functools.partial(_start_impl, case, impl, data, ref, **kw),
                strict=strict, dtype=dtype,
            )
            if isinstance(slot, Entry):
                say(f"  -> {_entry_line(slot)}")
        else:
            slot = _attempt(
                case, impl, functools.partial(run_impl, case, impl, data, ref, **kw),
                strict=strict, dtype=dtype,
            )
            say(f"  -> {_entry_line(slot)}")
            gc.collect()
        slots.append(slot)
    if interleave:
        rnd = 0
        while any(isinstance(t, _Timing) and len(t.times) < t.n for t in slots):
            order = list(range(len(slots)))
            for i in order if rnd % 2 == 0 else order[::-1]:
                t = slots[i]
                if isinstance(t, _Timing) and len(t.times) < t.n:
                    slots[i] = _attempt(
                        case, case.impls[i], functools.partial(_timed_call, t), strict=strict,
                        dtype=dtype,
                    )
            rnd += 1
        for i, t in enumerate(slots):
            if isinstance(t, _Timing):
                slots[i] = _finish_impl(t)
                say(f"{case.suite}/{case.name} [{case.impls[i].name}] -> {_entry_line(slots[i])}")
        gc.collect()
    entries: list[Entry] = slots
    del data, ref, slots
    gc.collect()
    if memory and case.memory:
        for i, (impl, e) in enumerate(zip(case.impls, entries, strict=True)):
            if e.status != "ok" or not impl.probe_memory:
                continue
            say(f"{case.suite}/{case.name} [{impl.name}] memory probe (subprocess)")
            mem = memory_probe(case.suite, case.name, impl.name, size=size, dtype=dtype, seed=seed)
            entries[i] = e._replace(memory=mem)
    return _with_speedups(entries)


# --------------------------------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------------------------------
def suite_cases(suite: str, size: str, *, dtype: str = "float32", seed: int = 0) -> list[Case]:
    """Return the cases of ``jaxcontext.bench.<suite>`` at ``size``.

    Raises:
        ValueError: unknown suite or size.
        SuiteUnavailable: the suite exists but is not implemented yet.
    """
    from . import SUITES

    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    mod = importlib.import_module(f"jaxcontext.bench.{suite}")
    return list(mod.cases(size, dtype=np.dtype(dtype), seed=seed))


def _matches(pat: str, *texts: str) -> bool:
    """``pat`` as a glob (when it has ``*?[``) matching one of ``texts``, else a substring."""
    import fnmatch

    if any(ch in pat for ch in "*?["):
        return any(fnmatch.fnmatch(t, pat) for t in texts)
    return any(pat in t for t in texts)


def select(cases: Sequence[Case], only: Sequence[str] | None) -> list[Case]:
    """Keep the cases whose ``suite/name`` contains one of ``only`` (or matches it as a glob)."""
    if not only:
        return list(cases)
    return [c for c in cases if any(_matches(p, f"{c.suite}/{c.name}", c.name) for p in only)]


def select_impls(
    cases: Sequence[Case],
    impls: Sequence[str] | None,
    exclude: Sequence[str] | None = None,
) -> list[Case]:
    """Keep the implementations named by ``impls``, and each case's baseline; drop ``exclude``.

    A pattern matches a name that contains it (case-insensitive); one with ``*?[`` matches the
    whole name as a glob, so ``'[j]axcontext'`` is the ``auto`` entry alone. The baseline stays
    because speedups are taken against it, unless a pattern of ``exclude`` names it (then the
    case's entries carry no speedup: e.g. a GPU run that leaves out a slow CPU baseline).
    Implementations matching ``exclude`` are dropped. A case is kept when one of its
    implementations is chosen (named by ``impls``, or with no ``impls`` any that is not
    excluded), not merely kept as the baseline.
    """
    if not impls and not exclude:
        return list(cases)
    pats = [p.lower() for p in impls or ()]
    drop = [p.lower() for p in exclude or ()]

    def dropped(i: Impl) -> bool:
        return any(_matches(p, i.name.lower()) for p in drop)

    def chosen(i: Impl) -> bool:
        return not dropped(i) and (not pats or any(_matches(p, i.name.lower()) for p in pats))

    out = []
    for c in cases:
        if any(chosen(i) for i in c.impls):
            kept = tuple(i for i in c.impls if chosen(i) or (i.baseline and not dropped(i)))
            out.append(c._replace(impls=kept))
    return out


def rebase(cases: Sequence[Case], patterns: Sequence[str] | None) -> list[Case]:
    """Take each case's speedups against the implementation named by ``patterns`` instead.

    Patterns match names as in :func:`select_impls` and are tried in order: the first that
    matches exactly one implementation of a case makes it the baseline (and the case's own
    baseline an ordinary entry); a case where none does keeps its baseline. E.g. a GPU run
    without the CPU peers: ``--exclude arpack --baseline 'cupy svds' --baseline 'cupy eigsh'``.
    """
    if not patterns:
        return list(cases)
    out = []
    for c in cases:
        for pat in patterns:
            hits = [i for i in c.impls if _matches(pat.lower(), i.name.lower())]
            if len(hits) == 1:
                c = c._replace(impls=tuple(i._replace(baseline=i is hits[0]) for i in c.impls))
                break
        out.append(c)
    return out


def run(
    cases: Sequence[Case],
    *,
    repeats: int,
    settings: dict,
    budget_s: float = 60.0,
    memory: bool = True,
    strict: bool = False,
    progress: Callable[[str], None] | None = None,
    interleave: bool = False,
) -> Report:
    """Run ``cases`` one after the other and return the :class:`Report`.

    ``interleave``: time each case's implementations in interleaved rounds (:func:`run_case`).
    """
    env = environment(settings.get("dtype", "float32"))
    entries: list[Entry] = []
    t0 = time.perf_counter()
    for i, case in enumerate(cases):
        if progress:
            progress(f"[{i + 1}/{len(cases)}] {case.suite}/{case.name}")
        # before the case's warm-up, never between its timed calls (see jaxcontext._jit_maps)
        if release_compiled_programs(BOUNDARY_FRACTION, warn=False) and progress:
            progress("  released compiled programs (near the process's memory-map limit)")
        entries.extend(
            run_case(
                case,
                repeats=repeats,
                budget_s=budget_s,
                strict=strict,
                memory=memory,
                size=settings.get("size"),
                dtype=settings.get("dtype", "float32"),
                seed=settings.get("seed", 0),
                progress=progress,
                interleave=interleave,
            )
        )
    env["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    env["wall_s"] = time.perf_counter() - t0
    return Report(environment=env, settings=dict(settings), entries=tuple(entries))


# --------------------------------------------------------------------------------------------------
# Memory probes (one fresh subprocess per implementation)
# --------------------------------------------------------------------------------------------------
def read_proc_status() -> dict:
    """``VmRSS`` and ``VmHWM`` (peak resident set) of this process in bytes, from /proc."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(line.split()[1]) * 1024
    except OSError:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["VmHWM"] = ru if sys.platform == "darwin" else ru * 1024
    return out


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs``); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def device_memory_stats() -> dict | None:
    """Return ``bytes_in_use`` / ``peak_bytes_in_use`` of the first device when reported (GPU).

    None on CPU, where the host resident set is the device memory.
    """
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return None
    try:
        stats = dev.memory_stats()
    except Exception:
        return None
    if not stats:
        return None
    return {k: int(stats[k]) for k in ("bytes_in_use", "peak_bytes_in_use") if k in stats}


def probe_in_this_process(case: Case, impl: Impl) -> dict:
    """Measure peak memory of one implementation in the current (fresh) process.

    Stages: build the data and the implementation's inputs; compile (JAX); run once and block. After
    each stage the peak RSS is read and reset, so ``product_peak_bytes`` is the peak while the
    product ran and ``product_increment_bytes`` what the product added to the resident inputs.
    ``process_peak_bytes`` is the peak of the whole process (imports, data, compile, product).
    """
    s0 = read_proc_status()
    data = case.build()
    args = _block(tuple(impl.prepare(data)))
    del data
    gc.collect()
    s_setup = read_proc_status()
    resettable = reset_peak_rss()
    fn, compile_s = impl.fn, None
    s_compile = None
    if impl.jax:
        fn, compile_s = compile_jax(impl.fn, args)
        s_compile = read_proc_status()
        reset_peak_rss()
    before = read_proc_status()
    t0 = time.perf_counter()
    out = _block(fn(*args))
    run_s = time.perf_counter() - t0
    s_run = read_proc_status()
    del out
    peaks = [s_setup["VmHWM"], s_run["VmHWM"]] + ([s_compile["VmHWM"]] if s_compile else [])
    res = {
        "method": "subprocess, /proc/self/status VmHWM"
        + (" reset between stages (clear_refs)" if resettable else " (no reset: whole process)"),
        "process_peak_bytes": max(peaks),
        "rss_after_import_bytes": s0.get("VmRSS"),
        "rss_after_setup_bytes": s_setup.get("VmRSS"),
        "setup_peak_bytes": s_setup["VmHWM"],
        "compile_peak_bytes": s_compile["VmHWM"] if (s_compile and resettable) else None,
        "product_peak_bytes": s_run["VmHWM"] if resettable else None,
        "product_increment_bytes": (s_run["VmHWM"] - before.get("VmRSS", 0))
        if resettable and "VmRSS" in before
        else None,
        "compile_s": compile_s,
        "run_s": run_s,
        "device": device_memory_stats(),
    }
    return res


def memory_probe(
    suite: str,
    case: str,
    impl: str,
    *,
    size: str | None,
    dtype: str = "float32",
    seed: int = 0,
    timeout_s: float = 1800.0,
) -> dict:
    """Measure the peak memory of ``suite/case [impl]`` in a fresh subprocess.

    Runs ``python -m jaxcontext.bench._memprobe`` (see :func:`probe_in_this_process`) and returns
    its report, or ``{"error": ...}`` when the probe fails.
    """
    if size is None:
        return {"error": "memory probe needs the size the case was built with"}
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [
        sys.executable,
        "-m",
        "jaxcontext.bench._memprobe",
        "--suite",
        suite,
        "--case",
        case,
        "--impl",
        impl,
        "--size",
        size,
        "--dtype",
        dtype,
        "--seed",
        str(seed),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"memory probe timed out after {timeout_s:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        msg = f"memory probe failed (exit {proc.returncode}): {' | '.join(tail)}"
        print(f"ERROR: {suite}/{case} [{impl}]: {msg}", file=sys.stderr, flush=True)
        return {"error": msg}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------------------------
# Output: table, JSON, markdown
# --------------------------------------------------------------------------------------------------
def fmt_time(t: float | None) -> str:
    """Seconds as a short string with a unit (``"812 us"``, ``"12.3 ms"``, ``"4.56 s"``)."""
    if t is None or not math.isfinite(t):
        return "-"
    if t < 1e-3:
        return f"{t * 1e6:.0f} us"
    if t < 1.0:
        return f"{t * 1e3:.3g} ms"
    return f"{t:.3g} s"


def fmt_bytes(b: float | None) -> str:
    """Bytes as MB/GB (decimal units) or ``"-"``."""
    if b is None:
        return "-"
    if abs(b) >= 1e9:
        return f"{b / 1e9:.2f} GB"
    return f"{b / 1e6:.0f} MB"


TABLE_COLUMNS = (
    "suite",
    "case",
    "impl",
    "median",
    "min",
    "IQR",
    "n",
    "speedup",
    "rel.err",
    "compile",
    "status",
)


def _status(e: Entry) -> str:
    if e.status == "skipped":
        return f"skipped: {e.message}"
    if e.status == "error":  # the exception type; the whole message is in the JSON and on stderr
        return f"error: {e.message.split(':', 1)[0]}"
    if e.status == "wrong":
        return "WRONG: error > tol, not timed"
    if e.status == "inaccurate":
        return "inaccurate (peer): error > tol, not timed"
    if e.status == "failed":
        return f"failed: {e.message[:60]}"
    return e.status


def _row(e: Entry) -> list[str]:
    return [
        e.suite,
        e.case,
        e.impl + (" *" if e.baseline else ""),
        fmt_time(e.time_median_s),
        fmt_time(e.time_min_s),
        fmt_time(e.time_iqr_s),
        str(e.repeats) if e.repeats else "-",
        f"{e.speedup:.2f}x" if e.speedup is not None else "-",
        f"{e.rel_error:.1e}" if e.rel_error is not None else "-",
        fmt_time(e.compile_s) if e.compile_s is not None else "-",
        _status(e),
    ]


def _memory_rows(entries: Sequence[Entry]) -> list[list[str]]:
    rows = []
    for e in entries:
        if not e.memory:
            continue
        m = e.memory
        if "error" in m:
            rows.append([e.case, e.impl, "error", m["error"][:60], "-", "-"])
            continue
        dev = m.get("device") or {}
        rows.append(
            [
                e.case,
                e.impl,
                fmt_bytes(m.get("process_peak_bytes")),
                fmt_bytes(m.get("rss_after_setup_bytes")),
                fmt_bytes(m.get("product_increment_bytes")),
                fmt_bytes(dev.get("peak_bytes_in_use")) if dev else "-",
            ]
        )
    return rows


MEMORY_COLUMNS = ("case", "impl", "process peak", "after setup", "product +", "device peak")


def _align(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines)


def env_summary(env: dict) -> str:
    """One line: device, versions, dtype, CPUs and load."""
    la = env.get("load_average_start")
    return (
        f"device {env['platform']} ({env['device_kind']}) x{env['device_count']} | jax "
        f"{env['jax']} jaxlib {env['jaxlib']} numpy {env['numpy']} scipy {env['scipy']} | dtype "
        f"{env['dtype']} | {env['cpus_usable']}/{env['cpu_count']} CPUs {env['cpu_model']}"
        + (f" | load {la[0]:.2f}" if la else "")
    )


#: Footnote on the two statuses of a result above its tolerance (table and markdown).
STATUS_NOTE = (
    "WRONG = result above its tolerance: not timed, fails the run; inaccurate (peer) = a peer "
    "library's result (Impl.peer) above it: error recorded, not timed, no speedup, a finding "
    "about the peer that does not fail the run"
)


def format_table(report: Report) -> str:
    """Return the plain-text report printed to stdout: environment line, results, memory."""
    out = [env_summary(report.environment), ""]
    out.append(_align(TABLE_COLUMNS, [_row(e) for e in report.entries]))
    out.append(
        "* baseline; speedup = baseline median / median (same case, same run); rel.err = "
        "||out - ref||_F / ||ref||_F vs float64 (solvers: max_i |s_i - s_i^ref| / s_i^ref); "
        "compile = AOT trace+lower+compile; " + STATUS_NOTE
    )
    mem = _memory_rows(report.entries)
    if mem:
        out += ["", "peak memory (fresh subprocess per implementation; RSS from /proc VmHWM)"]
        out.append(_align(MEMORY_COLUMNS, mem))
    return "\n".join(out)


def to_json(report: Report) -> dict:
    """Return the JSON document: schema, environment header, settings, entries."""
    return {
        "schema": SCHEMA,
        "environment": report.environment,
        "settings": report.settings,
        "entries": [e._asdict() for e in report.entries],
    }


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(report: Report, path: str) -> None:
    """Write :func:`to_json` to ``path`` (non-finite floats become null)."""
    doc = _finite(to_json(report))
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=_json_default)
        f.write("\n")


def _finite(o: Any) -> Any:
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = [[str(x).replace("|", "\\|") for x in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def format_markdown(report: Report, *, title: str | None = None, command: str | None = None) -> str:
    """Return a short markdown summary: machine, date, versions, command, results, memory."""
    env, s = report.environment, report.settings
    title = title or f"jaxcontext.bench: {s.get('suite')} suite, size {s.get('size')}"
    la0, la1 = env.get("load_average_start"), env.get("load_average_end")
    lines = [
        f"# {title}",
        "",
        f"- date (UTC): {env['date_utc']}",
        f"- device: {env['platform']} ({env['device_kind']}) x{env['device_count']}; CPU "
        f"{env['cpu_model']}, {env['cpus_usable']} usable of {env['cpu_count']} cores",
        f"- versions: jax {env['jax']}, jaxlib {env['jaxlib']}, numpy {env['numpy']}, scipy "
        f"{env['scipy']}, python {env['python']}, jaxcontext {env['jaxcontext']} "
        f"(git {env.get('git_commit')})",
        f"- dtype {env['dtype']}; repeats {s.get('repeats')}; seed {s.get('seed')}; "
        f"wall {env.get('wall_s', 0):.0f} s",
    ]
    if la0:
        lines.append(
            f"- load average (1 min) at start {la0[0]:.2f}, at end "
            f"{la1[0] if la1 else float('nan'):.2f}"
        )
    hm = env.get("host_memory")
    if hm:
        lines.append(
            f"- host pages: transparent huge pages {hm.get('transparent_hugepage')}, "
            f"GLIBC_TUNABLES {hm.get('GLIBC_TUNABLES') or 'unset'}"
        )
    if command:
        lines.append(f"- command: `{command}`")
    lines += ["", _md_table(TABLE_COLUMNS, [_row(e) for e in report.entries]), ""]
    lines.append(
        "`*` baseline. speedup = baseline median / median within the same case and run. "
        "rel.err = ||out - ref||_F / ||ref||_F against a float64 numpy/scipy reference, or the "
        "suite's own measure (solvers: max_i |s_i - s_i^ref| / s_i^ref over the top d), "
        "checked before timing. compile = ahead-of-time trace + lower + compile, not "
        "included in the times. " + STATUS_NOTE + "."
    )
    det = [e for e in report.entries if e.details]
    if det:
        lines += [
            "",
            "## Details",
            "",
            "What each implementation reported about its result "
            "(solver work, residual certificate, ...).",
            "",
        ]
        rows = [
            [e.case, e.impl, "; ".join(f"{k}={_fmt_detail(v)}" for k, v in e.details.items())]
            for e in det
        ]
        lines.append(_md_table(("case", "impl", "details"), rows))
    mem = _memory_rows(report.entries)
    if mem:
        lines += [
            "",
            "## Peak memory",
            "",
            "One fresh subprocess per implementation; resident set from /proc VmHWM. "
            "*process peak*: the whole process (python, jax import, inputs, compile, "
            "product); *after setup*: resident once the inputs are built; *product +*: "
            "what the product added on top.",
            "",
            _md_table(MEMORY_COLUMNS, mem),
        ]
    return "\n".join(lines) + "\n"


def _fmt_detail(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def write_markdown(report: Report, path: str, **kw: Any) -> None:
    """Write :func:`format_markdown` to ``path``."""
    with open(path, "w") as f:
        f.write(format_markdown(report, **kw))
