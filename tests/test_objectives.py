"""Objectives: float64 numpy references, exact population minimisers, nesting, jit/grad, errors.

The population tests use a small finite context with rational conditionals ``P[i, j] = n[i, j] / N``
(integers ``n``, uniform ``P_X``), so a *deterministic* batch that lists every pair ``(x_i, a_j)``
``n[i, j]`` times has batch averages equal to the population expectations under ``P+`` exactly;
views ``(x_i, a_j, a_j')`` are listed ``n[i, j] n[i, j']`` times (two conditionally independent
draws); the kernel batch lists ``x_1..x_m`` once with ``G = K_X``; the half-batch estimators get
every row twice in a row, so the even and the odd half are each the whole population. The exact
singular triples come from the SVD of ``Z = diag(P_X)^1/2 P diag(p)^-1/2`` in float64 (REFERENCE.md
section 2). With these batches every estimator except the spectral contrastive one equals its
population loss (up to the whitening jitter), which the tests check against the closed-form value
at the optimum (e.g. ``1 - mean(s_l^2)`` for SVME); the spectral contrastive negatives are an
off-diagonal U-statistic, ``O(1/b)`` away from the population value on a finite list, so it is
compared with margins that dominate that gap.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcontext import objectives as O
from jaxcontext.objectives import Batch

D = 3  # output columns of the population tests


# ----------------------------------------------------------------------------------------------
# float64 numpy references (written from the formulas, not from the implementation)


def np_vicreg(phi, c_std=1.0, c_cov=1.0):
    phi = np.asarray(phi, np.float64)
    b, d = phi.shape
    B = phi - phi.mean(0)
    std = np.sqrt(B.var(0, ddof=1) + 1e-4)
    std_loss = np.mean(np.maximum(0.0, 1.0 - std))
    C = B.T @ B / (b - 1)
    off = C[~np.eye(d, dtype=bool)]
    cov_loss = np.mean(off**2) if d > 1 else 0.0
    return c_std * std_loss + c_cov * cov_loss, std_loss, cov_loss


def np_whiten(z, eps=1e-6):
    """Cholesky whitening, written out: centred z times L^-T with L L^T = C + eps tr(C)/d I."""
    z = np.asarray(z, np.float64)
    n, d = z.shape
    zc = z - z.mean(0)
    C = zc.T @ zc / n
    L = np.linalg.cholesky(C + eps * np.trace(C) / d * np.eye(d))
    W = np.linalg.inv(L).T
    return zc @ W, W


def np_constrained(L, phi, constraint):
    if constraint == "vicreg":
        return (L + np_vicreg(phi)[0]) / 3.0
    return L


def np_svme(phi, psi, constraint=None, shared=False):
    b, d = phi.shape
    if constraint == "whiten":
        pw, W = np_whiten(phi)
        q = psi - psi.mean(0)
        diff = pw - (q @ W if shared else q)
    else:
        diff = (phi - phi.mean(0)) - (psi - psi.mean(0))
    return np_constrained(np.sum(diff**2) / (b * d), phi, constraint)


def np_kise(phi, G, constraint=None):
    b, d = phi.shape
    B = np_whiten(phi)[0] if constraint == "whiten" else phi - phi.mean(0)
    quad = np.einsum("il,ik,lk->", G, B, B)
    L = (np.sum(B**2) / b - quad / b**2) / d
    return np_constrained(L, phi, constraint)


def np_pairdiff(u, v, constraint, pooled):
    b, d = u.shape
    diff = u - v
    if constraint == "whiten":
        diff = diff @ np_whiten(pooled)[1]
    return np_constrained(np.sum(diff**2) / (2 * b * d), pooled, constraint)


def np_spectral(psi, psi2):
    b = psi.shape[0]
    mean = np.concatenate([psi, psi2]).mean(0)
    U, V = psi - mean, psi2 - mean
    S = U @ V.T
    pos = -np.mean(np.diag(S))
    neg = 0.5 * np.sum(S[~np.eye(b, dtype=bool)] ** 2) / (b * (b - 1))
    return pos + neg


def np_supervised(phi, a, p_a, num_classes):
    """Weighted least squares with an intercept, solved by lstsq, targets e_a / sqrt(p_a)."""
    b = phi.shape[0]
    X = np.hstack([phi, np.ones((b, 1))])
    Y = np.eye(num_classes)[a] / np.sqrt(p_a)[:, None]
    coef = np.linalg.lstsq(X, Y, rcond=None)[0]
    return np.mean(np.sum((X @ coef - Y) ** 2, axis=1))


def np_prefix_losses(cross, Mf1, Mg2, Mf2, Mg1):
    """L_{1:k} for k = 1..d from the cross diagonal and the half-batch moments (explicit loops)."""
    d = len(cross)
    out = []
    for k in range(1, d + 1):
        val = -2.0 * sum(cross[:k])
        for i in range(k):
            for j in range(k):
                val += 0.5 * (Mf1[i, j] * Mg2[i, j] + Mf2[i, j] * Mg1[i, j])
        out.append(val)
    return np.array(out)


def np_nest(prefix, nesting, weights):
    d = len(prefix)
    if nesting is None:
        return prefix[-1]
    w = np.full(d, 1.0 / d) if weights is None else np.asarray(weights, np.float64)
    return float(np.dot(w, prefix))


def np_lowrank(f, g, nesting=None, weights=None):
    b, d = f.shape
    h = b // 2
    fc, gc = f - f.mean(0), g - g.mean(0)
    cross = np.mean(fc * gc, axis=0)
    f1, f2, g1, g2 = fc[0::2], fc[1::2], gc[0::2], gc[1::2]
    mom = [x.T @ x / h for x in (f1, g2, f2, g1)]
    return np_nest(np_prefix_losses(cross, *mom), nesting, weights)


def np_lowrank_kernel(f, G, nesting=None, weights=None):
    b, d = f.shape
    h = b // 2
    fc = f - f.mean(0)
    e, o = np.arange(0, b, 2), np.arange(1, b, 2)
    f1, f2 = fc[e], fc[o]
    cross = np.array([
        0.5 * (f1[:, k] @ G[np.ix_(e, o)] @ f2[:, k] + f2[:, k] @ G[np.ix_(o, e)] @ f1[:, k]) / h**2
        for k in range(d)
    ])
    M1, M2 = f1.T @ f1 / h, f2.T @ f2 / h
    return np_nest(np_prefix_losses(cross, M1, M2, M2, M1), nesting, weights)


# ----------------------------------------------------------------------------------------------
# random batches


def random_batch(rng, b=12, d=3, num_classes=4):
    phi = rng.standard_normal((b, d)) @ rng.standard_normal((d, d))
    psi = 0.7 * phi + 0.5 * rng.standard_normal((b, d))
    psi2 = 0.6 * phi + 0.5 * rng.standard_normal((b, d))
    X = rng.standard_normal((b, 5))
    G = np.exp(-0.3 * ((X[:, None] - X[None]) ** 2).sum(-1)) * 2.0
    a = rng.integers(0, num_classes, b)
    a[:num_classes] = np.arange(num_classes)
    p_a = rng.dirichlet(np.ones(num_classes))[a]
    return dict(phi=phi, psi=psi, psi2=psi2, gram=G, a=a, p_a=p_a)


def to_batch(arrs, dtype):
    conv = {k: (jnp.asarray(v) if k == "a" else jnp.asarray(v, dtype)) for k, v in arrs.items()}
    return Batch(**conv)


NUMPY_CASES = {
    "svme/none": (lambda B: O.svme_loss(B.phi, B.psi), lambda r: np_svme(r["phi"], r["psi"])),
    "lowrank_kernel/standalone": (
        lambda B: O.lowrank_kernel_loss(B.phi, B.gram, nesting="joint", weights=[0.2, 0.3, 0.5]),
        lambda r: np_lowrank_kernel(r["phi"], r["gram"], "joint", [0.2, 0.3, 0.5])),
    "svme/vicreg": (("svme", {"constraint": "vicreg"}),
                    lambda r: np_svme(r["phi"], r["psi"], "vicreg")),
    "svme/whiten": (("svme", {"constraint": "whiten"}),
                    lambda r: np_svme(r["phi"], r["psi"], "whiten")),
    "svme_shared/whiten": (("svme_shared", {"constraint": "whiten"}),
                           lambda r: np_svme(r["phi"], r["psi"], "whiten", shared=True)),
    "kise/none": (("kise", {"constraint": None}), lambda r: np_kise(r["phi"], r["gram"])),
    "kise/vicreg": (("kise", {"constraint": "vicreg"}),
                    lambda r: np_kise(r["phi"], r["gram"], "vicreg")),
    "kise/whiten": (("kise", {"constraint": "whiten"}),
                    lambda r: np_kise(r["phi"], r["gram"], "whiten")),
    "spectral_contrastive": ("spectral_contrastive", lambda r: np_spectral(r["psi"], r["psi2"])),
    "non_contrastive/vicreg": (
        ("non_contrastive", {"constraint": "vicreg"}),
        lambda r: np_pairdiff(r["psi"], r["psi2"], "vicreg", np.vstack([r["psi"], r["psi2"]]))),
    "non_contrastive/whiten": (
        ("non_contrastive", {"constraint": "whiten"}),
        lambda r: np_pairdiff(r["psi"], r["psi2"], "whiten", np.vstack([r["psi"], r["psi2"]]))),
    "laplacian/vicreg": (("laplacian", {"constraint": "vicreg"}),
                         lambda r: np_pairdiff(r["phi"], r["psi"], "vicreg", r["phi"])),
    "laplacian/whiten": (("laplacian", {"constraint": "whiten"}),
                         lambda r: np_pairdiff(r["phi"], r["psi"], "whiten", r["phi"])),
    "supervised": (("supervised", {"eps": 1e-10}),
                   lambda r: np_supervised(r["phi"], r["a"], r["p_a"], 4)),
    "supervised/onehot": (("supervised", {"num_classes": 4, "eps": 1e-10}),
                          lambda r: np_supervised(r["phi"], r["a"], r["p_a"], 4)),
    "lowrank": ("lowrank", lambda r: np_lowrank(r["phi"], r["psi"])),
    "nested_joint": ("nested_joint", lambda r: np_lowrank(r["phi"], r["psi"], "joint")),
    "nested_joint/weights": (("nested_joint", {"weights": [0.5, 0.3, 0.2]}),
                             lambda r: np_lowrank(r["phi"], r["psi"], "joint", [0.5, 0.3, 0.2])),
    "nested_sequential": ("nested_sequential",
                          lambda r: np_lowrank(r["phi"], r["psi"], "sequential")),
    "lowrank_kernel": ("lowrank_kernel", lambda r: np_lowrank_kernel(r["phi"], r["gram"])),
    "nested_joint_kernel": ("nested_joint_kernel",
                            lambda r: np_lowrank_kernel(r["phi"], r["gram"], "joint")),
    "nested_sequential_kernel": ("nested_sequential_kernel",
                                 lambda r: np_lowrank_kernel(r["phi"], r["gram"], "sequential")),
}


def _objective(spec):
    if isinstance(spec, tuple):
        return O.get(spec[0], **spec[1])
    return O.get(spec)


# ----------------------------------------------------------------------------------------------
# formula tests


def test_vicreg_penalty_matches_formula_float32(rng):
    @jax.jit
    def penalty(phi, c_std, c_cov):
        pen, aux = O.vicreg_penalty(phi, c_std=c_std, c_cov=c_cov)
        total, _ = O.vicreg_combine(0.25, phi, c_std=c_std, c_cov=c_cov)
        return pen, aux["std_loss"], aux["cov_loss"], total

    for b, d, scale in [(16, 4, 0.7), (7, 1, 0.5), (33, 5, 1.2)]:
        mix = np.eye(d) + 0.4 * rng.standard_normal((d, d))
        phi = (scale * rng.standard_normal((b, d)) @ mix).astype(np.float32)
        for c_std, c_cov in [(1.0, 1.0), (3.0, 1.0), (1.0, 3.0)]:
            pen, std_loss, cov_loss, total = penalty(phi, c_std, c_cov)
            ref, s_ref, c_ref = np_vicreg(phi, c_std, c_cov)
            assert pen.dtype == jnp.float32
            # 1e-6, relative to the value where it exceeds 1 (float32 carries ~7 digits)
            assert abs(float(pen) - ref) < 1e-6 * max(1.0, abs(ref))
            assert abs(float(std_loss) - s_ref) < 1e-6
            assert abs(float(cov_loss) - c_ref) < 1e-6 * max(1.0, c_ref)
            ref_total = (0.25 + ref) / (1 + c_std + c_cov)
            assert abs(float(total) - ref_total) < 1e-6 * max(1.0, ref_total)
    # eager (unjitted) use agrees
    pen, _ = O.vicreg_penalty(phi, c_std=3.0, c_cov=1.0)
    assert abs(float(pen) - np_vicreg(phi, 3.0, 1.0)[0]) < 1e-6 * max(1.0, float(pen))


@pytest.mark.parametrize("case", sorted(NUMPY_CASES))
def test_loss_matches_numpy(case, precision, rng):
    spec, ref = NUMPY_CASES[case]
    arrs = random_batch(rng)
    batch = to_batch(arrs, precision)
    if callable(spec):  # a standalone function rather than a registry name
        loss, aux = spec(batch)
    else:
        loss, aux = _objective(spec)(batch)
    expected = ref(arrs)
    assert loss.dtype == precision
    assert all(v.dtype == precision for v in aux.values())
    tol = 1e-9 if precision == np.float64 else 2e-5
    if case.startswith("supervised"):
        tol = max(tol, 1e-7)  # the ridge (whitening jitter) vs an exact lstsq
    np.testing.assert_allclose(float(loss), expected, rtol=tol, atol=tol)


def test_supervised_onehot_equals_label_gram(rng):
    arrs = random_batch(rng, b=20, num_classes=4)
    args = (arrs["phi"], arrs["a"], arrs["p_a"])
    l1, _ = O.supervised_loss(*args)
    l2, _ = O.supervised_loss(*args, num_classes=4)
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-5)


def test_sequential_nesting_gradients(rng):
    """Column k of nested_sequential gets alpha_k dL_{1:k}/d(f_k, g_k), none from later columns."""
    b, d = 10, 3
    f = jnp.asarray(rng.standard_normal((b, d)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((b, d)), jnp.float32)
    G = jnp.asarray(random_batch(rng, b=b)["gram"], jnp.float32)
    alpha = jnp.array([0.5, 0.3, 0.2])

    @jax.jit
    def grads(f, g, G):
        seq = jax.grad(
            lambda f, g: O.lowrank_loss(f, g, nesting="sequential", weights=alpha)[0], (0, 1)
        )(f, g)
        joint = jax.grad(lambda f: O.lowrank_loss(f, g, nesting="joint", weights=alpha)[0])(f)
        seq_k = jax.grad(
            lambda f: O.lowrank_kernel_loss(f, G, nesting="sequential", weights=alpha)[0]
        )(f)
        prefix, prefix_k = [], []
        for k in range(1, d + 1):  # the plain low-rank loss of the prefix is L_{1:k}
            plain = jax.grad(lambda f, g: O.lowrank_loss(f, g)[0], (0, 1))
            prefix.append(plain(f[:, :k], g[:, :k]))
            prefix_k.append(jax.grad(lambda f: O.lowrank_kernel_loss(f, G)[0])(f[:, :k]))
        return seq, joint, seq_k, prefix, prefix_k

    (gf, gg), gj, gk, prefix, prefix_k = grads(f, g, G)
    for k in range(d):
        pf, pg = prefix[k]
        np.testing.assert_allclose(gf[:, k], alpha[k] * pf[:, k], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(gg[:, k], alpha[k] * pg[:, k], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(gk[:, k], alpha[k] * prefix_k[k][:, k], rtol=1e-4, atol=1e-6)
    # joint nesting differentiates its value, so earlier columns also feel the later prefixes
    assert not np.allclose(gj, gf, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# population problems with exact spectra


def _orth(Y, w):
    """Columns of Y centred and orthonormalised in L2(w), by the symmetric (Loewdin) map."""
    Y = Y - w @ Y
    C = Y.T @ (w[:, None] * Y)
    e, E = np.linalg.eigh(C)
    return Y @ E @ np.diag(e**-0.5) @ E.T


@functools.cache
def dense_problem(seed=0, m=24, M=10, N=6):
    """Rational P = n / N, uniform P_X; exact SVD; pair, view and kernel batches as index lists."""
    rng = np.random.default_rng(seed)
    while True:
        n = np.stack([rng.multinomial(N, rng.dirichlet(0.5 * np.ones(M))) for _ in range(m)])
        if (n.sum(0) == 0).any():
            continue
        P = n / N
        px = np.full(m, 1.0 / m)
        p = px @ P
        Z = np.sqrt(px)[:, None] * P / np.sqrt(p)[None, :]
        U, s, Vt = np.linalg.svd(Z, full_matrices=False)
        if np.min(-np.diff(s[: D + 2])[1:]) > 0.03:  # distinct s_1 > .. > s_{D+1}
            break
    assert np.isclose(s[0], 1.0)
    mu = U[:, 1 : D + 1] / np.sqrt(px)[:, None]
    nu = Vt.T[:, 1 : D + 1] / np.sqrt(p)[:, None]
    i, j = np.nonzero(n)
    pairs = (np.repeat(i, n[i, j]), np.repeat(j, n[i, j]))
    nn = n[:, :, None] * n[:, None, :]
    t = np.nonzero(nn)
    views = tuple(np.repeat(x, nn[t]) for x in t)
    K = (P / p[None, :]) @ P.T  # k_X+(x_i, x_l)
    return dict(P=P, px=px, p=p, s=s[1 : D + 1], s_all=s, mu=mu, nu=nu, pairs=pairs,
                views=views, K=K, M=M, m=m)


def _tstar(pr, F):
    """(T* f)(a_j) = E[f(X) | a_j]."""
    return (pr["P"] * pr["px"][:, None]).T @ F / pr["p"][:, None]


def _candidates(pr, side, rng, n_pert=4, eps=0.25):
    """Exact, random orthonormal and perturbed (re-orthonormalised) functions on X or on A."""
    w = pr["px"] if side == "x" else pr["p"]
    exact = pr["mu"] if side == "x" else pr["nu"]
    rand = [_orth(rng.standard_normal(exact.shape), w) for _ in range(3)]
    pert = [_orth(exact + eps * rng.standard_normal(exact.shape), w) for _ in range(n_pert)]
    return exact, rand, pert


def _assert_minimised(loss_of, exact, others, margin=1e-4):
    l0 = loss_of(exact)
    for other in others:
        assert loss_of(other) > l0 + margin, (loss_of(other), l0)
    return l0


@pytest.mark.parametrize("constraint", ["vicreg", "whiten"])
def test_population_svme_kise(constraint, rng):
    with jax.enable_x64(True):
        pr = dense_problem()
        ix, ja = pr["pairs"]
        ex, rand, pert = _candidates(pr, "x", rng)
        theory = 1.0 - np.mean(pr["s"] ** 2)
        norm = 3.0 if constraint == "vicreg" else 1.0  # vicreg: (L + 0 + 0) / (1 + 1 + 1)

        svme = O.get("svme", constraint=constraint)

        def l_svme(F):
            return float(svme(Batch(phi=jnp.asarray(F[ix]), psi=jnp.asarray(_tstar(pr, F)[ja])))[0])

        l0 = _assert_minimised(l_svme, ex, rand + pert)
        np.testing.assert_allclose(l0 * norm, theory, rtol=1e-5)
        # Psi's own optimum is T* Phi: perturbing it raises the loss
        psi = _tstar(pr, ex)
        for _ in range(3):
            bad = psi + 0.1 * rng.standard_normal(psi.shape)
            assert float(svme(Batch(phi=jnp.asarray(ex[ix]), psi=jnp.asarray(bad[ja])))[0]) > l0

        kise = O.get("kise", constraint=constraint)
        G = jnp.asarray(pr["K"])

        def l_kise(F):
            return float(kise(Batch(phi=jnp.asarray(F), gram=G))[0])

        l0 = _assert_minimised(l_kise, ex, rand + pert)
        np.testing.assert_allclose(l0 * norm, theory, rtol=1e-5)


@pytest.mark.parametrize("constraint", ["vicreg", "whiten"])
def test_population_non_contrastive(constraint, rng):
    with jax.enable_x64(True):
        pr = dense_problem()
        _, va, vb = pr["views"]
        ex, rand, pert = _candidates(pr, "a", rng)
        obj = O.get("non_contrastive", constraint=constraint)

        def loss(F):
            return float(obj(Batch(phi=None, psi=jnp.asarray(F[va]), psi2=jnp.asarray(F[vb])))[0])

        l0 = _assert_minimised(loss, ex, rand + pert)
        norm = 3.0 if constraint == "vicreg" else 1.0
        np.testing.assert_allclose(l0 * norm, 1.0 - np.mean(pr["s"] ** 2), rtol=1e-5)


def test_population_spectral_contrastive(rng):
    """Optimum Psi = s_l nu_l; the off-diagonal negatives are O(1/b) from the population value."""
    with jax.enable_x64(True):
        pr = dense_problem()
        _, va, vb = pr["views"]
        s = pr["s"]
        obj = O.get("spectral_contrastive")

        def loss(F):
            return float(obj(Batch(phi=None, psi=jnp.asarray(F[va]), psi2=jnp.asarray(F[vb])))[0])

        ex = pr["nu"] * s
        rand = [_orth(rng.standard_normal(ex.shape), pr["p"]) * s for _ in range(3)]
        pert = [ex + 0.25 * rng.standard_normal(ex.shape) * s for _ in range(4)]
        scaled = [1.3 * ex, 0.7 * ex]
        l0 = _assert_minimised(loss, ex, rand + pert + scaled, margin=1e-3)
        b = len(va)
        np.testing.assert_allclose(l0, -0.5 * np.sum(s**4), atol=2.0 / b)
        _, aux = obj(Batch(phi=None, psi=jnp.asarray(ex[va]), psi2=jnp.asarray(ex[vb])))
        np.testing.assert_allclose(aux["s"], s, rtol=1e-6)


def test_population_supervised(rng):
    """Soft labels P+(a|x) = P[i, a] over M classes: the balanced risk's minimiser is mu_1..d."""
    with jax.enable_x64(True):
        pr = dense_problem()
        ix, ja = pr["pairs"]
        ex, rand, pert = _candidates(pr, "x", rng)
        obj = O.get("supervised", eps=1e-12)
        p_a = jnp.asarray(pr["p"][ja])
        a = jnp.asarray(ja)

        def loss(F):
            return float(obj(Batch(phi=jnp.asarray(F[ix]), a=a, p_a=p_a))[0])

        l0 = _assert_minimised(loss, ex, rand + pert)
        # E|Y~|^2 = M - 1 (targets e_a / sqrt(p_a)); the head explains s_1^2 + .. + s_d^2
        np.testing.assert_allclose(l0, pr["M"] - 1 - np.sum(pr["s"] ** 2), rtol=1e-8)
        # span only: any invertible mix of the exact columns gives the same risk
        mix = ex @ rng.standard_normal((D, D)) + 3.0
        np.testing.assert_allclose(loss(mix), l0, rtol=1e-8)


