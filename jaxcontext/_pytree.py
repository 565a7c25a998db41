"""Register frozen dataclasses as pytrees whose tree structure names their class.

``jax.tree_util.register_dataclass`` (JAX 0.10.2) gives tree structures that compare equal across
classes with the same fields layout (``tree_structure(RBF(0.3)) == tree_structure(Mehler(0.4))``)
while their hashes differ, so ``jit``'s cache, which hashes then compares, can on a hash-bucket
collision run one class's executable for another: the test suite caught a jitted Mehler kernel
returning Laplacian values. Registering through ``register_pytree_with_keys`` keeps the class in
the node type, and equality then tells classes apart. Leaves are the non-static fields; fields
with ``metadata={"static": True}`` are auxiliary data (hashable), as with ``register_dataclass``.
"""

from __future__ import annotations

import dataclasses

import jax


def register(cls: type) -> type:
    """Register the dataclass ``cls`` as a pytree (static fields via ``metadata``); returns it."""
    fields = dataclasses.fields(cls)
    data = tuple(f.name for f in fields if not f.metadata.get("static", False))
    meta = tuple(f.name for f in fields if f.metadata.get("static", False))
    keys = tuple(jax.tree_util.GetAttrKey(n) for n in data)

    def flatten_with_keys(obj):
        return [(k, getattr(obj, n)) for k, n in zip(keys, data, strict=True)], tuple(
            getattr(obj, n) for n in meta
        )

    def flatten(obj):
        return [getattr(obj, n) for n in data], tuple(getattr(obj, n) for n in meta)

    def unflatten(aux, children):
        obj = object.__new__(cls)  # no __init__ / __post_init__: leaves may be tracers
        for n, v in zip(data, children, strict=True):
            object.__setattr__(obj, n, v)
        for n, v in zip(meta, aux, strict=True):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls
