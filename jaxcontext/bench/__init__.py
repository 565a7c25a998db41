"""Benchmarks: ``python -m jaxcontext.bench [--suite NAME|all] [--size tiny|quick|full]``.

Each suite is a module of this package exposing ``cases(size, *, dtype, seed)``; the harness
(:mod:`jaxcontext.bench._harness`) warms up, checks every result against a float64 reference
before timing it, reports median / min / IQR and compile time apart, measures peak memory in
subprocesses and records the device, versions and dtype with every figure. See
``benchmarks/README.md`` for the recorded results and how to reproduce them.

Example:
    >>> from jaxcontext import bench
    >>> cases = bench.suite_cases("operators", "tiny")
    >>> report = bench.run(bench.select(cases, ["dense"]), repeats=3,
    ...                    settings={"suite": "operators", "size": "tiny", "dtype": "float32"})
    >>> [e.status for e in report.entries]
    ['ok', 'ok']
"""

from ._harness import (
    Case,
    CorrectnessError,
    Entry,
    Impl,
    Report,
    SuiteUnavailable,
    format_markdown,
    format_table,
    memory_probe,
    rel_error,
    run,
    run_case,
    select,
    suite_cases,
    to_json,
    write_json,
    write_markdown,
)

# Suites in the order ``--suite all`` runs them; each is ``jaxcontext.bench.<name>``.
SUITES = ("operators", "solvers", "training", "alignment")

__all__ = [
    "SUITES",
    "Case",
    "CorrectnessError",
    "Entry",
    "Impl",
    "Report",
    "SuiteUnavailable",
    "format_markdown",
    "format_table",
    "memory_probe",
    "rel_error",
    "run",
    "run_case",
    "select",
    "suite_cases",
    "to_json",
    "write_json",
    "write_markdown",
]
