"""``python -m jaxcontext.bench``: parse flags, run the suites, print the table, write JSON.

Examples::

    python -m jaxcontext.bench                                  # all suites, quick sizes
    python -m jaxcontext.bench --suite solvers --size full --only sbm/n100000
    python -m jaxcontext.bench --size full --json out.json      # acceptance sizes (heavy)
    python -m jaxcontext.bench --only sparse --repeats 3        # cases whose name contains 'sparse'
    python -m jaxcontext.bench --list --size full               # list the cases, run nothing
    python -m jaxcontext.bench --json out.json --plots figs/    # JSON and PNG figures

Exit status: 0 when every jaxcontext entry is correct, 1 when a result was wrong (``WRONG``) or an
implementation crashed (:func:`jaxcontext.bench._harness.failures`), 2 for bad flags. Entries
marked as peers (``Impl.peer``: in the solvers suite every scipy, sklearn, PRIMME, cupy and torch
entry) are exempt from ``WRONG``: a peer whose result misses the accuracy bar is recorded as
``inaccurate`` (its error kept, not timed), and one that gives up in a documented way (e.g.
PROPACK not converging) as ``failed``; findings about the peer, neither fails the run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from . import SUITES, _harness

DEFAULT_REPEATS = {"tiny": 3, "quick": 7, "full": 5}
DEFAULT_BUDGET_S = {"tiny": 5.0, "quick": 20.0, "full": 120.0}


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonnegative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(
        prog="python -m jaxcontext.bench",
        description="Benchmark jaxcontext against scipy/numpy on the same inputs: every result is "
        "checked against a float64 reference before it is timed.",
    )
    p.add_argument(
        "--suite",
        default="all",
        choices=(*SUITES, "all"),
        help="which suite to run (default: all, i.e. " + ", then ".join(SUITES) + ")",
    )
    p.add_argument(
        "--size",
        default="quick",
        choices=_harness.SIZES,
        help="tiny: smoke test; quick (default): ~1-2 min on a 2-core CPU; "
        "full: the acceptance sizes (heavy)",
    )
    p.add_argument("--json", metavar="PATH", help="write the results (with environment) as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write a markdown summary")
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="write PNG figures into DIR (created if missing): per suite, median times and "
        "speedups; for alignment, R2_CCA against step (needs matplotlib)",
    )
    p.add_argument(
        "--repeats",
        type=_positive_int,
        metavar="N",
        help="timed calls per implementation (default: tiny 3, quick 7, full 5)",
    )
    p.add_argument(
        "--time-budget",
        type=_positive_float,
        metavar="SECONDS",
        help="time budget per implementation; slow ones get fewer repeats, at "
        "least 3 (default: tiny 5, quick 20, full 120)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=_harness.DTYPES,
        help="benchmark dtype (default float32; float64 turns on jax_enable_x64)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="run only cases whose 'suite/case' contains PATTERN (or matches it as a "
        "glob); repeatable",
    )
    p.add_argument(
        "--impl",
        action="append",
        metavar="PATTERN",
        help="run only implementations whose name contains PATTERN (case-insensitive; with "
        "*?[ a glob on the whole name, e.g. '[j]axcontext' for the auto entry alone), plus "
        "each case's baseline; repeatable (e.g. --impl jaxcontext --impl eigsh)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="leave out implementations whose name contains PATTERN (as --impl), the "
        "baseline too: that case then reports no speedups (e.g. a GPU run without the slow "
        "CPU baseline: --exclude arpack); repeatable",
    )
    p.add_argument(
        "--baseline",
        action="append",
        metavar="PATTERN",
        help="take speedups against the implementation whose name matches PATTERN (as --impl), "
        "in each case where exactly one does, instead of the case's own baseline; repeatable, "
        "the first that fits a case wins (e.g. a GPU run: --exclude arpack --baseline "
        "'cupy svds' --baseline 'cupy eigsh')",
    )
    p.add_argument(
        "--seed", type=_nonnegative_int, default=0, help="seed of the random inputs (default 0)"
    )
    p.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory subprocess probes"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first wrong result or failing implementation (a peer's inaccurate "
        "result is recorded, not a stop)",
    )
    p.add_argument(
        "--cpu-devices",
        type=_positive_int,
        metavar="N",
        help="on a CPU, expose N host devices (XLA_FLAGS=--xla_force_host_platform_device_count=N, "
        "set before JAX starts): the training suite then also runs data-parallel over N devices. "
        "Exercises the sharded path; N devices share the same cores, so it is not a speed-up",
    )
    p.add_argument(
        "--interleave",
        action="store_true",
        help="check and warm up every implementation of a case first, then time them in rounds "
        "of one call each (order alternating): a load change on a shared host then lands in "
        "every entry alike, so the run's ratios are paired. Holds all of a case's inputs at once",
    )
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    return p


def _force_cpu_devices(n: int) -> None:
    """Ask XLA for ``n`` host devices; must run before JAX creates its CPU backend."""
    flag = "--xla_force_host_platform_device_count"
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(flag + "=")]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"{flag}={n}"])
    import jax

    try:
        backend_started = jax._src.xla_bridge.backends_are_initialized()
    except AttributeError:  # private API moved: trust the order of main()
        backend_started = False
    if backend_started:
        raise RuntimeError("--cpu-devices: JAX's backends already started; pass XLA_FLAGS instead")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("json", "markdown"):
        path = getattr(args, flag)
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            parser.error(f"--{flag} {path}: directory {os.path.dirname(path)!r} does not exist")

    if args.plots:
        try:
            from . import _plots

            _plots._matplotlib()
        except ImportError as e:
            parser.error(f"--plots: {e}")
    if args.cpu_devices:
        _force_cpu_devices(args.cpu_devices)
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)

    suites = SUITES if args.suite == "all" else (args.suite,)
    cases = []
    for s in suites:
        try:
            cases += _harness.suite_cases(s, args.size, dtype=args.dtype, seed=args.seed)
        except _harness.SuiteUnavailable as e:
            if args.suite != "all":
                parser.error(str(e))
            print(f"note: {e}; skipped", file=sys.stderr)
    selected = _harness.select(cases, args.only)
    if not selected:
        names = ", ".join(f"{c.suite}/{c.name}" for c in cases)
        parser.error(f"--only {args.only}: no case matches; cases at size {args.size}: {names}")
    if args.impl or args.exclude:
        narrowed = _harness.select_impls(selected, args.impl, args.exclude)
        if not narrowed:
            parser.error(
                f"--impl {args.impl} --exclude {args.exclude}: no implementation is left in the "
                "selected cases"
            )
        selected = narrowed
    selected = _harness.rebase(selected, args.baseline)
    if args.list:
        for c in selected:
            impls = ", ".join(i.name + (" *" if i.baseline else "") for i in c.impls)
            print(f"{c.suite}/{c.name}: {impls}")
        return 0

    settings = {
        "suite": args.suite,
        "size": args.size,
        "dtype": args.dtype,
        "seed": args.seed,
        "repeats": args.repeats or DEFAULT_REPEATS[args.size],
        "time_budget_s": args.time_budget or DEFAULT_BUDGET_S[args.size],
        "only": args.only,
        "impl": args.impl,
        "exclude": args.exclude,
        "baseline": args.baseline,
        "memory": not args.no_memory,
        "cpu_devices": args.cpu_devices,
        "interleave": args.interleave,
        "command": "python -m jaxcontext.bench "
        + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    report = _harness.run(
        selected,
        repeats=settings["repeats"],
        budget_s=settings["time_budget_s"],
        settings=settings,
        memory=settings["memory"],
        strict=args.strict,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        interleave=args.interleave,
    )
    print(_harness.format_table(report))
    if args.json:
        _harness.write_json(report, args.json)
    if args.markdown:
        _harness.write_markdown(report, args.markdown, command=settings["command"])
    if args.plots:
        from ._plots import plot_report

        for path in plot_report(report, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    bad = _harness.failures(report.entries)
    for e in bad:
        print(f"FAILED {e.suite}/{e.case} [{e.impl}]: {e.status}: {e.message}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