@functools.cache
def graph_problem(seed=3, m=10, k=5, d=2):
    """Integer PSD weights W = B B^T + 2 I; edges (u, v) listed W[u, v] times."""
    rng = np.random.default_rng(seed)
    while True:
        Bm = rng.integers(0, 3, (m, k))
        W = Bm @ Bm.T + 2 * np.eye(m, dtype=int)
        deg = W.sum(1)
        px = deg / deg.sum()
        S = W / np.sqrt(np.outer(deg, deg))
        lam, E = np.linalg.eigh(S)
        lam, E = lam[::-1], E[:, ::-1]
        if np.min(-np.diff(lam[: d + 2])[1:]) > 0.03:
            break
    mu = E[:, 1 : d + 1] / np.sqrt(px)[:, None]
    u, v = np.nonzero(W)
    edges = (np.repeat(u, W[u, v]), np.repeat(v, W[u, v]))
    return dict(px=px, lam=lam[1 : d + 1], mu=mu, edges=edges)


@pytest.mark.parametrize("name", ["laplacian", "svme_shared"])
@pytest.mark.parametrize("constraint", ["vicreg", "whiten"])
def test_population_graph(name, constraint, rng):
    """Laplacian eigenmaps and shared-encoder SVME on a PSD graph (P_A = P_X = degree-weighted)."""
    with jax.enable_x64(True):
        pr = graph_problem()
        u, v = pr["edges"]
        w = pr["px"]
        ex = pr["mu"]
        rand = [_orth(rng.standard_normal(ex.shape), w) for _ in range(3)]
        pert = [_orth(ex + 0.25 * rng.standard_normal(ex.shape), w) for _ in range(4)]
        obj = O.get(name, constraint=constraint)

        def loss(F):
            return float(obj(Batch(phi=jnp.asarray(F[u]), psi=jnp.asarray(F[v])))[0])

        l0 = _assert_minimised(loss, ex, rand + pert)
        theory = (1.0 if name == "laplacian" else 2.0) * (1.0 - np.mean(pr["lam"]))
        norm = 3.0 if constraint == "vicreg" else 1.0
        np.testing.assert_allclose(l0 * norm, theory, rtol=1e-5)


