"""Peak-memory probe, run in a fresh process by :func:`jaxcontext.bench._harness.memory_probe`.

``python -m jaxcontext.bench._memprobe --suite S --case C --impl I --size Z [--dtype D --seed N]``
rebuilds the case, measures one implementation with
:func:`~jaxcontext.bench._harness.probe_in_this_process` and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, probe, print the JSON report."""
    p = argparse.ArgumentParser(prog="python -m jaxcontext.bench._memprobe")
    p.add_argument("--suite", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--impl", required=True)
    p.add_argument("--size", required=True)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from . import _harness

    cases = _harness.suite_cases(args.suite, args.size, dtype=args.dtype, seed=args.seed)
    case = next((c for c in cases if c.name == args.case), None)
    if case is None:
        p.error(f"--case {args.case!r}: no such case in {args.suite} at size {args.size}")
    impl = next((i for i in case.impls if i.name == args.impl), None)
    if impl is None:
        p.error(f"--impl {args.impl!r}: not one of {[i.name for i in case.impls]}")
    res = _harness.probe_in_this_process(case, impl)
    res.update(suite=args.suite, case=args.case, impl=args.impl, size=args.size, dtype=args.dtype)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
