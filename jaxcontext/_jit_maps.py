"""Keep a long CPU process clear of its memory-map limit (compiled XLA:CPU programs).

XLA:CPU (jaxlib 0.10) loads every kernel of a compiled program as its own object file, with its
code, read-only data and data in three separate memory mappings. A block Lanczos solver program
is about 340 kernels, so about 1,000 mappings (measured: ``svds`` of a 400 x 400 dense operator,
d = 16, Golub-Kahan), and JAX keeps them until its caches drop the executable. Linux allows a
process ``vm.max_map_count`` mappings (65,530 by default). A process that compiles some 60
distinct solver programs (a sweep over problem sizes, a long test session) reaches it; the JIT
then cannot map the next program ("Failed to materialize symbols") and, under jaxlib 0.10, the
process dies of a segmentation fault while that error is raised (seen in this project's test
suite: 64,734 mappings in the core of the crashed worker).

:func:`release_compiled_programs` clears JAX's in-memory compilation caches once the process
holds more than a given fraction of its limit, which unmaps every executable nothing else keeps
alive; later calls compile again (or load from JAX's persistent cache, where one is set).
``svds`` and ``fit`` call it before each solve or training run with :data:`SOLVER_FRACTION`
(a trainer program is a few hundred mappings); the benchmark calls it between cases. Where
``/proc`` is absent (not Linux) it does nothing. It reads ``/proc/self/maps`` (about 0.2 ms at
500 mappings, growing with their number) only when JAX compiled or loaded a program since its
last look (counted through ``jax.monitoring``), so repeated calls at known shapes cost nothing.
"""

from __future__ import annotations

import gc
import warnings

import jax
import jax.monitoring

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compiles = 0  # backend compilations (persistent-cache loads included) seen in this process
_looked_at = -1  # the value of _compiles at the last look at the mappings


def _count_compiles(event: str, duration: float, **kwargs) -> None:
    global _compiles
    if event == _COMPILE_EVENT:
        _compiles += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)

#: ``svds`` and ``fit`` release compiled programs above this fraction of the mapping limit: one
#: solver program is about 1.5% of the default limit, so half leaves room for a whole sweep step.
SOLVER_FRACTION = 0.5
#: Callers with natural boundaries (between benchmark cases, between tests) release above this
#: lower fraction, without a warning, so that ``svds`` and ``fit`` never have to in the middle of
#: their work (a benchmark's timed calls must not recompile).
BOUNDARY_FRACTION = 0.3


class CompiledProgramsReleasedWarning(UserWarning):
    """JAX's compilation caches were cleared to stay below the process's memory-map limit."""


def map_count() -> int | None:
    """The number of memory mappings this process holds (``None`` where ``/proc`` is absent)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def map_limit() -> int | None:
    """``vm.max_map_count``, the most mappings a process may hold (``None`` where unknown)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def release_compiled_programs(fraction: float, *, warn: bool = True) -> bool:
    """Clear JAX's compilation caches if this process holds over ``fraction`` of its map limit.

    Returns whether it cleared them. With ``warn`` a :class:`CompiledProgramsReleasedWarning`
    says so (the caller's own jitted functions compile again on their next call).
    """
    global _looked_at
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction: expected a value in (0, 1], got {fraction!r}")
    if _looked_at == _compiles:
        return False
    _looked_at = _compiles
    limit = map_limit()
    if not limit:
        return False
    count = map_count()
    if count is None or count <= fraction * limit:
        return False
    jax.clear_caches()
    gc.collect()
    if warn:
        after = map_count()
        warnings.warn(
            f"this process held {count:,} memory mappings of its limit of {limit:,} "
            f"(vm.max_map_count), mostly compiled XLA:CPU programs; past the limit the next "
            f"compilation fails or crashes the process, so JAX's compilation caches were "
            f"cleared ({after:,} mappings now) and programs compile again when next called. "
            f"Raising the limit (sysctl vm.max_map_count) avoids the recompilations.",
            CompiledProgramsReleasedWarning,
            stacklevel=3,
        )
    return True
