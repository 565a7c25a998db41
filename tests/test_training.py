"""fit: learns known contextures, every data kind, divergence, checkpoint/resume, errors, dtype.

The data-parallel and multi-process checks live in tests/test_training_parallel.py. Compiling a
training program costs a few seconds on this CPU, so each test trains a small encoder once and
checks several things of the result.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxcontext as jc
from jaxcontext import contexts, datasets, models, objectives, training
from jaxcontext import evaluation as E


@pytest.fixture(scope="module")
def mehler2():
    """Gaussian noise, D = 2, rho = 0.6: the top-5 non-trivial functions are degrees 1 and 2."""
    prob = datasets.gaussian_noise(2000, 2, 0.6, key=jax.random.key(0))
    xt = np.asarray(jax.random.normal(jax.random.key(1), (3000, 2)))
    return prob, xt, datasets.hermite_functions(xt, 6)[:, 1:]


@pytest.mark.parametrize("objective", ["kise", "svme"])
def test_learns_the_mehler_contexture(mehler2, objective):
    prob, xt, H = mehler2
    if objective == "svme":  # continuous augmentation: a context given by its sampler alone
        ctx = contexts.transformation(np.asarray(prob.x), prob.info["pair_sampler"])
    else:  # the closed-form Mehler dual kernel
        ctx = contexts.from_kernel(np.asarray(prob.x), jc.kernels.Mehler(rho=0.6))
    enc = models.MLP(2, 5, width=64, depth=2, rngs=nnx.Rngs(0))
    res = jc.fit(
        enc,
        ctx,
        objective=objective,
        steps=800,
        batch_size=256,
        key=0,
        progress=False,
        log_every=400,
    )
    r2 = float(E.cca(np.asarray(res.encoder(xt)), H).r2)
    assert r2 >= 0.9, r2
    h = res.history
    assert h["loss"].shape == (800,) and np.all(np.isfinite(h["loss"]))
    np.testing.assert_array_equal(h["step"], np.arange(800))
    assert h.compile_time > 0 and h.train_time > 0 and h.info["objective"] == objective
    assert h["loss"][-100:].mean() < h["loss"][:20].mean()
    # the input encoder is untouched; SVME made and trained a Psi of the same architecture
    assert not np.allclose(np.asarray(res.encoder(xt[:5])), np.asarray(enc(xt[:5])))
    if objective == "svme":
        assert isinstance(res.psi, models.MLP) and res.psi.config == enc.config
        assert float(E.cca(np.asarray(res.psi(xt)), H).r2) > 0.8
    else:
        assert res.psi is None


def test_nested_recovers_ordered_hermite_functions_and_values():
    """Mehler in D = 1 has distinct values rho^n: each learned function is its own He_n / sqrt(n!)
    and the objective's estimates are the values (a short run: the top 3; the acceptance run of
    the top 5 is scripts/learned_path_acceptance.py)."""
    rho = 0.8
    prob = datasets.gaussian_noise(20000, 1, rho, key=jax.random.key(0))
    ctx = contexts.transformation(np.asarray(prob.x), prob.info["pair_sampler"])
    xt = np.asarray(jax.random.normal(jax.random.key(1), (20000, 1)))
    H = datasets.hermite_functions(xt, 4)[:, 1:]
    enc = models.MLP(1, 3, width=64, depth=2, rngs=nnx.Rngs(0), activation="silu")
    res = jc.fit(
        enc,
        ctx,
        objective="nested_sequential",
        steps=1500,
        batch_size=1024,
        key=0,
        progress=False,
        log_every=1500,
        optimizer=training.default_optimizer(1500, learning_rate=3e-3),
    )
    f = np.asarray(res.encoder(xt))
    corr = np.abs(np.corrcoef(f.T, H.T)[:3, 3:])  # learned (rows) against He_1..He_3 (columns)
    assert np.all(np.diag(corr) >= [0.999, 0.99, 0.95]), corr
    off = corr - np.diag(np.diag(corr))
    assert off.max() < 0.2, corr  # ordered: no function is another's He_n
    s = res.history["s"][-200:].mean(axis=0)
    np.testing.assert_allclose(s, rho ** np.arange(1, 4), rtol=0.03)


def _blocks():
    """A 4-block graph on 200 nodes: s_1..s_3 = 0.6 (block indicators), then a bulk near 0.28."""
    return datasets.sbm(200, 4, 0.3, 0.04, key=jax.random.key(5))


@pytest.mark.parametrize("case", ["views", "labels", "laplacian", "lowrank_kernel"])
def test_every_data_kind_trains(case, rng):
    """A short run per data kind: finite, decreasing loss; the objective's aux recorded."""
    if case == "views":
        x = rng.standard_normal((400, 3)).astype(np.float32)
        ctx, obj = contexts.knn(x, k=10), "spectral_contrastive"
        enc = models.MLP(3, 4, width=32, depth=2, rngs=nnx.Rngs(0))
    elif case == "labels":
        y = rng.integers(0, 5, 400)
        x = (rng.standard_normal((400, 3)) + y[:, None]).astype(np.float32)
        ctx, obj = contexts.labels(y, x=x), "supervised"
        enc = models.MLP(3, 4, width=32, depth=2, rngs=nnx.Rngs(0))
    elif case == "laplacian":
        ctx, obj = _blocks().context, "laplacian"
        enc = models.Embedding(200, 3, rngs=nnx.Rngs(0))
    else:
        prob = datasets.gaussian_noise(500, 2, 0.6, key=jax.random.key(0))
        ctx, obj = prob.context, "nested_joint_kernel"
        enc = models.MLP(2, 4, width=32, depth=2, rngs=nnx.Rngs(0))
    lr = 0.1 if case == "laplacian" else 3e-3  # a lookup table moves only rows in the batch
    res = jc.fit(
        enc,
        ctx,
        objective=obj,
        steps=600,
        batch_size=64,
        key=1,
        progress=False,
        log_every=300,
        optimizer=optax.adam(lr),
    )
    loss = res.history["loss"]
    assert np.all(np.isfinite(loss)) and loss[-50:].mean() < loss[:10].mean()
    if obj in ("spectral_contrastive", "nested_joint_kernel"):
        assert res.history["s"].shape == (600, res.encoder(ctx.x[:2]).shape[1])
    if case == "laplacian":  # the learned node embeddings span the block indicators
        ct = jc.contexture(ctx, 3, method="dense")
        assert float(E.cca(np.asarray(res.encoder(jnp.arange(200))), np.asarray(ct.mu)).r2) > 0.85


