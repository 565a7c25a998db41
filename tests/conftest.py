"""Test configuration: float64 references are numpy; JAX runs in its default float32 precision.

x64 is set once here (off), never toggled inside a test body (STYLE.md rule 8). Tests that must hold
in both precisions take the ``precision`` fixture (or a module sets
``pytestmark = pytest.mark.usefixtures("precision")``): each such test runs twice, once as is and
once inside ``jax.enable_x64(True)`` (a thread-local context the fixture enters around the test),
where float64 inputs must stay float64. Multi-device tests run in subprocesses with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (see tests/_subproc.py).
"""

import atexit
import os
import shutil
import tempfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", False)

# One BLAS thread per test process (xdist workers already use every core): OpenBLAS's worker threads
# spin against XLA's intra-op pool and the other worker, which made a 640 x 640 float64 SVD after a
# JAX solve take 3.5 s instead of 0.1 s (see jaxcontext.linalg._common.blas_single_thread). It
# changes no result beyond BLAS rounding order. The variable covers BLAS libraries loaded later and
# the subprocesses; numpy's, already loaded, is set through threadpoolctl.
# A value set by the caller is left alone.
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        pass
    else:
        threadpool_limits(limits=1, user_api="blas")

# The suite is compile-bound: of 2,015 s of test time (both workers, 998 tests, December 2026)
# 1,553 s were JAX tracing, lowering and XLA compilation (a Lanczos solver ~7 s, a one-op eager
# program ~40 ms on a 2-core host). A new test should reuse the shapes (and so the compiled
# programs) of the tests around it rather than pick its own.
# Many tests compile the same program (a trainer for one encoder and batch, a solver at one shape):
# XLA's persistent cache, in a directory private to this test process, lets the second compilation
# load the first one's executable. It changes no result, only compile time. (A flaky wrong kernel
# value once blamed on it came from register_dataclass: see _pytree.py; a segfault in its write
# came from the memory-map limit: see pytest_runtest_teardown below.) The directories live in
# one folder that the process starting the run (the xdist controller, whose workers inherit the
# variable below) removes at exit: xdist workers end without running exit handlers, and their
# caches (about 40 MB a run) used to stay behind. Sharing one directory between the workers
# saved little (few programs compile in both) and cost more: the cache's file lock comes with a
# scan of the whole directory on every write.
_PARENT = "JAXCONTEXT_TESTS_XLA_CACHES"
if not os.path.isdir(os.environ.get(_PARENT, "")):
    os.environ[_PARENT] = tempfile.mkdtemp(prefix="jaxcontext-tests-xla-")
    atexit.register(shutil.rmtree, os.environ[_PARENT], ignore_errors=True)
_XLA_CACHE = tempfile.mkdtemp(dir=os.environ[_PARENT])
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# Modules with tests or module fixtures of tens of seconds (subprocess jobs, scripts, long
# examples) run first. Under xdist the first chunk of the collection goes whole to one worker, so
# each of these modules stays on one worker (its module fixtures run once, no worker waits on
# another's ``_subproc.once_per_session`` job), and the run ends on short tests instead of a 30 s
# one that leaves the other worker idle. Only the order changes; each module keeps its test order.
_RUN_FIRST = (
    "test_sharding.py",
    "test_distributed.py",
    "test_readme.py",
    "test_training_parallel.py",
    "test_bench_training.py",
    "test_datasets_rdatasets.py",
    "test_workflows_scaling.py",
    "test_workflows_mixing.py",
)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Clear JAX's in-memory caches when this worker nears its memory-map limit.

    Every compiled XLA:CPU program holds about three mappings per kernel (a Lanczos solver about
    1,000) for as long as JAX caches it; a worker that compiled a few hundred programs passed
    ``vm.max_map_count`` (65,530) and died of a segfault in the next compilation (see
    ``jaxcontext._jit_maps``). Checked after each test (it reads ``/proc/self/maps`` only when
    something was compiled); a cleared program compiles again, or loads from the persistent
    cache above, when a later test calls it.
    """
    from jaxcontext._jit_maps import BOUNDARY_FRACTION, release_compiled_programs

    release_compiled_programs(BOUNDARY_FRACTION, warn=False)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable sort


@pytest.fixture
def rng(request):
    """A fresh numpy Generator per test, seeded from the test's name (reproducible, distinct)."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(params=["float32", "float64"])
def precision(request):
    """Run the test in float32 (x64 off) and in float64 (x64 on); yields the float dtype under test.

    Under ``float64`` the test body runs inside ``jax.enable_x64(True)``: numpy float64 inputs then
    reach JAX as float64 and every path must keep them so. Tolerances should follow the dtype
    (``np.finfo(dtype).eps``).
    """
    dtype = np.dtype(request.param)
    with jax.enable_x64(dtype == np.float64):
        assert jnp.zeros(1, float).dtype == dtype
        yield dtype


@pytest.fixture
def x64():
    """Run the test body inside ``jax.enable_x64(True)`` (float64-only tests)."""
    with jax.enable_x64(True):
        yield np.dtype(np.float64)


@pytest.fixture(scope="session")
def svds_one_device(tmp_path_factory):
    """``get(name, method)``: singular values of ``svds`` on one device for a shared problem.

    The 4-device (tests/test_sharding.py) and 2-process (tests/test_distributed.py) svds tests
    compare with the same one-device solves of tests/_svds_problems.py, each seconds of compilation:
    each runs once per session, shared by the modules and the xdist workers
    (``_subproc.once_per_session``). Call ``get`` outside any ``jax.enable_x64`` context (the solves
    run in float32, as the sharded ones do).
    """
    from _subproc import once_per_session
    from _svds_problems import SVDS_D, problems

    memo = {}

    def get(name, method):
        if (name, method) not in memo:

            def produce(folder):
                from jaxcontext import operators as ops
                from jaxcontext.linalg import svds

                a, hermitian = problems()[name]
                one = svds(
                    ops.sparse_from_scipy(a.astype(np.float32)),
                    SVDS_D,
                    method=method,
                    hermitian=hermitian,
                    tol=1e-5,
                    on_fail="ignore",
                )
                np.save(folder / "s.npy", np.asarray(one.s))

            folder = once_per_session(tmp_path_factory, f"svds-one-device-{name}-{method}", produce)
            memo[name, method] = np.load(folder / "s.npy")
        return memo[name, method]

    return get
