"""The memory-map guard (jaxcontext._jit_maps): compiled programs are released near the limit."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcontext
from jaxcontext import _jit_maps
from jaxcontext import operators as ops
from jaxcontext.linalg import svds

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _program(seed: int):
    """A jitted function of many kernels (each a few mappings on XLA:CPU), new to JAX's caches."""

    @jax.jit
    def f(x, y):
        for i in range(12):  # a sort between steps keeps XLA from fusing them into one kernel
            x = jnp.sort(jnp.sin(x * (seed + i)) + y, axis=0)
        return x

    return f


@linux_only
def test_counts_and_limit_are_read_from_proc():
    count, limit = _jit_maps.map_count(), _jit_maps.map_limit()
    with open("/proc/self/maps") as f:
        assert abs(count - sum(1 for _ in f)) < 50
    assert limit >= 1000


@linux_only
def test_release_frees_the_mappings_of_compiled_programs(monkeypatch):
    x = jnp.ones((64, 8))
    before = _jit_maps.map_count()
    fs = [_program(s) for s in range(3)]
    for f in fs:
        f(x, x).block_until_ready()
    grown = _jit_maps.map_count()
    assert grown > before + 30  # each program maps its kernels
    assert all(f._cache_size() == 1 for f in fs)
    # a limit the process is already over: the next look releases
    monkeypatch.setattr(_jit_maps, "map_limit", lambda: grown)
    with pytest.warns(_jit_maps.CompiledProgramsReleasedWarning, match="max_map_count"):
        assert _jit_maps.release_compiled_programs(0.5)
    assert all(f._cache_size() == 0 for f in fs)  # JAX's caches were cleared ...
    assert _jit_maps.map_count() < grown - 30  # ... and the kernels unmapped


@linux_only
def test_no_release_below_the_fraction_and_no_look_without_a_compilation(monkeypatch):
    f = _program(20)
    x = jnp.ones((64, 8))
    f(x, x).block_until_ready()
    monkeypatch.setattr(_jit_maps, "map_limit", lambda: 10**9)
    assert not _jit_maps.release_compiled_programs(0.5)
    assert f._cache_size() == 1

    def fail():
        raise AssertionError("read the mappings with nothing compiled since the last look")

    monkeypatch.setattr(_jit_maps, "map_count", fail)
    f(x, x).block_until_ready()  # cached: nothing compiles
    assert not _jit_maps.release_compiled_programs(0.5)


def test_fraction_must_be_in_the_unit_interval():
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            _jit_maps.release_compiled_programs(bad)


def test_without_proc_nothing_happens(monkeypatch):
    monkeypatch.setattr(_jit_maps, "map_limit", lambda: None)
    _program(30)(jnp.ones((8, 2)), jnp.ones((8, 2))).block_until_ready()
    assert not _jit_maps.release_compiled_programs(0.01)


@linux_only
def test_svds_releases_near_the_limit_and_still_solves(monkeypatch):
    A = np.diag(np.arange(40.0, 0.0, -1.0)).astype(np.float32)
    _program(40)(jnp.ones((8, 2)), jnp.ones((8, 2))).block_until_ready()  # something new
    monkeypatch.setattr(_jit_maps, "map_limit", lambda: 2 * _jit_maps.map_count() - 100)
    with pytest.warns(jaxcontext.CompiledProgramsReleasedWarning):
        sp = svds(ops.dense(A), 3, method="lanczos")
    np.testing.assert_allclose(np.asarray(sp.s), [40.0, 39.0, 38.0], rtol=1e-5)
    assert sp.info.converged.all()


@linux_only
def test_fit_releases_near_the_limit_and_still_trains(monkeypatch):
    from flax import nnx

    from jaxcontext import datasets, models

    prob = datasets.sbm(200, 4, 0.3, 0.04, key=jax.random.key(5))  # test_training's _blocks
    _program(50)(jnp.ones((8, 2)), jnp.ones((8, 2))).block_until_ready()  # something new
    monkeypatch.setattr(_jit_maps, "map_limit", lambda: 2 * _jit_maps.map_count() - 100)
    enc = models.Embedding(200, 3, rngs=nnx.Rngs(0))
    with pytest.warns(jaxcontext.CompiledProgramsReleasedWarning):
        res = jaxcontext.fit(enc, prob.context, steps=20, batch_size=64, key=0, progress=False,
                             log_every=10)
    assert np.isfinite(np.asarray(res.history["loss"])).all()
    assert res.history.info["steps"] == 20
