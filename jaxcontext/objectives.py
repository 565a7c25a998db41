r"""Objectives of the learned path: pure, differentiable losses minimised by the contexture.

Every objective is a pure function of embeddings (and, where needed, the batch Gram or labels) that
returns ``(loss, aux)``: ``loss`` a scalar in the embeddings' dtype, ``aux`` a dict of named arrays
for the training history (scalars, plus a ``(d,)`` vector under ``"s"`` for the objectives that
estimate singular values). All batch statistics are plain reductions over the batch axis (axis 0),
so under a data-parallel mesh that shards the batch they are global without any collective named
in the code. Gram and covariance products use ``precision=HIGHEST``. Notation: ``b`` samples,
``d`` output columns, ``~`` centres over the batch, ``T`` the expectation operator of the context
with singular triples ``(s_i, mu_i, nu_i)``, ``s_0 = 1`` the trivial pair (REFERENCE.md sections 1
and 3).

Standalone losses (explicit array arguments; see each docstring for the estimator):

===============================  ===================================================================
``svme_loss(phi, psi)``          SVME, ``|Phi~ - Psi~|_F^2 / (b d)`` (pair access)
``kise_loss(phi, gram)``         KISE, ``tr(Phi~^T (I - G / b) Phi~) / (b d)`` (kernel access)
``vicreg_penalty(phi)``          the authors' VICReg variance / covariance penalty on ``Phi~``
``vicreg_combine(loss, phi)``    ``(L + c_std std_loss + c_cov cov_loss) / (1 + c_std + c_cov)``
``spectral_contrastive_loss``    HaoChen et al. / Thm 10, unconstrained, optimum ``Psi = s_i nu_i``
``non_contrastive_loss``         ``E |Psi(A) - Psi(A+)|^2 / (2 d)`` s.t. ``Cov[Psi] = I``
``supervised_loss``              the balanced risk of Thm 7 with the linear head solved on the batch
``laplacian_loss``               Laplacian eigenmaps ``E_{(u,v)~w} |Phi(u) - Phi(v)|^2 / (2 d)``
``lowrank_loss(f, g)``           NeuralSVD low-rank objective (pairs), plain or nested
``lowrank_kernel_loss(f, G)``    the same with kernel access, optimum ``f_l = s_l mu_l``
===============================  ===================================================================

The constrained objectives (SVME, KISE, non-contrastive, Laplacian) take ``constraint=None`` (the
bare formula), ``"vicreg"`` (the penalty combination above, exactly as the authors' code) or
``"whiten"`` (batch whitening of the constrained side with :func:`jaxcontext._whiten.whiten`, which
makes ``Cov = I`` exact on every batch and the loss a function of the span alone). The registered
objectives default to ``"whiten"``: VICReg only pushes each standard deviation *up* to 1, so a batch
operator ``I - G/b`` that is not positive semi-definite (a sparse kNN Gram on a batch much smaller
than the data) lets KISE's scale run away (measured on digits, kNN K = 15, d = 16, batch 256, 1,500
steps: KISE loss -1,707 and held-out R2_CCA 0.48 with VICReg, 0.83 whitened; SVME 0.78 and 0.88).
On the Mehler problem the two agree for KISE (0.997 / 0.995) and whitening helps SVME (0.967 /
0.992).

The training loop sees objectives through a small protocol:

- :class:`Batch` (a NamedTuple) carries what the loop computed on one global batch: ``phi`` (the
  encoder on the inputs), ``psi`` and ``psi2`` (the context encoder on one or two independent
  context draws per input), ``gram`` (the batch dual-kernel Gram), ``a`` and ``p_a`` (class labels
  and their marginal probabilities), and ``weight`` (per-row importance weights, when the loop was
  given ``importance=``; only objectives with ``weighted=True`` accept them).
- :class:`Objective` (a frozen dataclass) names a loss ``fn(batch) -> (loss, aux)`` together with
  what the loop must sample (``data``: ``"pairs"``, ``"views"``, ``"gram"`` or ``"labels"``) and
  which encoder produces ``psi`` (``psi``: ``"separate"``, ``"shared"`` or ``"none"``);
  ``even_batch`` marks the half-batch objectives, ``min_batch`` the smallest usable batch,
  ``weighted`` the objectives that accept importance weights (the pair low-rank family), and
  :meth:`Objective.check_batch_size` raises before any compilation.
- :func:`get` turns a registered name (:data:`NAMES`) and its options into an :class:`Objective`;
  an :class:`Objective` passes through and a plain callable ``fn(batch) -> (loss, aux)`` is wrapped.

Example:
    >>> import jax, jax.numpy as jnp
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> phi = jax.random.normal(k1, (64, 4))
    >>> psi = phi + 0.1 * jax.random.normal(k2, (64, 4))
    >>> obj = get("svme", constraint="vicreg")  # the authors' VICReg SVME, a separate Psi
    >>> obj.data, obj.psi
    ('pairs', 'separate')
    >>> loss, aux = jax.jit(obj)(Batch(phi=phi, psi=psi))
    >>> sorted(aux)
    ['cov_loss', 'std_loss', 'svme']
    >>> bool(jnp.isclose(aux["svme"], 0.01, rtol=0.5))
    True
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._whiten import whiten

__all__ = [
    "CONSTRAINTS",
    "NAMES",
    "Batch",
    "Objective",
    "get",
    "kise_loss",
    "laplacian_loss",
    "lowrank_kernel_loss",
    "lowrank_loss",
    "non_contrastive_loss",
    "spectral_contrastive_loss",
    "supervised_loss",
    "svme_loss",
    "vicreg_combine",
    "vicreg_penalty",
]

HIGHEST = jax.lax.Precision.HIGHEST

#: Orthonormality constraints accepted by the constrained objectives.
CONSTRAINTS = ("vicreg", "whiten", None)

#: What an objective can ask the training loop to sample, and where its ``psi`` comes from.
DATA_KINDS = ("pairs", "views", "gram", "labels")
PSI_KINDS = ("separate", "shared", "none")

Aux = dict[str, jax.Array]


class Batch(NamedTuple):
    """What the training loop feeds an objective (all arrays over one global batch of b samples).

    Attributes:
        phi: ``(b, d)`` ``Phi(x_i)``, the encoder on the inputs.
        psi: ``(b, d)`` ``Psi(a_i)`` with ``a_i ~ P+(. | x_i)`` (a separate encoder, or ``Phi`` when
            shared).
        psi2: ``(b, d)`` ``Psi(a'_i)``, a second draw ``a'_i ~ P+(. | x_i)`` independent of ``a_i``
            given the same ``x_i`` (the "views" objectives).
        gram: ``(b, b)`` dual-kernel Gram ``G[i, l] = k_X+(x_i, x_l)`` (KISE and the kernel forms).
        a: ``(b,)`` integer context values where they are class indices (labels).
        p_a: ``(b,)`` ``P_A(a_i)``, the marginal probability of each sample's class (balanced
            supervised).
        weight: ``(b,)`` positive importance weights of the rows, ``p_X(x_i) / q(x_i)`` up to a
            constant factor, when the inputs were drawn from a proposal ``q`` instead of ``P_X``
            (``fit(..., importance=...)``); None: unweighted. Only objectives with
            ``weighted=True`` use it.
    """

    phi: jax.Array
    psi: jax.Array | None = None
    psi2: jax.Array | None = None
    gram: jax.Array | None = None
    a: jax.Array | None = None
    p_a: jax.Array | None = None
    weight: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class Objective:
    """A loss together with what the training loop must provide for it.

    Attributes:
        name: registry name (or the wrapped callable's name).
        fn: pure, traceable, differentiable ``fn(batch) -> (loss, aux)``.
        data: what the loop samples: ``"pairs"`` ``(x, a)``, ``"views"`` ``(x, a, a')`` with
            ``a, a'`` independent draws from the same ``x``, ``"gram"`` (``x`` and the batch Gram
            ``G``), ``"labels"`` (``x``, its class ``a`` and ``p_a = P_A(a)``).
        psi: ``"separate"`` (a second encoder ``Psi`` on A), ``"shared"`` (``Phi`` applied to the
            context values) or ``"none"``.
        even_batch: the estimator splits the batch into two independent halves (even and odd rows),
            so the batch size must be even.
        min_batch: the smallest batch size the estimator is defined for.
        options: the options the objective was built with, as sorted ``(name, value)`` pairs.
        weighted: the loss accepts per-row importance weights (``Batch.weight``); the training
            loop refuses ``importance=`` for objectives without it.
    """

    name: str
    fn: Callable[[Batch], tuple[jax.Array, Aux]]
    data: str
    psi: str
    even_batch: bool = False
    min_batch: int = 2
    options: tuple[tuple[str, Any], ...] = ()
    weighted: bool = False

    def __post_init__(self):
        if self.data not in DATA_KINDS:
            raise ValueError(f"Objective.data: expected one of {DATA_KINDS}, got {self.data!r}")
        if self.psi not in PSI_KINDS:
            raise ValueError(f"Objective.psi: expected one of {PSI_KINDS}, got {self.psi!r}")
        if not callable(self.fn):
            raise TypeError(f"Objective.fn: expected a callable, got {type(self.fn).__name__}")

    def __call__(self, batch: Batch) -> tuple[jax.Array, Aux]:
        """Evaluate the loss on a batch: ``(loss, aux)``."""
        return self.fn(batch)

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ValueError when ``batch_size`` cannot be used with this objective.

        Meant for the training loop, before any compilation: the half-batch objectives need an even
        batch, every batch statistic needs at least ``min_batch`` samples.
        """
        b = int(batch_size)
        if b < self.min_batch:
            raise ValueError(
                f"objective {self.name!r}: batch_size {b} is too small; need at least "
                f"{self.min_batch}"
            )
        if self.even_batch and b % 2:
            raise ValueError(
                f"objective {self.name!r}: batch_size must be even (the estimator uses two "
                f"independent half-batches), got {b}"
            )


# ----------------------------------------------------------------------------------------------
# input checks (shapes are static, so these run at trace time and under jit)


def _emb(x: Any, name: str, where: str) -> jax.Array:
    """A ``(b, d)`` floating array, or a clear error naming the objective and the argument."""
    if x is None:
        raise ValueError(f"{where}: {name} is required but was None")
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{where}: {name} must be a (b, d) array, got shape {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{where}: {name} is empty (shape {tuple(x.shape)})")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _same_shape(x: jax.Array, y: jax.Array, nx: str, ny: str, where: str) -> None:
    if x.shape != y.shape:
        raise ValueError(
            f"{where}: {nx} and {ny} must have the same (b, d) shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )


def _min_rows(x: jax.Array, n: int, where: str, why: str) -> None:
    if x.shape[0] < n:
        raise ValueError(f"{where}: need a batch of at least {n} samples ({why}), got {x.shape[0]}")


def _even_rows(x: jax.Array, where: str) -> None:
    b = x.shape[0]
    if b % 2 or b < 2:
        raise ValueError(
            f"{where}: batch size must be even and >= 2 (the estimator splits the batch into two "
            f"independent halves, even and odd rows), got {b}"
        )


def _gram(g: Any, b: int, dtype: Any, where: str) -> jax.Array:
    if g is None:
        raise ValueError(f"{where}: gram is required (a (b, b) batch Gram of the dual kernel)")
    g = jnp.asarray(g)
    if g.shape != (b, b):
        raise ValueError(
            f"{where}: gram must be ({b}, {b}) to match a batch of {b} embeddings, got shape "
            f"{tuple(g.shape)}"
        )
    return g.astype(dtype)


def _check_constraint(constraint: Any, where: str) -> None:
    if constraint not in CONSTRAINTS:
        raise ValueError(f"{where}: constraint must be one of {CONSTRAINTS}, got {constraint!r}")


def _centre(x: jax.Array) -> jax.Array:
    return x - jnp.mean(x, axis=0)


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=HIGHEST)


# ----------------------------------------------------------------------------------------------
# VICReg


def vicreg_penalty(phi: Any, *, c_std: float = 1.0, c_cov: float = 1.0) -> tuple[jax.Array, Aux]:
    r"""The VICReg variance and covariance penalty, as the contextures authors compute it.

    On the centred ``B = Phi~`` only (never on ``Psi``):

    .. math::

        \mathrm{std}_j = \sqrt{\tfrac{1}{b-1} \textstyle\sum_i B_{ij}^2 + 10^{-4}}, \quad
        \mathrm{std\_loss} = \tfrac1d \textstyle\sum_j \max(0, 1 - \mathrm{std}_j),

        C = B^T B / (b - 1), \quad
        \mathrm{cov\_loss} = \tfrac{1}{d (d - 1)} \textstyle\sum_{j \ne k} C_{jk}^2

    (``cov_loss = 0`` when ``d = 1``).

    Args:
        phi: ``(b, d)`` embeddings, ``b >= 2``.
        c_std: weight of the variance term.
        c_cov: weight of the covariance term.

    Returns:
        ``(c_std * std_loss + c_cov * cov_loss, {"std_loss", "cov_loss"})``. The combination with a
        loss, normalised as in the authors' code, is :func:`vicreg_combine`.
    """
    where = "vicreg_penalty"
    phi = _emb(phi, "phi", where)
    _min_rows(phi, 2, where, "the unbiased variance divides by b - 1")
    b, d = phi.shape
    B = _centre(phi)
    var = jnp.sum(B * B, axis=0) / (b - 1)
    std = jnp.sqrt(var + 1e-4)
    std_loss = jnp.mean(jax.nn.relu(1.0 - std))
    if d > 1:
        C = _mm(B.T, B) / (b - 1)
        off = C * (1.0 - jnp.eye(d, dtype=C.dtype))
        cov_loss = jnp.sum(off * off) / (d * (d - 1))
    else:
        cov_loss = jnp.zeros((), phi.dtype)
    return c_std * std_loss + c_cov * cov_loss, {"std_loss": std_loss, "cov_loss": cov_loss}


def vicreg_combine(
    loss: Any, phi: Any, *, c_std: float = 1.0, c_cov: float = 1.0
) -> tuple[jax.Array, Aux]:
    r"""Combine a loss with the VICReg penalty on ``phi``, normalised as the authors do.

    ``total = (L + c_std S + c_cov V) / (1 + c_std + c_cov)`` with ``S`` and ``V`` the ``std_loss``
    and ``cov_loss`` of :func:`vicreg_penalty` (the authors' grid is ``c_std, c_cov in {1, 3}``).

    Args:
        loss: scalar loss ``L``.
        phi: ``(b, d)`` embeddings the penalty constrains towards ``Cov = I``.
        c_std: weight of the variance term.
        c_cov: weight of the covariance term.

    Returns:
        ``(total, {"std_loss", "cov_loss"})``.
    """
    pen, aux = vicreg_penalty(phi, c_std=c_std, c_cov=c_cov)
    return (loss + pen) / (1.0 + c_std + c_cov), aux


def _constrained(loss, aux, phi, constraint, c_std, c_cov):
    """Apply the VICReg combination when asked (whitening happens before the loss is formed)."""
    if constraint == "vicreg":
        total, pen = vicreg_combine(loss, phi, c_std=c_std, c_cov=c_cov)
        return total, {**aux, **pen}
    return loss, aux


# ----------------------------------------------------------------------------------------------
# SVME, KISE, non-contrastive, Laplacian eigenmaps


def svme_loss(
    phi: Any,
    psi: Any,
    *,
    constraint: str | None = None,
    shared: bool = False,
    c_std: float = 1.0,
    c_cov: float = 1.0,
    eps: float = 1e-6,
) -> tuple[jax.Array, Aux]:
    r"""SVME (pair access): ``L = |Phi~ - Psi~|_F^2 / (b d)``.

    Rows pair ``x_i`` with a context draw ``a_i ~ P+(. | x_i)``; both sides are centred over the
    batch.
    Under ``Cov[Phi] = I`` the best ``Psi`` is ``T* Phi``, leaving ``1 - tr(Phi^T T T* Phi) / d``,
    which the top-d singular functions ``mu_1..mu_d`` minimise (value ``1 - mean(s_1^2..s_d^2)``).

    Constraints: ``None`` the bare formula; ``"vicreg"`` :func:`vicreg_combine` on ``phi``;
    ``"whiten"`` replaces ``Phi~`` by the batch-whitened ``Phi_w = Phi~ W`` (``Cov = I`` exactly)
    and compares it with ``Psi~`` itself when ``Psi`` is a separate, unconstrained encoder (then the
    optimal ``Psi`` is ``T* Phi_w`` and the loss depends on the span of ``Phi`` only); with a shared
    encoder both sides are the same function, so the same map ``W`` is applied to ``Psi~``.

    Args:
        phi: ``(b, d)`` ``Phi(x_i)``.
        psi: ``(b, d)`` ``Psi(a_i)``.
        constraint: ``None``, ``"vicreg"`` or ``"whiten"``.
        shared: ``psi`` comes from the same encoder as ``phi`` (only matters for ``"whiten"``).
        c_std: VICReg variance weight.
        c_cov: VICReg covariance weight.
        eps: relative jitter of the whitening.

    Returns:
        ``(loss, aux)`` with ``aux["svme"]`` the (constrained-side) SVME term, plus ``std_loss`` and
        ``cov_loss`` under ``"vicreg"``.
    """
    where = "svme_loss"
    _check_constraint(constraint, where)
    phi = _emb(phi, "phi", where)
    psi = _emb(psi, "psi", where)
    _same_shape(phi, psi, "phi", "psi", where)
    b, d = phi.shape
    if constraint is not None:
        _min_rows(phi, 2, where, f"constraint={constraint!r} needs a batch covariance")
    if constraint == "whiten":
        w = whiten(phi, eps=eps)
        diff = w.z - (_mm(_centre(psi), w.W) if shared else _centre(psi))
    else:
        diff = _centre(phi) - _centre(psi)
    loss = jnp.sum(diff * diff) / (b * d)
    return _constrained(loss, {"svme": loss}, phi, constraint, c_std, c_cov)


def kise_loss(
    phi: Any,
    gram: Any,
    *,
    constraint: str | None = None,
    c_std: float = 1.0,
    c_cov: float = 1.0,
    eps: float = 1e-6,
) -> tuple[jax.Array, Aux]:
    r"""KISE (kernel access), the centred, numerically stable form of the authors' code.

    .. math::

        L = \frac{1}{b d} \operatorname{tr}\big(B^T (I - G / b) B\big)
          = \frac1d \Big[\frac1b \sum_i |B_i|^2 - \frac{1}{b^2} \sum_{il} G_{il} \langle B_i, B_l
            \rangle\Big], \qquad B = \Phi\tilde{}

    with ``G[i, l] = k_X+(x_i, x_l)`` over the batch (diagonal included). Centring ``Phi`` centres
    the kernel (``B^T G B = Phi^T H G H Phi``), which removes the trivial pair; under ``Cov = I``
    the loss is ``1 - tr(Phi^T T T* Phi) / d``, minimised by ``mu_1..mu_d``.

    Args:
        phi: ``(b, d)`` ``Phi(x_i)``.
        gram: ``(b, b)`` batch Gram (cast to ``phi``'s dtype).
        constraint: ``None``, ``"vicreg"`` (on ``phi``) or ``"whiten"`` (``B`` = whitened ``phi``).
        c_std: VICReg variance weight.
        c_cov: VICReg covariance weight.
        eps: relative jitter of the whitening.

    Returns:
        ``(loss, aux)`` with ``aux["kise"]``, plus ``std_loss`` and ``cov_loss`` under ``"vicreg"``.
    """
    where = "kise_loss"
    _check_constraint(constraint, where)
    phi = _emb(phi, "phi", where)
    b, d = phi.shape
    G = _gram(gram, b, phi.dtype, where)
    if constraint is not None:
        _min_rows(phi, 2, where, f"constraint={constraint!r} needs a batch covariance")
    B = whiten(phi, eps=eps).z if constraint == "whiten" else _centre(phi)
    loss = (jnp.sum(B * B) - jnp.sum(B * _mm(G, B)) / b) / (b * d)
    return _constrained(loss, {"kise": loss}, phi, constraint, c_std, c_cov)


def non_contrastive_loss(
    psi: Any,
    psi2: Any,
    *,
    constraint: str | None = None,
    c_std: float = 1.0,
    c_cov: float = 1.0,
    eps: float = 1e-6,
) -> tuple[jax.Array, Aux]:
    r"""Non-contrastive (Thm 10): ``L = E |Psi(A) - Psi(A+)|^2 / (2 d)`` s.t. ``Cov[Psi] = I``.

    Rows hold two independent context draws ``A, A+`` of the same ``x``. Estimator: ``(1 / (2 b d))
    sum_i |psi_i - psi2_i|^2``. The constraint acts on the pooled ``2b`` samples ``[psi; psi2]``
    (both views have marginal ``P_A``): VICReg on the pooled matrix, or one whitening map from the
    pooled covariance applied to the difference. Under ``Cov = I`` the loss is ``1 - tr(Psi^T T* T
    Psi) / d``, minimised by the right singular functions ``nu_1..nu_d`` (then ``T Psi`` learns the
    contexture). The ``1/2`` and ``1/d`` make it read like SVME's loss, so the VICReg weights mean
    the same.

    Args:
        psi: ``(b, d)`` ``Psi(a_i)``.
        psi2: ``(b, d)`` ``Psi(a'_i)``.
        constraint: ``None``, ``"vicreg"`` or ``"whiten"``.
        c_std: VICReg variance weight.
        c_cov: VICReg covariance weight.
        eps: relative jitter of the whitening.

    Returns:
        ``(loss, aux)`` with ``aux["non_contrastive"]``, plus ``std_loss``, ``cov_loss`` (VICReg).
    """
    where = "non_contrastive_loss"
    _check_constraint(constraint, where)
    psi = _emb(psi, "psi", where)
    psi2 = _emb(psi2, "psi2", where)
    _same_shape(psi, psi2, "psi", "psi2", where)
    b, d = psi.shape
    pooled = jnp.concatenate([psi, psi2], axis=0)
    diff = psi - psi2
    if constraint == "whiten":
        diff = _mm(diff, whiten(pooled, eps=eps).W)
    loss = jnp.sum(diff * diff) / (2 * b * d)
    return _constrained(loss, {"non_contrastive": loss}, pooled, constraint, c_std, c_cov)


def laplacian_loss(
    phi_u: Any,
    phi_v: Any,
    *,
    constraint: str | None = None,
    c_std: float = 1.0,
    c_cov: float = 1.0,
    eps: float = 1e-6,
) -> tuple[jax.Array, Aux]:
    r"""Laplacian eigenmaps (Thm 12): ``E_{(u,v)~w} |Phi(u) - Phi(v)|^2 / (2 d)``, ``Cov[Phi] = I``.

    Rows are edges ``(u, v)`` drawn with probability proportional to ``w(u, v)`` (equivalently
    ``u ~ P_X`` with ``P_X(u) = deg(u) / sum deg`` and ``v ~ P+(. | u)``); ``phi_u`` and ``phi_v``
    are the same encoder at both ends. The constraint acts on ``phi_u`` (``u`` has marginal
    ``P_X``); ``"whiten"`` applies its whitening map to the difference. Under ``Cov = I`` the loss
    is ``1 - mean(lambda_1..lambda_d)`` for the eigenvalues of ``D^-1/2 W D^-1/2`` whose
    eigenfunctions ``Phi`` spans: minimised by the top-d (algebraically largest) ones, which are the
    top singular functions when ``W`` is positive semi-definite.

    Args:
        phi_u: ``(b, d)`` ``Phi(u_i)``.
        phi_v: ``(b, d)`` ``Phi(v_i)``.
        constraint: ``None``, ``"vicreg"`` or ``"whiten"``.
        c_std: VICReg variance weight.
        c_cov: VICReg covariance weight.
        eps: relative jitter of the whitening.

    Returns:
        ``(loss, aux)`` with ``aux["laplacian"]``, plus ``std_loss``, ``cov_loss`` under VICReg.
    """
    where = "laplacian_loss"
    _check_constraint(constraint, where)
    phi_u = _emb(phi_u, "phi_u", where)
    phi_v = _emb(phi_v, "phi_v", where)
    _same_shape(phi_u, phi_v, "phi_u", "phi_v", where)
    b, d = phi_u.shape
    if constraint is not None:
        _min_rows(phi_u, 2, where, f"constraint={constraint!r} needs a batch covariance")
    diff = phi_u - phi_v
    if constraint == "whiten":
        diff = _mm(diff, whiten(phi_u, eps=eps).W)
    loss = jnp.sum(diff * diff) / (2 * b * d)
    return _constrained(loss, {"laplacian": loss}, phi_u, constraint, c_std, c_cov)


# ----------------------------------------------------------------------------------------------
# spectral contrastive, balanced supervised


def spectral_contrastive_loss(psi: Any, psi2: Any) -> tuple[jax.Array, Aux]:
    r"""Spectral contrastive loss (HaoChen et al.; Thm 10), unconstrained.

    .. math::

        L = -\mathbb E\langle \Psi\tilde{}(A), \Psi\tilde{}(A^+)\rangle
            + \tfrac12 \mathbb E\langle \Psi\tilde{}(A), \Psi\tilde{}(A^-)\rangle^2

    with ``A, A+`` two draws from the same ``x`` and ``A-`` a draw from an independent ``x``.
    Estimator: ``U = psi - mean``, ``V = psi2 - mean`` with the pooled mean of both views (each has
    marginal ``P_A``); the positive term is ``-(1/b) sum_i <U_i, V_i>``, the negative term the
    off-diagonal U-statistic ``1 / (2 b (b - 1)) sum_{i != l} <U_i, V_l>^2`` (row ``l != i`` comes
    from an independent input), computed as ``(sum((U^T U) * (V^T V)) - sum_i <U_i, V_i>^2)`` in
    ``O(b d^2)`` without a ``b x b`` matrix. The population minimiser is ``Psi = [s_1 nu_1, ..,
    s_d nu_d]`` up to a rotation (``Cov[Psi]`` has the eigenvalues ``s_1^2..s_d^2``).

    Args:
        psi: ``(b, d)`` ``Psi(a_i)``, ``b >= 2``.
        psi2: ``(b, d)`` ``Psi(a'_i)``.

    Returns:
        ``(loss, aux)``: ``aux["spectral_contrastive"]``, the two terms ``"positive"`` and
        ``"negative"``, and ``aux["s"] = sqrt(E psi_l~^2)`` per column (pooled views). The objective
        is rotation invariant, so these are the singular values only when the columns are aligned
        with ``nu_l``; the eigenvalues of ``Cov[Psi]`` are the rotation-free estimate of ``s^2``.
    """
    where = "spectral_contrastive_loss"
    psi = _emb(psi, "psi", where)
    psi2 = _emb(psi2, "psi2", where)
    _same_shape(psi, psi2, "psi", "psi2", where)
    _min_rows(psi, 2, where, "negatives come from the other rows of the batch")
    b, _ = psi.shape
    mean = 0.5 * (jnp.mean(psi, axis=0) + jnp.mean(psi2, axis=0))
    U = psi - mean
    V = psi2 - mean
    diag = jnp.sum(U * V, axis=1)
    positive = -jnp.mean(diag)
    allpairs = jnp.sum(_mm(U.T, U) * _mm(V.T, V))
    negative = 0.5 * (allpairs - jnp.sum(diag * diag)) / (b * (b - 1))
    loss = positive + negative
    s = jnp.sqrt(0.5 * (jnp.mean(U * U, axis=0) + jnp.mean(V * V, axis=0)))
    aux = {"spectral_contrastive": loss, "positive": positive, "negative": negative, "s": s}
    return loss, aux


def supervised_loss(
    phi: Any,
    a: Any,
    p_a: Any,
    *,
    num_classes: int | None = None,
    eps: float = 1e-6,
) -> tuple[jax.Array, Aux]:
    r"""Balanced supervised risk (Thm 7) with the linear head solved in closed form on the batch.

    .. math::

        L(\Phi) = \min_{W, c}\ \mathbb E\,\big|W \Phi(X) + c - e_A / \sqrt{P_A(A)}\big|^2

    The target is the one-hot class scaled by ``P_A(A)^{-1/2}``: then ``E[target | x]`` has the dual
    kernel ``k_X+`` as its Gram, and the risk is ``E|Y~|^2 - sum_{l <= d} s_l^2`` at best, attained
    exactly when ``Phi`` spans ``mu_1..mu_d`` (REFERENCE.md writes the weight as ``1 /
    sqrt(P_A(A))`` on the squared error; weighting the error instead of the target does not give
    the contexture for soft labels, checked numerically). The head is least squares on the batch:
    with ``Phi_w`` the batch-whitened ``phi`` (whose jitter ``eps`` is a tiny ridge; Cholesky, so
    the gradient stays finite), ``L = (|Y~|^2 - |Phi_w^T Y~|^2 / b) / b``. Differentiable; the loss
    depends on the span of ``Phi`` only.

    With ``num_classes`` the targets are materialised as ``(b, C)`` one-hots; without it the same
    value comes from the batch label Gram ``Y Y^T = 1[a_i = a_l] / sqrt(p_i p_l)`` (``O(b^2)``, no
    static class count needed).

    Args:
        phi: ``(b, d)`` ``Phi(x_i)``, ``b >= 2``.
        a: ``(b,)`` integer class of each sample.
        p_a: ``(b,)`` ``P_A(a_i) > 0``.
        num_classes: number of classes ``C`` (static), or ``None``.
        eps: relative ridge (whitening jitter).

    Returns:
        ``(loss, {"supervised": loss})``.
    """
    where = "supervised_loss"
    phi = _emb(phi, "phi", where)
    _min_rows(phi, 2, where, "the head's least squares needs a batch covariance")
    b, _ = phi.shape
    if a is None or p_a is None:
        raise ValueError(f"{where}: needs the class indices a and their probabilities p_a")
    a = jnp.asarray(a)
    p_a = jnp.asarray(p_a)
    if a.shape != (b,) or p_a.shape != (b,):
        raise ValueError(
            f"{where}: a and p_a must have shape ({b},) to match phi, got {tuple(a.shape)} and "
            f"{tuple(p_a.shape)}"
        )
    if not jnp.issubdtype(a.dtype, jnp.integer):
        raise ValueError(f"{where}: a must hold integer class indices, got dtype {a.dtype}")
    if not isinstance(p_a, jax.core.Tracer) and not bool(np.all(np.asarray(p_a) > 0)):
        raise ValueError(f"{where}: p_a must be > 0 (the marginal probability of each class)")
    r = jax.lax.rsqrt(p_a.astype(phi.dtype))
    Bw = whiten(phi, eps=eps).z
    if num_classes is not None:
        Y = jax.nn.one_hot(a, int(num_classes), dtype=phi.dtype) * r[:, None]
        Yc = _centre(Y)
        proj = _mm(Bw.T, Yc)
        loss = (jnp.sum(Yc * Yc) - jnp.sum(proj * proj) / b) / b
    else:
        K = (a[:, None] == a[None, :]).astype(phi.dtype) * (r[:, None] * r[None, :])
        tr_centred = jnp.trace(K) - jnp.sum(K) / b
        loss = (tr_centred - jnp.sum(Bw * _mm(K, Bw)) / b) / b
    return loss, {"supervised": loss}


# ----------------------------------------------------------------------------------------------
# low-rank (NeuralSVD) objectives


def _step_weights(weights: Any, d: int, dtype: Any, where: str) -> jax.Array:
    if weights is None:
        return jnp.full((d,), 1.0 / d, dtype)
    w = jnp.asarray(weights, dtype)
    if w.shape != (d,):
        raise ValueError(
            f"{where}: weights must have shape ({d},), one per nested prefix, got {tuple(w.shape)}"
        )
    if not isinstance(w, jax.core.Tracer) and not bool(np.all(np.asarray(w) > 0)):
        raise ValueError(f"{where}: weights must be positive, got {np.asarray(w)}")
    return w


def _halves(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Even and odd rows: a split that stays local to each shard of a batch-sharded array."""
    h = x.shape[0] // 2
    x2 = x.reshape(h, 2, *x.shape[1:])
    return x2[:, 0], x2[:, 1]


def _nested(cdiag, P, Psl, nesting, alpha):
    r"""Assemble ``sum_l alpha_l L_{1:l}`` (or the plain low-rank loss) from its terms.

    ``L_{1:l} = -2 sum_{i<=l} cdiag_i + sum_{i,j<=l} P_ij``; ``sum_l alpha_l L_{1:l}`` weights
    ``cdiag_i`` by ``m_i = sum_{l>=i} alpha_l`` and ``P_ij`` by ``m_max(i,j)``. Sequential nesting
    keeps that value but lets column ``l`` receive only ``alpha_l dL_{1:l}/df_l``: its live part
    is ``sum_l alpha_l (-2 cdiag_l + P_ll + 2 sum_{i<l} Psl_il)`` where ``Psl`` is built with the
    earlier columns behind ``stop_gradient``.
    """
    if nesting is None:
        return -2.0 * jnp.sum(cdiag) + jnp.sum(P)
    d = cdiag.shape[0]
    m = jnp.cumsum(alpha[::-1])[::-1]
    idx = np.arange(d)
    mmax = m[np.maximum.outer(idx, idx)]
    value = -2.0 * jnp.sum(m * cdiag) + jnp.sum(mmax * P)
    if nesting == "joint":
        return value
    upper = jnp.asarray(np.triu(np.ones((d, d)), 1), P.dtype)
    live = (
        -2.0 * jnp.sum(alpha * cdiag)
        + jnp.sum(alpha * jnp.diagonal(P))
        + 2.0 * jnp.sum(upper * Psl * alpha[None, :])
    )
    return live + jax.lax.stop_gradient(value - live)


def _check_nesting(nesting: Any, weights: Any, where: str) -> None:
    if nesting not in (None, "joint", "sequential"):
        raise ValueError(
            f"{where}: nesting must be None, 'joint' or 'sequential', got {nesting!r}"
        )
    if nesting is None and weights is not None:
        raise ValueError(f"{where}: weights apply to nested objectives only (nesting=None)")


def _sample_weight(w: Any, b: int, dtype: Any, where: str) -> jax.Array:
    w = jnp.asarray(w)
    if w.shape != (b,):
        raise ValueError(
            f"{where}: sample_weight must have shape ({b},), one per row, got {tuple(w.shape)}"
        )
    if not isinstance(w, jax.core.Tracer) and not bool(np.all(np.asarray(w) > 0)):
        raise ValueError(f"{where}: sample_weight must be positive")
    return jax.lax.stop_gradient(w.astype(dtype))


def _mean(x: jax.Array, w: jax.Array | None) -> jax.Array:
    """Batch mean over the rows; with weights the self-normalised ``sum_i w_i x_i / sum_i w_i``."""
    if w is None:
        return jnp.mean(x, axis=0)
    return jnp.sum(w[:, None] * x, axis=0) / jnp.sum(w)


def _moment(a: jax.Array, b: jax.Array, w: jax.Array | None) -> jax.Array:
    """``mean_i a_i b_i^T`` over the rows; weighted: ``sum_i w_i a_i b_i^T / sum_i w_i``."""
    if w is None:
        return _mm(a.T, b) / a.shape[0]
    return _mm((a * w[:, None]).T, b) / jnp.sum(w)


def lowrank_loss(
    f: Any,
    g: Any,
    *,
    nesting: str | None = None,
    weights: Any = None,
    sample_weight: Any = None,
) -> tuple[jax.Array, Aux]:
    r"""Low-rank approximation objective of NeuralSVD for pair access, plain or nested.

    For ``f = Phi`` on ``x`` and ``g = Psi`` on ``a`` (rows: pairs ``(x_i, a_i) ~ P+``), both
    centred:

    .. math::

        L_{1:k} = -2 \sum_{l \le k} \mathbb E[f_l g_l]
                  + \sum_{l, j \le k} \mathbb E[f_l f_j]\, \mathbb E[g_l g_j]

    which is ``|T - 1 - sum_l f_l (x) g_l|_HS^2`` up to a constant: minimised by ``f_l = sqrt(s_l)
    mu_l``, ``g_l = sqrt(s_l) nu_l`` (``l = 1..d``, up to a joint rotation), value ``-sum s_l^2``.

    Estimator: centring by the batch means; ``E[f_l g_l]`` is the full-batch mean of ``f_l g_l``;
    each product of moments comes from the two independent halves (even rows, odd rows) and is
    averaged over the two orderings, ``(Mf1 * Mg2 + Mf2 * Mg1) / 2`` with ``Mf1 = F1^T F1 / h``: a
    product of moments from one batch is biased by their covariance, a non-multiplicative ``O(1/b)``
    term that moves the minimiser; what centring with the batch mean leaves is a common
    ``(1 - 1/b)`` shrinkage that rescales the optimum, not its directions (and cancels in ``s``).

    Nesting (NeuralSVD): ``"joint"`` minimises ``sum_k alpha_k L_{1:k}`` (step weights ``alpha``,
    default uniform ``1/d``; equivalently ``E[f_l g_l]`` weighted by the decreasing reverse
    cumulative sums ``m_l`` and ``E[f_l f_j] E[g_l g_j]`` by ``m_max(l, j)``); ``"sequential"`` has
    the same value, but the gradient of column ``k`` is ``alpha_k dL_{1:k}/d(f_k, g_k)`` with the
    earlier columns held fixed (``stop_gradient``), so no column's gradient flows into an earlier
    one. Both make the columns come out ordered, ``f_l = sqrt(s_l) mu_l`` each.

    Importance weights (``sample_weight``, e.g. ``fit(..., importance=...)``): when the pairs were
    drawn with ``x_i`` from a proposal ``q`` instead of ``P_X`` (and ``a_i ~ P+(. | x_i)`` as
    usual), ``w_i = p_X(x_i) / q(x_i)`` (any constant factor) makes every expectation above a
    self-normalised weighted mean, ``sum_i w_i v_i / sum_i w_i`` (centring, ``E[f_l g_l]``, and each
    half-batch moment within its own half), so the loss and ``s`` target ``P_X`` again. The point
    is variance: a high-order singular function puts most of its mass where ``P_X`` has few samples
    (``He_5 / sqrt(120)`` under ``N(0, 1)``: 30% of its squared norm beyond ``|x| = 4``, fourth
    moment 4,653), and a wider proposal samples that region often while the bounded weights keep
    the estimates unbiased (the relative batch noise of ``E[h_5(x) h_5(a)]`` at ``b = 2048``,
    ``rho = 0.8``: 2.0 under ``N(0, 1)``, 0.09 under ``N(0, 4)`` with the weights).

    Args:
        f: ``(b, d)`` ``Phi(x_i)``; ``b`` even.
        g: ``(b, d)`` ``Psi(a_i)``.
        nesting: ``None``, ``"joint"`` or ``"sequential"``.
        weights: ``(d,)`` positive step weights ``alpha`` of the nested prefixes (nested only).
        sample_weight: ``(b,)`` positive importance weights of the rows (None: unweighted; no
            gradient flows through them).

    Returns:
        ``(loss, aux)``: ``aux["lowrank"]`` the loss and ``aux["s"]`` the per-column correlation
        ``E[f_l~ g_l~] / sqrt(E f_l~^2 E g_l~^2)`` over the batch. It equals ``s_l = <mu_l, T
        nu_l>`` as soon as ``f_l`` and ``g_l`` point along ``mu_l`` and ``nu_l``, whatever their
        scales (``E[f_l g_l]`` alone is ``s_l^2`` at the optimum and scale dependent before it); at
        the optimum it coincides with ``sqrt(E f_l^2 E g_l^2)``, but its batch noise is lower (a
        ratio in which the noisy second moment of ``g`` partly cancels: measured standard deviation
        0.03 against 0.056 on the top column of the test problem at ``b = 256``).
    """
    where = "lowrank_loss"
    _check_nesting(nesting, weights, where)
    f = _emb(f, "f", where)
    g = _emb(g, "g", where)
    _same_shape(f, g, "f", "g", where)
    _even_rows(f, where)
    b, d = f.shape
    alpha = _step_weights(weights, d, f.dtype, where) if nesting else None
    w = None if sample_weight is None else _sample_weight(sample_weight, b, f.dtype, where)
    w1, w2 = (None, None) if w is None else _halves(w)
    fc, gc = f - _mean(f, w), g - _mean(g, w)
    cdiag = _mean(fc * gc, w)
    f1, f2 = _halves(fc)
    g1, g2 = _halves(gc)
    P = 0.5 * (
        _moment(f1, f1, w1) * _moment(g2, g2, w2) + _moment(f2, f2, w2) * _moment(g1, g1, w1)
    )
    Psl = None
    if nesting == "sequential":
        sg = jax.lax.stop_gradient
        Psl = 0.5 * (
            _moment(sg(f1), f1, w1) * _moment(sg(g2), g2, w2)
            + _moment(sg(f2), f2, w2) * _moment(sg(g1), g1, w1)
        )
    loss = _nested(cdiag, P, Psl, nesting, alpha)
    norms = _mean(fc * fc, w) * _mean(gc * gc, w)
    s = cdiag * jax.lax.rsqrt(jnp.maximum(norms, jnp.finfo(f.dtype).tiny))
    return loss, {"lowrank": loss, "s": s}


def lowrank_kernel_loss(
    f: Any, gram: Any, *, nesting: str | None = None, weights: Any = None
) -> tuple[jax.Array, Aux]:
    r"""Low-rank objective with kernel access: ``-2 tr(F^T G F) / b^2 + |F^T F / b|_F^2``, unbiased.

    With ``F = Phi~`` (centred, so the kernel is centred and the trivial pair excluded) and the dual
    kernel's batch Gram ``G``, the population form ``-2 sum_l <f_l, K f_l> + sum_{lj} <f_l, f_j>^2``
    is minimised by ``f_l = s_l mu_l`` (the eigenvalues of ``K = T T*`` are ``s_l^2``), value
    ``-sum s_l^4``. Estimator from the two independent halves (even rows ``F1``, odd rows ``F2``):
    the first term uses the cross-half Gram blocks, ``(tr(F1^T G12 F2) + tr(F2^T G21 F1)) / (2
    h^2)``, which pairs only independent inputs; the second is ``sum((F1^T F1 / h) * (F2^T F2 /
    h))``. Nesting as in :func:`lowrank_loss`.

    Args:
        f: ``(b, d)`` ``Phi(x_i)``; ``b`` even.
        gram: ``(b, b)`` batch Gram ``G[i, l] = k_X+(x_i, x_l)`` (cast to ``f``'s dtype).
        nesting: ``None``, ``"joint"`` or ``"sequential"``.
        weights: ``(d,)`` positive step weights of the nested prefixes (nested only).

    Returns:
        ``(loss, aux)``: ``aux["lowrank"]`` and ``aux["s"] = sqrt(E f_l~^2)`` per column (``= s_l``
        at the optimum).
    """
    where = "lowrank_kernel_loss"
    _check_nesting(nesting, weights, where)
    f = _emb(f, "f", where)
    b, d = f.shape
    G = _gram(gram, b, f.dtype, where)
    _even_rows(f, where)
    h = b // 2
    alpha = _step_weights(weights, d, f.dtype, where) if nesting else None
    fc = _centre(f)
    f1, f2 = _halves(fc)
    G4 = G.reshape(h, 2, h, 2)
    G12, G21 = G4[:, 0, :, 1], G4[:, 1, :, 0]
    cdiag = 0.5 * (jnp.sum(f1 * _mm(G12, f2), axis=0) + jnp.sum(f2 * _mm(G21, f1), axis=0)) / h**2
    M1, M2 = _mm(f1.T, f1) / h, _mm(f2.T, f2) / h
    P = M1 * M2
    Psl = None
    if nesting == "sequential":
        sg = jax.lax.stop_gradient
        Psl = (_mm(sg(f1).T, f1) / h) * (_mm(sg(f2).T, f2) / h)
    loss = _nested(cdiag, P, Psl, nesting, alpha)
    s = jnp.sqrt(jnp.mean(fc * fc, axis=0))
    return loss, {"lowrank": loss, "s": s}


# ----------------------------------------------------------------------------------------------
# registry


def _need(batch: Batch, field: str, name: str, why: str) -> Any:
    if not isinstance(batch, Batch):
        raise TypeError(f"objective {name!r}: expected a Batch, got {type(batch).__name__}")
    x = getattr(batch, field)
    if x is None:
        raise ValueError(f"objective {name!r}: batch.{field} is None; {why}")
    return x


def _fn_svme(batch, *, name, shared, **kw):
    phi = _need(batch, "phi", name, "Phi(x) is required")
    psi = _need(
        batch, "psi", name,
        "SVME needs Psi(a_i) on a context draw a_i ~ P+(.|x_i) (data='pairs')",
    )
    return svme_loss(phi, psi, shared=shared, **kw)


def _fn_kise(batch, *, name, **kw):
    phi = _need(batch, "phi", name, "Phi(x) is required")
    gram = _need(batch, "gram", name, "KISE needs the (b, b) dual-kernel Gram (data='gram')")
    return kise_loss(phi, gram, **kw)


def _views(batch, name):
    why = "this objective needs two context draws per input, psi and psi2 (data='views')"
    return _need(batch, "psi", name, why), _need(batch, "psi2", name, why)


def _fn_spectral(batch, *, name):
    return spectral_contrastive_loss(*_views(batch, name))


def _fn_noncontrastive(batch, *, name, **kw):
    return non_contrastive_loss(*_views(batch, name), **kw)


def _fn_supervised(batch, *, name, **kw):
    phi = _need(batch, "phi", name, "Phi(x) is required")
    a = _need(batch, "a", name, "the supervised objective needs the class indices (data='labels')")
    p_a = _need(batch, "p_a", name, "the supervised objective needs p_a = P_A(a_i)")
    return supervised_loss(phi, a, p_a, **kw)


def _fn_laplacian(batch, *, name, **kw):
    phi = _need(batch, "phi", name, "Phi(u) is required")
    psi = _need(batch, "psi", name, "Laplacian eigenmaps need Phi(v) at the edge's other end")
    return laplacian_loss(phi, psi, **kw)


def _fn_lowrank(batch, *, name, **kw):
    phi = _need(batch, "phi", name, "Phi(x) is required")
    psi = _need(batch, "psi", name, "the low-rank objective needs Psi(a_i) (data='pairs')")
    return lowrank_loss(phi, psi, sample_weight=batch.weight, **kw)


def _fn_lowrank_kernel(batch, *, name, **kw):
    phi = _need(batch, "phi", name, "Phi(x) is required")
    gram = _need(batch, "gram", name, "the kernel low-rank objective needs the batch Gram")
    return lowrank_kernel_loss(phi, gram, **kw)


_CONSTRAINED = {"constraint": "whiten", "c_std": 1.0, "c_cov": 1.0, "eps": 1e-6}

# name -> (fn builder, data, psi, even_batch, fixed keyword arguments, user options and defaults)
_REGISTRY: dict[str, tuple[Callable, str, str, bool, dict, dict]] = {
    "svme": (_fn_svme, "pairs", "separate", False, {"shared": False}, _CONSTRAINED),
    "svme_shared": (_fn_svme, "pairs", "shared", False, {"shared": True}, _CONSTRAINED),
    "kise": (_fn_kise, "gram", "none", False, {}, _CONSTRAINED),
    "spectral_contrastive": (_fn_spectral, "views", "shared", False, {}, {}),
    "non_contrastive": (_fn_noncontrastive, "views", "shared", False, {}, _CONSTRAINED),
    "supervised": (_fn_supervised, "labels", "none", False, {}, {"num_classes": None, "eps": 1e-6}),
    "laplacian": (_fn_laplacian, "pairs", "shared", False, {}, _CONSTRAINED),
    "lowrank": (_fn_lowrank, "pairs", "separate", True, {"nesting": None}, {}),
    "nested_joint": (_fn_lowrank, "pairs", "separate", True, {"nesting": "joint"},
                     {"weights": None}),
    "nested_sequential": (_fn_lowrank, "pairs", "separate", True, {"nesting": "sequential"},
                          {"weights": None}),
    "lowrank_kernel": (_fn_lowrank_kernel, "gram", "none", True, {"nesting": None}, {}),
    "nested_joint_kernel": (_fn_lowrank_kernel, "gram", "none", True, {"nesting": "joint"},
                            {"weights": None}),
    "nested_sequential_kernel": (_fn_lowrank_kernel, "gram", "none", True,
                                 {"nesting": "sequential"}, {"weights": None}),
}

#: Registered objective names, for :func:`get`.
NAMES: tuple[str, ...] = tuple(_REGISTRY)

# the registered objectives that accept importance weights (Batch.weight)
_WEIGHTED = frozenset({"lowrank", "nested_joint", "nested_sequential"})


def _freeze(v: Any) -> Any:
    """Hashable form of an option value (weights become a tuple of floats)."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return tuple(float(x) for x in np.asarray(v, dtype=np.float64).ravel())


def get(name_or_objective: str | Objective | Callable, **options: Any) -> Objective:
    """Look up an objective by name with options; pass an Objective through; wrap a callable.

    Registered names (:data:`NAMES`) and their options (defaults in brackets):

    - ``"svme"`` (pairs, separate Psi), ``"svme_shared"`` (pairs, shared), ``"kise"`` (gram),
      ``"non_contrastive"`` (views, shared), ``"laplacian"`` (pairs = edges, shared):
      ``constraint`` [``"whiten"``] | ``"vicreg"`` | ``None``, ``c_std`` [1.0], ``c_cov`` [1.0],
      ``eps`` [1e-6] (whitening jitter).
    - ``"spectral_contrastive"`` (views, shared): no options.
    - ``"supervised"`` (labels): ``num_classes`` [None: label-Gram form], ``eps`` [1e-6] (ridge).
    - ``"lowrank"``, ``"nested_joint"``, ``"nested_sequential"`` (pairs, separate) and
      ``"lowrank_kernel"``, ``"nested_joint_kernel"``, ``"nested_sequential_kernel"`` (gram): even
      batches; the nested ones take ``weights`` [None: uniform ``1/d`` step weights]. The
      pair forms (``"lowrank"``, ``"nested_joint"``, ``"nested_sequential"``) are ``weighted``:
      they accept importance weights (``fit(..., importance=...)``).

    Args:
        name_or_objective: a registered name, an :class:`Objective`, or a callable
            ``fn(batch) -> (loss, aux)``.
        **options: options of the registered objective; for a callable, ``data`` [``"pairs"``],
            ``psi`` [``"separate"``], ``even_batch`` [False], ``min_batch`` [2] and ``weighted``
            [False: it ignores ``batch.weight``] describe it.

    Returns:
        The :class:`Objective`.

    Raises:
        ValueError: unknown name or option, bad option value, or options given with an Objective.
        TypeError: anything else that is not a name, an Objective or a callable.
    """
    if isinstance(name_or_objective, Objective):
        if options:
            raise ValueError(
                f"get: options {sorted(options)} cannot be applied to an existing Objective "
                f"({name_or_objective.name!r}); pass a registered name instead"
            )
        return name_or_objective
    if isinstance(name_or_objective, str):
        name = name_or_objective
        if name not in _REGISTRY:
            raise ValueError(f"unknown objective {name!r}; known objectives: {', '.join(NAMES)}")
        build, data, psi, even, fixed, defaults = _REGISTRY[name]
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            allowed = ", ".join(sorted(defaults)) or "none"
            raise ValueError(
                f"objective {name!r}: unknown option(s) {unknown}; allowed options: {allowed}"
            )
        opts = {**defaults, **options}
        if "constraint" in opts:
            _check_constraint(opts["constraint"], f"objective {name!r}")
        if opts.get("num_classes") is not None and int(opts["num_classes"]) < 1:
            raise ValueError(f"objective {name!r}: num_classes must be >= 1")
        if opts.get("weights") is not None:
            w = np.asarray(opts["weights"], dtype=np.float64)
            if w.ndim != 1 or not np.all(w > 0):
                raise ValueError(
                    f"objective {name!r}: weights must be a 1-D sequence of positive step weights"
                )
        fn = functools.partial(build, name=name, **fixed, **opts)
        frozen = tuple(sorted((k, _freeze(v)) for k, v in opts.items()))
        return Objective(
            name=name,
            fn=fn,
            data=data,
            psi=psi,
            even_batch=even,
            options=frozen,
            weighted=name in _WEIGHTED,
        )
    if callable(name_or_objective):
        allowed = {"data", "psi", "even_batch", "min_batch", "weighted"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(
                f"get: unknown option(s) {unknown} for a callable objective; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
        return Objective(
            name=getattr(name_or_objective, "__name__", "custom"),
            fn=name_or_objective,
            data=options.get("data", "pairs"),
            psi=options.get("psi", "separate"),
            even_batch=bool(options.get("even_batch", False)),
            min_batch=int(options.get("min_batch", 2)),
            weighted=bool(options.get("weighted", False)),
        )
    raise TypeError(
        "get: expected a registered name, an Objective or a callable fn(batch) -> (loss, aux), got "
        f"{type(name_or_objective).__name__}"
    )

