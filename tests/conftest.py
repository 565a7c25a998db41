"""Test configuration: float64 references are numpy; JAX runs in its default float32 precision.

x64 is set once here (off), never toggled inside a test body (STYLE.md rule 8). Tests that must hold
in both precisions take the ``precision`` fixture (or a module sets
``pytestmark = pytest.mark.usefixtures("precision")``): each such test runs twice, once as is and
once inside ``jax.enable_x64(True)`` (a thread-local context the fixture enters around the test),
where float64 inputs must stay float64. Multi-device tests run in subprocesses with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (see tests/_subproc.py).
"""

import atexit
import shutil
import tempfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", False)

# Many tests compile the same program (a trainer for one encoder and batch, a solver at one shape):
# XLA's persistent cache, in a directory private to this test process and removed at exit, lets the
# second compilation load the first one's executable. It changes no result, only compile time.
# (A flaky wrong kernel value once blamed on it came from register_dataclass: see _pytree.py.)
_XLA_CACHE = tempfile.mkdtemp(prefix="jaxcontext-tests-xla-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


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
