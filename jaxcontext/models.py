r"""Flax NNX encoders sized by width and depth, for learning contextures and for scaling studies.

* :class:`MLP` -- ``depth`` hidden layers of ``width`` units, optional skip connections between the
  hidden layers (the authors' Tanh MLP with skips, REFERENCE.md section 6).
* :class:`ResidualMLP` -- pre-norm residual blocks (LayerNorm, two dense layers) on a ``width``-wide
  stream: the usual choice when depth grows.
* :class:`CNN` -- a small convolutional encoder for image-shaped inputs (scikit-learn's 8x8 digits);
  takes ``(n, H, W)``, ``(n, H, W, C)`` or flattened ``(n, H*W*C)`` inputs.
* :class:`Embedding` -- a lookup table for integer inputs: graph node ids, class indices (the
  ``Psi`` side of a label context).
* :func:`num_params` -- the number of trainable parameters; :func:`family` -- a grid of model sizes
  (width x depth) for scaling laws; :func:`fresh_like` -- a new, independently initialised module
  of the same architecture (used for ``Psi`` when :func:`jaxcontext.fit` makes one).

Every model maps a batch ``(n, ...)`` to ``(n, out_dim)`` embeddings, takes ``rngs: nnx.Rngs`` for
its initialisation, and keeps the arguments it was built with in ``config`` (so
:func:`fresh_like` can rebuild it). ``param_dtype`` (float32 by default) sets the parameters'
dtype; set it to ``jnp.float64`` (with x64 on) for float64 training.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxcontext import models
    >>> enc = models.MLP(2, 5, width=64, depth=3, rngs=nnx.Rngs(0))
    >>> enc(jnp.ones((7, 2))).shape, models.num_params(enc)
    ((7, 5), 8837)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "MLP",
    "ResidualMLP",
    "CNN",
    "Embedding",
    "ModelSpec",
    "num_params",
    "family",
    "fresh_like",
]

ACTIVATIONS: dict[str, Callable] = {
    "relu": nnx.relu,
    "tanh": jnp.tanh,
    "gelu": nnx.gelu,
    "silu": nnx.silu,
    "elu": nnx.elu,
}


def _activation(activation: str | Callable) -> Callable:
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation: expected a callable or one of {sorted(ACTIVATIONS)}, got {activation!r}"
        )
    return ACTIVATIONS[activation]


def _positive(value: Any, name: str, *, zero: bool = False) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if int(value) < (0 if zero else 1):
        raise ValueError(f"{name}: must be {'>= 0' if zero else '>= 1'}, got {value}")
    return int(value)


def _check_rngs(rngs: Any) -> nnx.Rngs:
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(
            f"rngs: expected flax.nnx.Rngs (e.g. nnx.Rngs(0)), got {type(rngs).__name__}"
        )
    return rngs


def _check_input(x: jax.Array, in_dim: int, name: str) -> jax.Array:
    if x.ndim != 2 or x.shape[-1] != in_dim:
        raise ValueError(f"{name}: expected inputs of shape (n, {in_dim}), got {tuple(x.shape)}")
    return x


class MLP(nnx.Module):
    """A multilayer perceptron: ``depth`` hidden layers of ``width`` units, then a linear output.

    Args:
        in_dim: input features ``D``.
        out_dim: output dimension ``d``.
        width: hidden units per layer.
        depth: number of hidden layers (``0``: a linear map).
        rngs: ``nnx.Rngs`` for the initialisation.
        activation: a callable or one of ``"relu"`` (default), ``"tanh"``, ``"gelu"``, ``"silu"``,
            ``"elu"``.
        skip: add each hidden layer's input to its output from the second hidden layer on
            (``h <- h + act(W h + b)``), as in the authors' Tanh MLP with skips.
        param_dtype: dtype of the parameters.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        width: int,
        depth: int,
        rngs: nnx.Rngs,
        activation: str | Callable = "relu",
        skip: bool = False,
        param_dtype: Any = jnp.float32,
    ):
        in_dim, out_dim = _positive(in_dim, "in_dim"), _positive(out_dim, "out_dim")
        width, depth = _positive(width, "width"), _positive(depth, "depth", zero=True)
        rngs = _check_rngs(rngs)
        self.config = dict(
            in_dim=in_dim,
            out_dim=out_dim,
            width=width,
            depth=depth,
            activation=activation,
            skip=bool(skip),
            param_dtype=param_dtype,
        )
        self.act = _activation(activation)
        self.skip = bool(skip)
        dims = [in_dim] + [width] * depth
        self.hidden = nnx.List(
            [
                nnx.Linear(dims[i], dims[i + 1], rngs=rngs, param_dtype=param_dtype)
                for i in range(depth)
            ]
        )
        self.out = nnx.Linear(dims[-1], out_dim, rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embed ``(n, in_dim)`` inputs as ``(n, out_dim)``."""
        h = _check_input(jnp.asarray(x), self.config["in_dim"], "x")
        for i, layer in enumerate(self.hidden):
            z = self.act(layer(h))
            h = h + z if (self.skip and i > 0) else z
        return self.out(h)


class ResidualMLP(nnx.Module):
    """A residual MLP: input projection, ``depth`` pre-norm residual blocks, LayerNorm, output.

    Each block computes ``h <- h + W_2 act(W_1 LayerNorm(h))`` with hidden size
    ``expansion * width``.

    Args:
        in_dim: input features.
        out_dim: output dimension.
        width: the residual stream's width.
        depth: number of residual blocks (``>= 1``).
        rngs: ``nnx.Rngs``.
        activation: as for :class:`MLP` (default ``"gelu"``).
        expansion: hidden size of a block relative to ``width``.
        param_dtype: dtype of the parameters.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        width: int,
        depth: int,
        rngs: nnx.Rngs,
        activation: str | Callable = "gelu",
        expansion: int = 2,
        param_dtype: Any = jnp.float32,
    ):
        in_dim, out_dim = _positive(in_dim, "in_dim"), _positive(out_dim, "out_dim")
        width, depth = _positive(width, "width"), _positive(depth, "depth")
        expansion = _positive(expansion, "expansion")
        rngs = _check_rngs(rngs)
        self.config = dict(
            in_dim=in_dim,
            out_dim=out_dim,
            width=width,
            depth=depth,
            activation=activation,
            expansion=expansion,
            param_dtype=param_dtype,
        )
        self.act = _activation(activation)
        self.inp = nnx.Linear(in_dim, width, rngs=rngs, param_dtype=param_dtype)
        hid = expansion * width
        self.norms = nnx.List(
            [nnx.LayerNorm(width, rngs=rngs, param_dtype=param_dtype) for _ in range(depth)]
        )
        self.up = nnx.List(
            [nnx.Linear(width, hid, rngs=rngs, param_dtype=param_dtype) for _ in range(depth)]
        )
        self.down = nnx.List(
            [nnx.Linear(hid, width, rngs=rngs, param_dtype=param_dtype) for _ in range(depth)]
        )
        self.final_norm = nnx.LayerNorm(width, rngs=rngs, param_dtype=param_dtype)
        self.out = nnx.Linear(width, out_dim, rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embed ``(n, in_dim)`` inputs as ``(n, out_dim)``."""
        h = self.inp(_check_input(jnp.asarray(x), self.config["in_dim"], "x"))
        for norm, up, down in zip(self.norms, self.up, self.down, strict=True):
            h = h + down(self.act(up(norm(h))))
        return self.out(self.final_norm(h))


class CNN(nnx.Module):
    """A small convolutional encoder for image-shaped inputs (e.g. 8x8 digits).

    Two 3x3 convolutions (``channels`` then ``2 * channels``, the second with stride 2), a dense
    layer of ``width`` units and a linear output.

    Args:
        image_shape: ``(H, W)`` or ``(H, W, C)`` of one input.
        out_dim: output dimension.
        rngs: ``nnx.Rngs``.
        channels: channels of the first convolution.
        width: units of the dense layer.
        activation: as for :class:`MLP` (default ``"relu"``).
        param_dtype: dtype of the parameters.

    Inputs may be ``(n, H, W)``, ``(n, H, W, C)`` or flattened ``(n, H * W * C)`` (as scikit-learn's
    ``load_digits`` gives them).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        out_dim: int,
        *,
        rngs: nnx.Rngs,
        channels: int = 16,
        width: int = 128,
        activation: str | Callable = "relu",
        param_dtype: Any = jnp.float32,
    ):
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 2:
            shape = shape + (1,)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape: expected (H, W) or (H, W, C), got {tuple(image_shape)}")
        out_dim, channels = _positive(out_dim, "out_dim"), _positive(channels, "channels")
        width = _positive(width, "width")
        rngs = _check_rngs(rngs)
        self.config = dict(
            image_shape=shape,
            out_dim=out_dim,
            channels=channels,
            width=width,
            activation=activation,
            param_dtype=param_dtype,
        )
        self.shape = shape
        self.act = _activation(activation)
        c = shape[2]
        self.conv1 = nnx.Conv(c, channels, (3, 3), rngs=rngs, param_dtype=param_dtype)
        self.conv2 = nnx.Conv(
            channels, 2 * channels, (3, 3), strides=(2, 2), rngs=rngs, param_dtype=param_dtype
        )
        h2, w2 = -(-shape[0] // 2), -(-shape[1] // 2)
        self.dense = nnx.Linear(h2 * w2 * 2 * channels, width, rngs=rngs, param_dtype=param_dtype)
        self.out = nnx.Linear(width, out_dim, rngs=rngs, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embed ``(n, H, W[, C])`` or flattened ``(n, H*W*C)`` images as ``(n, out_dim)``."""
        x = jnp.asarray(x)
        H, W, C = self.shape
        if x.ndim == 2 and x.shape[1] == H * W * C:
            x = x.reshape(x.shape[0], H, W, C)
        elif x.ndim == 3 and x.shape[1:] == (H, W) and C == 1:
            x = x[..., None]
        elif not (x.ndim == 4 and x.shape[1:] == (H, W, C)):
            raise ValueError(
                f"x: expected images of shape (n, {H}, {W}, {C}), (n, {H}, {W}) or "
                f"(n, {H * W * C}),"
                f" got {tuple(x.shape)}"
            )
        h = self.act(self.conv1(x))
        h = self.act(self.conv2(h))
        h = self.act(self.dense(h.reshape(h.shape[0], -1)))
        return self.out(h)


class Embedding(nnx.Module):
    """A lookup table: integer ids ``0..num-1`` (graph nodes, classes) to ``(n, out_dim)`` vectors.

    Args:
        num: number of ids.
        out_dim: output dimension.
        rngs: ``nnx.Rngs``.
        param_dtype: dtype of the table.
    """

    def __init__(self, num: int, out_dim: int, *, rngs: nnx.Rngs, param_dtype: Any = jnp.float32):
        num, out_dim = _positive(num, "num"), _positive(out_dim, "out_dim")
        rngs = _check_rngs(rngs)
        self.config = dict(num=num, out_dim=out_dim, param_dtype=param_dtype)
        self.table = nnx.Embed(
            num,
            out_dim,
            rngs=rngs,
            param_dtype=param_dtype,
            embedding_init=nnx.initializers.normal(1.0),
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Look up ``(n,)`` integer ids; returns ``(n, out_dim)``."""
        ids = jnp.asarray(ids)
        if ids.ndim != 1 or not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(f"ids: expected (n,) integer ids, got {ids.dtype} {tuple(ids.shape)}")
        return self.table(ids)


def num_params(model: nnx.Module) -> int:
    """The number of trainable parameters (``nnx.Param`` entries) of a module."""
    leaves = jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))
    return int(sum(int(np.prod(np.shape(v))) for v in leaves))