def _lowrank_population(pr, kernel):
    """Functions on the duplicated batch: every row twice, so each half is the whole population."""
    if kernel:
        idx = np.repeat(np.arange(pr["m"]), 2)
        G = jnp.asarray(pr["K"][np.ix_(idx, idx)])
        return lambda name, F, Gf=None: O.get(name)(Batch(phi=jnp.asarray(F[idx]), gram=G))
    ix, ja = (np.repeat(t, 2) for t in pr["pairs"])
    return lambda name, F, Gf: O.get(name)(
        Batch(phi=jnp.asarray(F[ix]), psi=jnp.asarray(Gf[ja]))
    )


@pytest.mark.parametrize("kernel", [False, True], ids=["pairs", "kernel"])
def test_population_lowrank_and_nesting(kernel, rng):
    with jax.enable_x64(True):
        pr = dense_problem()
        s = pr["s"]
        run = _lowrank_population(pr, kernel)
        sfx = "_kernel" if kernel else ""
        names = ["lowrank" + sfx, "nested_joint" + sfx, "nested_sequential" + sfx]
        if kernel:  # f_l = s_l mu_l; eigenvalues of the dual kernel are s_l^2
            ex = (pr["mu"] * s, None)
            rand = [(_orth(rng.standard_normal(ex[0].shape), pr["px"]) * s, None) for _ in range(3)]
            pert = [(ex[0] + 0.1 * rng.standard_normal(ex[0].shape) * s, None) for _ in range(4)]
        else:  # f_l = sqrt(s_l) mu_l, g_l = sqrt(s_l) nu_l
            r = np.sqrt(s)
            ex = (pr["mu"] * r, pr["nu"] * r)
            rand = [(_orth(rng.standard_normal(ex[0].shape), pr["px"]) * r,
                     _orth(rng.standard_normal(ex[1].shape), pr["p"]) * r) for _ in range(3)]
            pert = [(ex[0] + 0.1 * rng.standard_normal(ex[0].shape) * r,
                     ex[1] + 0.1 * rng.standard_normal(ex[1].shape) * r) for _ in range(4)]
        theory = -np.sum(s**4) if kernel else -np.sum(s**2)
        perm = [D - 1 - i for i in range(D)]  # reverse the columns
        q, _ = np.linalg.qr(rng.standard_normal((D, D)))  # a rotation mixing the columns

        def permute(FG, c):
            return tuple(None if x is None else x[:, c] for x in FG)

        def rotate(FG):
            return tuple(None if x is None else x @ q for x in FG)

        for name in names:
            def loss(FG, name=name):
                return float(run(name, *FG)[0])

            l0 = _assert_minimised(loss, ex, rand + pert, margin=1e-5)
            if name.startswith("lowrank"):
                np.testing.assert_allclose(l0, theory, rtol=1e-10)
                # plain low-rank: invariant to permuting or rotating the columns
                np.testing.assert_allclose(loss(permute(ex, perm)), l0, rtol=1e-10)
                np.testing.assert_allclose(loss(rotate(ex)), l0, rtol=1e-10)
                _, aux = run(name, *ex)
                np.testing.assert_allclose(aux["s"], s, rtol=1e-10)
            else:
                # nested: the order matters; the exact ordered columns are the unique optimum
                assert loss(permute(ex, perm)) > l0 + 1e-4
                assert loss(permute(ex, [1, 0, 2])) > l0 + 1e-5
                assert loss(rotate(ex)) > l0 + 1e-5
                prefix = -np.cumsum(s**4 if kernel else s**2)
                np.testing.assert_allclose(l0, np.mean(prefix), rtol=1e-10)