def test_full_batch_and_custom_objective():
    prob = datasets.gaussian_noise(256, 2, 0.6, key=jax.random.key(0))

    def mse_to_psi(batch):
        return jnp.mean((batch.phi - batch.psi) ** 2), {"scale": jnp.mean(batch.phi**2)}

    enc = models.MLP(2, 3, width=16, depth=1, rngs=nnx.Rngs(0))
    res = jc.fit(
        enc,
        prob.context,
        objective=mse_to_psi,
        steps=20,
        batch_size=None,
        key=0,
        progress=False,
        log_every=10,
    )
    assert res.history.info["batch_size"] == 256
    assert set(res.history.keys()) == {"loss", "scale"} and res.psi is not None


def test_divergence_stops_with_the_step_named():
    """An objective unbounded below blows up under plain SGD: the first non-finite step is named,
    parameters stay at the last finite step."""
    prob = datasets.gaussian_noise(256, 2, 0.6, key=jax.random.key(0))

    def unbounded(batch):
        return -jnp.mean(batch.phi**2) * 1e3, {}

    enc = models.MLP(2, 3, width=16, depth=1, rngs=nnx.Rngs(0))
    with pytest.raises(training.TrainingDiverged, match=r"NaN or Inf at step \d+") as info:
        jc.fit(
            enc,
            prob.context,
            objective=objectives.get(unbounded, psi="none"),
            steps=400,
            batch_size=32,
            key=0,
            progress=False,
            log_every=100,
            optimizer=optax.sgd(1.0),
        )
    e = info.value
    assert 0 < e.step < 400
    h = e.result.history
    assert h["step"][-1] == e.step and not np.isfinite(h["loss"][-1])
    assert np.all(np.isfinite(h["loss"][:-1]))
    leaves = jax.tree_util.tree_leaves(nnx.state(e.result.encoder, nnx.Param))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in leaves)


def test_resume_after_interrupt_matches_the_uninterrupted_run(tmp_path):
    prob = datasets.gaussian_noise(512, 2, 0.6, key=jax.random.key(0))
    enc = models.MLP(2, 3, width=16, depth=1, rngs=nnx.Rngs(0))
    kw = dict(objective="svme", steps=60, batch_size=64, key=3, progress=False, log_every=10)
    full = jc.fit(enc, prob.context, **kw)

    def stop_at_30(step, metrics):
        if step == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jc.fit(
            enc,
            prob.context,
            checkpoint_dir=tmp_path,
            checkpoint_every=20,
            callback=stop_at_30,
            **kw,
        )
    resumed = jc.fit(enc, prob.context, checkpoint_dir=tmp_path, **kw)
    for a, b in zip(
        jax.tree_util.tree_leaves(nnx.state(full.encoder, nnx.Param)),
        jax.tree_util.tree_leaves(nnx.state(resumed.encoder, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # nothing lost: the resumed history is the whole run's
    np.testing.assert_array_equal(resumed.history["step"], np.arange(60))
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"], rtol=1e-5)
    # a checkpoint written by another run is refused
    with pytest.raises(ValueError, match="different run"):
        jc.fit(enc, prob.context, checkpoint_dir=tmp_path, **dict(kw, batch_size=32))


def test_bad_arguments_fail_before_compiling():
    prob = datasets.gaussian_noise(100, 2, 0.6, key=jax.random.key(0))
    enc = models.MLP(2, 5, width=8, depth=1, rngs=nnx.Rngs(0))
    fit = jc.fit

    def call(**kw):
        args = dict(objective="kise", steps=10, batch_size=32, key=0, progress=False)
        args.update(kw)
        ctx = args.pop("context", prob.context)
        return fit(args.pop("encoder", enc), ctx, **args)

    with pytest.raises(ValueError, match="unknown objective"):
        call(objective="simclr")
    with pytest.raises(ValueError, match="larger than the data"):
        call(batch_size=101)
    with pytest.raises(ValueError, match="d = 5"):
        call(batch_size=4)
    with pytest.raises(ValueError, match="even"):
        call(objective="lowrank_kernel", batch_size=33)
    with pytest.raises(ValueError, match="key"):
        call(key=None)
    with pytest.raises(ValueError, match="steps"):
        call(steps=0)
    with pytest.raises(TypeError, match="encoder"):
        call(encoder=lambda x: x)
    with pytest.raises(ValueError, match="cannot be applied"):
        call(encoder=models.MLP(3, 5, width=8, depth=1, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="needs pairs"):
        call(
            objective="svme",
            context=contexts.from_kernel(np.asarray(prob.x), jc.kernels.Mehler(rho=0.6)),
        )
    labels = contexts.labels(np.repeat(np.arange(4), 25), x=np.asarray(prob.x))
    with pytest.raises(ValueError, match="label context"):
        call(objective="supervised")
    with pytest.raises(ValueError, match="uniform"):
        call(
            objective="laplacian",
            context=_blocks().context,
            batch_size=None,
            encoder=models.Embedding(200, 3, rngs=nnx.Rngs(0)),
        )
    with pytest.raises(ValueError, match="no separate Psi"):
        call(psi=enc)
    assert labels.num_values == 4


def test_float64_training_keeps_float64(precision):
    prob = datasets.gaussian_noise(128, 2, 0.6, key=jax.random.key(0))
    x = np.asarray(prob.x, np.float64)
    ctx = contexts.from_kernel(x, jc.kernels.Mehler(rho=0.6))
    enc = models.MLP(2, 3, width=8, depth=1, rngs=nnx.Rngs(0), param_dtype=precision)
    res = jc.fit(enc, ctx, objective="kise", steps=5, batch_size=32, key=0, progress=False)
    assert res.history["loss"].dtype == precision
    assert res.encoder(jnp.asarray(x[:4])).dtype == precision
    assert res.history.info["dtype"] == str(np.dtype(precision))


def test_alignment_is_measured_during_training():
    """fit(reference=..., eval_every=N): R2_CCA, subspace distance and the singular-value error
    against the exact contexture, every N steps and before the first, at a small cost."""
    prob = datasets.gaussian_noise(1500, 2, 0.6, key=jax.random.key(0))
    ctx = contexts.from_kernel(np.asarray(prob.x), jc.kernels.Mehler(rho=0.6))
    exact = jc.contexture(ctx, 5, key=0)
    xt = np.asarray(jax.random.normal(jax.random.key(1), (1000, 2)))
    enc = models.MLP(2, 5, width=32, depth=2, rngs=nnx.Rngs(0))
    res = jc.fit(
        enc,
        ctx,
        objective="nested_sequential_kernel",
        steps=500,
        batch_size=256,
        key=0,
        progress=False,
        log_every=250,
        reference=exact,
        eval_x=xt,
        eval_every=100,
    )
    ev = res.history.evals
    np.testing.assert_array_equal(ev["step"], [0, 100, 200, 300, 400, 500])
    # the recorded figures are the evaluation module's, on the held-out points
    ref = np.asarray(exact.evaluate(xt))
    final = np.asarray(res.encoder(xt))
    assert ev["r2_cca"][-1] == pytest.approx(float(E.cca(final, ref).r2), rel=1e-5)
    assert ev["subspace_distance"][-1] == pytest.approx(
        float(E.subspace_distance(final, ref)), rel=1e-4, abs=1e-7
    )
    assert ev["r2_cca"][-1] > ev["r2_cca"][0] and ev["r2_cca"][-1] > 0.8
    # the nested objective estimates values: compared with the exact s_1..s_5
    assert np.isnan(ev["s_error"][0]) and np.all(np.isfinite(ev["s_error"][1:]))
    assert ev["s_error"][-1] < 0.3
    assert res.history.eval_time == pytest.approx(ev["time_s"].sum())
    assert np.median(ev["time_s"][1:]) < 0.5 * res.history.train_time / 5  # cheap next to 100 steps
    with pytest.raises(ValueError, match="reference"):
        jc.fit(enc, ctx, objective="kise", steps=10, batch_size=64, key=0, eval_every=5)
    with pytest.raises(ValueError, match="eval_x"):
        jc.fit(
            enc, ctx, objective="kise", steps=10, batch_size=64, key=0, reference=np.ones((5, 2))
        )