def fresh_like(model: nnx.Module, rngs: nnx.Rngs) -> nnx.Module:
    """A new module of the same architecture as ``model``, independently initialised by ``rngs``.

    Works for this module's models (they keep their constructor arguments in ``config``). For
    other modules it falls back to a copy (``nnx.clone``): the same initial parameters, which is
    harmless where the two copies see different inputs (``Phi`` on ``x``, ``Psi`` on ``a``).
    """
    cfg = getattr(model, "config", None)
    if isinstance(model, (MLP, ResidualMLP, CNN, Embedding)) and isinstance(cfg, dict):
        cfg = dict(cfg)
        if isinstance(model, CNN):
            return CNN(cfg.pop("image_shape"), cfg.pop("out_dim"), rngs=rngs, **cfg)
        if isinstance(model, Embedding):
            return Embedding(cfg.pop("num"), cfg.pop("out_dim"), rngs=rngs, **cfg)
        return type(model)(cfg.pop("in_dim"), cfg.pop("out_dim"), rngs=rngs, **cfg)
    return nnx.clone(model)


class ModelSpec(NamedTuple):
    """One member of a model family.

    Attributes:
        name: e.g. ``"mlp-w256-d3"``.
        width, depth: the size.
        params: number of trainable parameters.
        make: ``make(rngs) -> nnx.Module``, a fresh model of this size.
    """

    name: str
    width: int
    depth: int
    params: int
    make: Callable[[nnx.Rngs], nnx.Module]


