"""The user's own data: :func:`from_arrays`, :func:`from_csv` and :func:`from_npz`."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validation as V
from ._common import Dataset, _encode_classes, _standardize


def _check_task(task: Any) -> None:
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task: expected None, 'classification' or 'regression', got {task!r}")


def _finish(name, x, y, feature_names, target_name, task, standardize, classes=None) -> Dataset:
    """Validate and assemble a Dataset from features and raw targets (dtype rule: module doc)."""
    x = V.as_float_array(x, "x")
    x_dtype = V.float_dtype(x.dtype, min_single=True)
    x = x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D (samples, features) array, got shape {x.shape}")
    V.check_nonempty(x, "x")
    V.check_finite(x, "x")
    m, d = x.shape
    if feature_names is None:
        feature_names = tuple(f"x{i}" for i in range(d))
    feature_names = tuple(str(f) for f in feature_names)
    if len(feature_names) != d:
        raise ValueError(f"feature_names: expected {d} names, got {len(feature_names)}")
    _check_task(task)
    y_out = None
    if y is not None:
        ya = np.asarray(y)
        if ya.dtype.kind == "c":
            V.check_real(ya, "y")  # complex targets: TypeError (labels may be strings or objects)
        if ya.ndim not in (1, 2) or ya.shape[0] != m:
            raise ValueError(
                f"y: expected {m} targets (shape ({m},) or ({m}, t)) to match x, got shape "
                f"{ya.shape}"
            )
        numeric = np.issubdtype(ya.dtype, np.number) or ya.dtype == bool
        if task is None:
            task = "regression" if numeric and np.issubdtype(ya.dtype, np.floating) else (
                "classification")
        if task == "classification":
            if ya.ndim != 1:
                raise ValueError(f"y: classification needs (m,) labels, got shape {ya.shape}")
            if numeric:
                V.check_finite(ya.astype(np.float64), "y")
            y_out, enc = _encode_classes(ya, "y")
            classes = enc if classes is None else classes
        else:
            if not numeric:
                raise ValueError(f"y: regression needs numeric targets, got dtype {ya.dtype}")
            y64 = ya.astype(np.float64)
            V.check_finite(y64, "y")
            y_out, classes = y64.astype(V.float_dtype(ya.dtype, min_single=True)), None
        target_name = "y" if target_name is None else str(target_name)
    else:
        if task is not None:
            raise ValueError(f"task={task!r} given but there is no target y")
        target_name, classes = None, None
    if standardize:
        x = _standardize(x, feature_names)
    return Dataset(name, x.astype(x_dtype), y_out, feature_names, target_name, task, classes)


def from_arrays(
    x: Any,
    y: Any = None,
    *,
    standardize: bool = False,
    feature_names: Sequence[str] | None = None,
    target_name: str | None = None,
    task: str | None = None,
    name: str = "arrays",
) -> Dataset:
    r"""Wrap user arrays as a :class:`Dataset` (validated).

    Args:
        x: ``(m, D)`` numeric features: 2-D, non-empty, finite.
        y: optional ``(m,)`` targets (``(m, t)`` for several regression targets).
        standardize: zero mean, unit variance feature columns (constant ones set to 0, warned).
        feature_names: ``D`` names (default ``x0, x1, ...``).
        target_name: the target's name (default ``"y"``).
        task: ``"classification"`` or ``"regression"``; default: float targets are regression,
            integer / boolean / string targets classification (mapped to ids ``0..C-1``).
        name: the data set's name.

    Raises:
        ValueError: wrong rank, empty input, NaN/Inf, mismatched lengths, unknown task.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import datasets
        >>> d = datasets.from_arrays(np.ones((4, 2)), np.array(["a", "b", "a", "b"]))
        >>> d.y.tolist(), d.task, d.classes
        ([0, 1, 0, 1], 'classification', ('a', 'b'))
    """
    return _finish(name, x, y, feature_names, target_name, task, standardize)


_MISSING = {"", "na", "nan", "null", "none", "?", "n/a"}


def _parse_column(col: Sequence[str], cname: str, allow_text: bool) -> np.ndarray:
    """Floats (NaN for missing tokens); text columns are returned as strings when allowed."""
    out = np.empty(len(col))
    for r, tok in enumerate(col):
        t = tok.strip()
        if t.lower() in _MISSING:
            out[r] = np.nan
            continue
        try:
            out[r] = float(t)
        except ValueError:
            if allow_text:
                return np.asarray([c.strip() for c in col])
            raise ValueError(
                f"from_csv: column {cname!r} row {r + 1} holds the non-numeric value {t!r}; "
                "features must be numeric (select columns with features=)"
            ) from None
    return out


def _column_index(sel: Any, names: Sequence[str], header: bool, what: str) -> int:
    if isinstance(sel, str):
        if not header:
            raise ValueError(f"{what}: a column name needs header=True; pass an integer index")
        if sel not in names:
            raise ValueError(f"{what}: no column named {sel!r}; columns are {list(names)}")
        return list(names).index(sel)
    if isinstance(sel, bool) or not isinstance(sel, (int, np.integer)):
        raise ValueError(f"{what}: expected a column name or integer index, got {sel!r}")
    k = len(names)
    if not -k <= int(sel) < k:
        raise ValueError(f"{what}: index {sel} out of range for {k} columns")
    return int(sel) % k


def from_csv(
    path: str | os.PathLike,
    target: str | int | None = None,
    *,
    features: Sequence[str | int] | None = None,
    delimiter: str = ",",
    header: bool = True,
    task: str | None = None,
    missing: str = "error",
    standardize: bool = False,
) -> Dataset:
    r"""Load a delimited text file (standard library ``csv`` + numpy; no pandas needed).

    Args:
        path: the file.
        target: the target column (name with ``header=True``, or index; negative counts from
            the end), or None for features only.
        features: the feature columns (default: every column but the target).
        delimiter: field separator.
        header: the first row holds column names (else columns are ``x0, x1, ...``).
        task: ``"classification"`` / ``"regression"``; default: a non-numeric or all-integer
            target column is classification, otherwise regression (pass ``task="regression"``
            for integer-valued regression targets such as counts).
        missing: cells ``""``, ``NA``, ``nan``, ``null``, ``none``, ``?``, ``n/a`` are missing:
            ``"error"`` raises (naming the count and first place), ``"drop"`` drops those rows.
        standardize: zero mean, unit variance feature columns.

    Example:
        >>> import os, pathlib, tempfile
        >>> from jaxcontext import datasets
        >>> p = os.path.join(tempfile.mkdtemp(), "d.csv")
        >>> _ = pathlib.Path(p).write_text("a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n")
        >>> d = datasets.from_csv(p, target="label")
        >>> d.x.tolist(), d.y.tolist(), d.classes
        ([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [0, 1, 0], ('cat', 'dog'))
    """
    if missing not in ("error", "drop"):
        raise ValueError(f"missing: expected 'error' or 'drop', got {missing!r}")
    _check_task(task)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"from_csv: no such file {os.fspath(path)!r}")
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter=delimiter) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"from_csv: {os.fspath(path)!r} is empty")
    if header:
        names = [c.strip() for c in rows[0]]
        rows = rows[1:]
    else:
        names = [f"x{i}" for i in range(len(rows[0]))]
    if not rows:
        raise ValueError(f"from_csv: {os.fspath(path)!r} has a header but no data rows")
    k = len(names)
    bad = [i for i, r in enumerate(rows) if len(r) != k]
    if bad:
        i = bad[0]
        raise ValueError(
            f"from_csv: row {i + 1 + int(header)} has {len(rows[i])} fields, expected {k} "
            f"({len(bad)} such row(s))"
        )
    cols = list(zip(*rows, strict=True))
    t_idx = None if target is None else _column_index(target, names, header, "target")
    if features is None:
        f_idx = [i for i in range(k) if i != t_idx]
    else:
        f_idx = [_column_index(f, names, header, "features") for f in features]
        if t_idx is not None and t_idx in f_idx:
            raise ValueError(f"features: the target column {names[t_idx]!r} is also a feature")
    if not f_idx:
        raise ValueError("from_csv: no feature columns left")
    x = np.stack([_parse_column(cols[i], names[i], False) for i in f_idx], axis=1)
    y = None if t_idx is None else _parse_column(cols[t_idx], names[t_idx], True)
    bad_rows = np.isnan(x).any(axis=1)
    if y is not None and np.issubdtype(y.dtype, np.floating):
        bad_rows |= np.isnan(y)
    elif y is not None:
        bad_rows |= np.isin(np.char.lower(y.astype(str)), list(_MISSING))
    if bad_rows.any():
        if missing == "error":
            r = int(np.flatnonzero(bad_rows)[0])
            raise ValueError(
                f"from_csv: {int(bad_rows.sum())} row(s) have missing values (first: data row "
                f"{r + 1}); pass missing='drop' to drop them"
            )
        x = x[~bad_rows]
        y = None if y is None else y[~bad_rows]
        if x.shape[0] == 0:
            raise ValueError("from_csv: every row has missing values")
    if y is not None and task is None:
        numeric = np.issubdtype(y.dtype, np.floating)
        task = "classification" if (not numeric or np.all(np.mod(y, 1) == 0)) else "regression"
    if y is not None and task == "classification" and np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.int64) if np.all(np.mod(y, 1) == 0) else y
    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return _finish(name, x, y, [names[i] for i in f_idx],
                   None if t_idx is None else names[t_idx], task, standardize)


_DEFAULT_Y = object()


def from_npz(
    path: str | os.PathLike,
    *,
    x_key: str = "x",
    y_key: Any = _DEFAULT_Y,
    feature_names_key: str = "feature_names",
    task: str | None = None,
    standardize: bool = False,
) -> Dataset:
    r"""Load a NumPy ``.npz`` archive (``np.savez``; no pickled objects).

    Args:
        path: the file.
        x_key: array holding the ``(m, D)`` features.
        y_key: array holding the targets (default ``"y"`` when present; None for no target).
        feature_names_key: optional array of ``D`` feature names.
        task: as for :func:`from_arrays`.
        standardize: zero mean, unit variance feature columns.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from jaxcontext import datasets
        >>> p = os.path.join(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(p, x=np.eye(3), y=np.array([0.5, 1.5, 2.5]))
        >>> d = datasets.from_npz(p)
        >>> d.x.shape, d.task
        ((3, 3), 'regression')
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"from_npz: no such file {os.fspath(path)!r}")
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if x_key not in keys:
            raise ValueError(f"from_npz: no array {x_key!r} in the archive; it holds {keys}")
        x = z[x_key]
        if y_key is _DEFAULT_Y:
            y = z["y"] if "y" in keys else None
        elif y_key is None:
            y = None
        elif y_key not in keys:
            raise ValueError(f"from_npz: no array {y_key!r} in the archive; it holds {keys}")
        else:
            y = z[y_key]
        names = z[feature_names_key].tolist() if feature_names_key in keys else None
    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return _finish(name, x, y, names, None if y is None else (
        "y" if y_key in (_DEFAULT_Y, None) else y_key), task, standardize)
