"""Test configuration: float64 references are numpy; JAX runs in its default float32 precision.

x64 is set once here (off), never toggled inside a test body (STYLE.md rule 8). Multi-device tests
run in subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=4 (see tests/_subproc.py).
"""

import zlib

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", False)


@pytest.fixture
def rng(request):
    """A fresh numpy Generator per test, seeded from the test's name (reproducible, distinct)."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