_KINDS = {"mlp": MLP, "resmlp": ResidualMLP}


def family(
    in_dim: int,
    out_dim: int,
    *,
    widths: Sequence[int],
    depths: Sequence[int],
    kind: str = "mlp",
    **options: Any,
) -> list[ModelSpec]:
    """A grid of encoder sizes (every width x depth) for scaling studies, sorted by parameter count.

    Args:
        in_dim: input dimension.
        out_dim: output dimension.
        widths: hidden widths to combine.
        depths: depths to combine.
        kind: ``"mlp"`` (:class:`MLP`) or ``"resmlp"`` (:class:`ResidualMLP`).
        **options: passed to the model (``activation``, ``skip``, ``param_dtype``, ...).

    Returns:
        ``ModelSpec`` list; ``spec.make(nnx.Rngs(seed))`` builds a model.

    Example:
        >>> from jaxcontext import models
        >>> [s.name for s in models.family(2, 5, widths=[16, 64], depths=[1])]
        ['mlp-w16-d1', 'mlp-w64-d1']
    """
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {sorted(_KINDS)}, got {kind!r}")
    if not len(widths) or not len(depths):
        raise ValueError("widths and depths: need at least one of each")
    cls = _KINDS[kind]
    specs = []
    for w in widths:
        for dp in depths:

            def make(rngs: nnx.Rngs, w: int = int(w), dp: int = int(dp)) -> nnx.Module:
                return cls(in_dim, out_dim, width=w, depth=dp, rngs=rngs, **options)

            count = num_params(nnx.eval_shape(lambda make=make: make(nnx.Rngs(0))))
            specs.append(ModelSpec(f"{kind}-w{int(w)}-d{int(dp)}", int(w), int(dp), count, make))
    return sorted(specs, key=lambda s: (s.params, s.name))