# ----------------------------------------------------------------------------------------------
# jit, grad, dtype, registry, errors


def test_jit_grad_dtype(precision, rng):
    """Every registered objective under one jit: finite gradients, dtype kept, aux shapes."""
    arrs = random_batch(rng)  # the shapes of test_loss_matches_numpy: eager calls reuse its cache
    batch = to_batch(arrs, precision)
    objs = {n: O.get(n, **({"num_classes": 4} if n == "supervised" else {})) for n in O.NAMES}

    @jax.jit
    def all_objectives(phi, psi, psi2):
        def one(obj):
            return jax.value_and_grad(
                lambda p, q, r: obj(batch._replace(phi=p, psi=q, psi2=r)), (0, 1, 2),
                has_aux=True,
            )(phi, psi, psi2)

        return {n: one(obj) for n, obj in objs.items()}

    out = all_objectives(batch.phi, batch.psi, batch.psi2)
    for name, ((loss, aux), grads) in out.items():
        assert loss.dtype == precision and loss.shape == (), name
        assert np.isfinite(float(loss)), name
        for g in grads:
            assert g.dtype == precision and np.all(np.isfinite(np.asarray(g))), name
        assert any(float(jnp.abs(g).max()) > 0 for g in grads), name
        for k, v in aux.items():
            assert v.dtype == precision, (name, k)
            assert v.shape == ((3,) if k == "s" else ()), (name, k)
        eager, _ = objs[name](batch)
        tol = 1e-5 if precision == np.float32 else 1e-12
        np.testing.assert_allclose(float(eager), float(loss), rtol=tol, atol=tol, err_msg=name)


def test_registry():
    assert set(O.NAMES) == {
        "svme", "svme_shared", "kise", "spectral_contrastive", "non_contrastive", "supervised",
        "laplacian", "lowrank", "nested_joint", "nested_sequential", "lowrank_kernel",
        "nested_joint_kernel", "nested_sequential_kernel",
    }
    kinds = {n: (O.get(n).data, O.get(n).psi, O.get(n).even_batch) for n in O.NAMES}
    assert kinds["svme"] == ("pairs", "separate", False)
    assert kinds["svme_shared"] == ("pairs", "shared", False)
    assert kinds["kise"] == ("gram", "none", False)
    assert kinds["spectral_contrastive"] == ("views", "shared", False)
    assert kinds["non_contrastive"] == ("views", "shared", False)
    assert kinds["supervised"] == ("labels", "none", False)
    assert kinds["laplacian"] == ("pairs", "shared", False)
    for n in ("lowrank", "nested_joint", "nested_sequential"):
        assert kinds[n] == ("pairs", "separate", True)
    for n in ("lowrank_kernel", "nested_joint_kernel", "nested_sequential_kernel"):
        assert kinds[n] == ("gram", "none", True)
    obj = O.get("svme", constraint="whiten", c_std=3.0)
    assert O.get(obj) is obj
    assert dict(obj.options)["constraint"] == "whiten"
    hash(O.get("nested_joint", weights=np.array([0.5, 0.5])))  # usable as a static argument

    def mine(batch):
        return jnp.sum(batch.phi), {}

    wrapped = O.get(mine)
    assert (wrapped.name, wrapped.data, wrapped.psi) == ("mine", "pairs", "separate")
    assert O.get(mine, data="gram", psi="none").data == "gram"
    assert float(wrapped(Batch(phi=jnp.ones((2, 2))))[0]) == 4.0


def test_errors(rng):
    phi = jnp.asarray(rng.standard_normal((8, 3)), jnp.float32)
    odd = jnp.asarray(rng.standard_normal((7, 3)), jnp.float32)
    with pytest.raises(ValueError, match="even"):
        O.lowrank_loss(odd, odd)
    with pytest.raises(ValueError, match="even"):
        jax.jit(O.get("nested_sequential_kernel"))(Batch(phi=odd, gram=jnp.eye(7)))
    with pytest.raises(ValueError, match="even"):
        O.get("nested_joint").check_batch_size(7)
    O.get("nested_joint").check_batch_size(8)
    O.get("svme").check_batch_size(7)
    with pytest.raises(ValueError, match="too small"):
        O.get("svme").check_batch_size(1)
    with pytest.raises(ValueError, match="same"):
        O.svme_loss(phi, phi[:, :2])
    with pytest.raises(ValueError, match="same"):
        O.get("lowrank")(Batch(phi=phi, psi=phi[:6]))
    with pytest.raises(ValueError, match=r"gram must be \(8, 8\)"):
        O.kise_loss(phi, jnp.eye(7))
    with pytest.raises(ValueError, match=r"gram must be \(8, 8\)"):
        O.get("lowrank_kernel")(Batch(phi=phi, gram=jnp.ones((8, 8, 1))))
    with pytest.raises(ValueError, match="batch.psi is None"):
        O.get("svme")(Batch(phi=phi))
    with pytest.raises(ValueError, match="batch.psi2 is None"):
        jax.jit(O.get("spectral_contrastive"))(Batch(phi=phi, psi=phi))
    with pytest.raises(ValueError, match="batch.gram is None"):
        O.get("kise")(Batch(phi=phi))
    with pytest.raises(ValueError, match="batch.a is None"):
        O.get("supervised")(Batch(phi=phi))
    with pytest.raises(ValueError, match=r"\(b, d\)"):
        O.svme_loss(phi[:, 0], phi[:, 0])
    with pytest.raises(ValueError, match="at least 2"):
        O.vicreg_penalty(phi[:1])
    with pytest.raises(ValueError, match="integer"):
        O.supervised_loss(phi, jnp.zeros(8), jnp.ones(8))
    with pytest.raises(ValueError, match="p_a must be > 0"):
        O.supervised_loss(phi, jnp.zeros(8, int), jnp.zeros(8))
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        O.supervised_loss(phi, jnp.zeros(7, int), jnp.ones(7))
    with pytest.raises(ValueError, match="unknown objective 'nope'.*svme"):
        O.get("nope")
    with pytest.raises(ValueError, match="unknown option"):
        O.get("svme", c_foo=1.0)
    with pytest.raises(ValueError, match="unknown option"):
        O.get("spectral_contrastive", constraint="vicreg")
    with pytest.raises(ValueError, match="constraint"):
        O.get("kise", constraint="qr")
    with pytest.raises(ValueError, match="constraint"):
        O.svme_loss(phi, phi, constraint="qr")
    with pytest.raises(ValueError, match="weights must have shape"):
        O.get("nested_joint", weights=[1.0, 1.0])(Batch(phi=phi, psi=phi))
    with pytest.raises(ValueError, match="positive"):
        O.get("nested_joint", weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="nested"):
        O.lowrank_loss(phi, phi, weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="nesting"):
        O.lowrank_loss(phi, phi, nesting="parallel")
    with pytest.raises(ValueError, match="cannot be applied"):
        O.get(O.get("svme"), constraint=None)
    with pytest.raises(TypeError):
        O.get(3)
    with pytest.raises(ValueError, match="Objective.data"):
        O.Objective(name="x", fn=lambda b: (0.0, {}), data="triples", psi="none")



def test_registered_constraint_default_is_whitening(rng):
    """The registered constrained objectives default to exact batch whitening (see the module
    docstring for the measurements behind the choice); VICReg stays one option away."""
    for name in ("svme", "svme_shared", "kise", "non_contrastive", "laplacian"):
        assert dict(O.get(name).options)["constraint"] == "whiten", name
        assert dict(O.get(name, constraint="vicreg").options)["constraint"] == "vicreg", name
