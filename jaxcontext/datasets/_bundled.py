"""Real data sets shipped inside installed packages (scikit-learn, statsmodels): :func:`load`."""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import numpy as np

from .. import _validation as V
from ._common import Dataset, _encode_classes, _standardize
from ._rdatasets import _RDATASETS_PREFIX, _split_rdataset_name, rdataset


class _Spec(NamedTuple):
    source: str  # "sklearn" or "statsmodels"
    loader: str  # sklearn function or statsmodels module
    target: str  # target column (statsmodels) / target name (sklearn)
    task: str
    drop: tuple = ()  # statsmodels columns not used as features
    note: str = ""


_REGISTRY: dict[str, _Spec] = {
    # scikit-learn's bundled data (sklearn/datasets/data)
    "iris": _Spec("sklearn", "load_iris", "species", "classification", note="3 species"),
    "digits": _Spec("sklearn", "load_digits", "digit", "classification", note="8x8 images"),
    "wine": _Spec("sklearn", "load_wine", "cultivar", "classification", note="3 cultivars"),
    "breast_cancer": _Spec("sklearn", "load_breast_cancer", "diagnosis", "classification",
                           note="0 malignant, 1 benign"),
    "diabetes": _Spec("sklearn", "load_diabetes", "progression", "regression",
                      note="disease progression after one year"),
    # statsmodels' packaged data (statsmodels/datasets/*)
    "fair": _Spec("statsmodels", "fair", "affairs", "regression",
                  note="time spent in extramarital affairs"),
    "randhie": _Spec("statsmodels", "randhie", "mdvis", "regression",
                     note="number of outpatient visits"),
    "anes96": _Spec("statsmodels", "anes96", "PID", "classification", drop=("vote",),
                    note="party identification, 7 classes; 'vote' dropped"),
    "spector": _Spec("statsmodels", "spector", "GRADE", "classification",
                     note="grade improved (0/1)"),
    "star98": _Spec("statsmodels", "star98", "frac_above", "regression", drop=("NABOVE", "NBELOW"),
                    note="NABOVE / (NABOVE + NBELOW): share of students above the median"),
    "statecrime": _Spec("statsmodels", "statecrime", "murder", "regression", drop=("violent",),
                        note="murder rate; 'violent' dropped"),
    "longley": _Spec("statsmodels", "longley", "TOTEMP", "regression", note="total employment"),
    "stackloss": _Spec("statsmodels", "stackloss", "STACKLOSS", "regression"),
    "scotland": _Spec("statsmodels", "scotland", "YES", "regression",
                      note="share voting yes on taxation powers"),
    "ccard": _Spec("statsmodels", "ccard", "AVGEXP", "regression",
                   note="average credit card expenditure"),
    "engel": _Spec("statsmodels", "engel", "foodexp", "regression", note="food expenditure"),
    "cancer": _Spec("statsmodels", "cancer", "cancer", "regression", note="cancer deaths"),
    "copper": _Spec("statsmodels", "copper", "WORLDCONSUMPTION", "regression"),
    "cpunish": _Spec("statsmodels", "cpunish", "EXECUTIONS", "regression"),
    "committee": _Spec("statsmodels", "committee", "BILLS104", "regression"),
}


def available() -> tuple[str, ...]:
    """Names accepted by :func:`load` (scikit-learn's then statsmodels' data sets).

    Example:
        >>> from jaxcontext import datasets
        >>> "iris" in datasets.available() and "fair" in datasets.available()
        True
    """
    return tuple(_REGISTRY)


def _load_raw(name: str, spec: _Spec):
    """Return ``(x float64, y, feature_names, target values as loaded, class names)``."""
    if spec.source == "sklearn":
        try:
            skd = importlib.import_module("sklearn.datasets")
        except ImportError as e:  # pragma: no cover
            raise ImportError(f"load({name!r}) needs scikit-learn: pip install scikit-learn") from e
        bunch = getattr(skd, spec.loader)()
        x = np.asarray(bunch.data, np.float64)
        names = getattr(bunch, "feature_names", None)
        names = tuple(str(f) for f in names) if names is not None else tuple(
            f"x{i}" for i in range(x.shape[1]))
        classes = getattr(bunch, "target_names", None)
        classes = tuple(str(c) for c in classes) if classes is not None else None
        return x, np.asarray(bunch.target), names, classes
    try:
        mod = importlib.import_module(f"statsmodels.datasets.{spec.loader}")
    except ImportError as e:  # pragma: no cover
        raise ImportError(f"load({name!r}) needs statsmodels: pip install statsmodels") from e
    df = mod.load_pandas().data
    if name == "star98":
        y = (df["NABOVE"] / (df["NABOVE"] + df["NBELOW"])).to_numpy(np.float64)
    else:
        y = df[spec.target].to_numpy()
    feats = [c for c in df.columns if c != spec.target and c not in spec.drop]
    x = df[feats].to_numpy(np.float64)
    return x, y, tuple(str(f) for f in feats), None


def load(
    name: str, *, standardize: bool = False, return_dataframe: bool = False, **options: Any
) -> Any:
    r"""Load a real data set that ships inside an installed package (no download).

    ``"rdatasets:PACKAGE/ITEM"`` (e.g. ``"rdatasets:ggplot2/diamonds"``) loads an R table of the
    optional ``rdatasets`` package through :func:`rdataset`; ``options`` (``target=``,
    ``categorical=``, ...) go to it. The other names take no options.

    scikit-learn: ``iris`` (species), ``digits`` (digit), ``wine`` (cultivar), ``breast_cancer``
    (diagnosis, 0 malignant / 1 benign), ``diabetes`` (regression: progression). statsmodels (the
    packaged ``load_pandas()`` data; target column in brackets, every other column a feature
    unless noted): ``fair`` [affairs], ``randhie`` [mdvis], ``anes96`` [PID, 7 classes; ``vote``
    dropped], ``spector`` [GRADE, 0/1], ``star98`` [NABOVE / (NABOVE + NBELOW); the two counts
    dropped], ``statecrime`` [murder; ``violent`` dropped], ``longley`` [TOTEMP], ``stackloss``
    [STACKLOSS], ``scotland`` [YES], ``ccard`` [AVGEXP], ``engel`` [foodexp], ``cancer``
    [cancer], ``copper`` [WORLDCONSUMPTION], ``cpunish`` [EXECUTIONS], ``committee`` [BILLS104].
    :func:`available` lists them.

    Args:
        name: one of :func:`available`.
        standardize: scale every feature column to zero mean and unit variance (population
            standard deviation); constant columns are set to 0 with a :class:`DatasetWarning`.
            Targets are not changed.
        return_dataframe: return a pandas DataFrame (features then the target column) instead of
            a :class:`Dataset`.
        **options: for ``"rdatasets:..."`` names, keyword arguments of :func:`rdataset`.

    Returns:
        A :class:`Dataset` (``x`` float32, float64 while x64 is on; ``y`` int32 class ids or
        float values like ``x``).

    Raises:
        ValueError: unknown name (the message lists the available ones).

    Example:
        >>> from jaxcontext import datasets
        >>> d = datasets.load("iris", standardize=True)
        >>> d.x.shape, d.x.dtype.name, d.task, d.classes
        ((150, 4), 'float32', 'classification', ('setosa', 'versicolor', 'virginica'))
    """
    if isinstance(name, str) and name.startswith(_RDATASETS_PREFIX):
        package, item = _split_rdataset_name(name)
        ds = rdataset(package, item, standardize=standardize, **options)
        return _to_dataframe(ds) if return_dataframe else ds
    if options:
        raise TypeError(
            f"load: unexpected option(s) {sorted(options)} for {name!r}; options apply to "
            "'rdatasets:PACKAGE/ITEM' names only"
        )
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"load: unknown data set {name!r}; available: {', '.join(_REGISTRY)}, or "
            "'rdatasets:PACKAGE/ITEM' (the 'data' extra)"
        )
    spec = _REGISTRY[name]
    x, y, names, class_names = _load_raw(name, spec)
    if standardize:
        x = _standardize(x, names)
    if spec.task == "classification":
        yc, classes = _encode_classes(y, "y")
        if class_names is not None and len(class_names) == len(classes):
            classes = class_names
        y_out: np.ndarray = yc
    else:
        y_out, classes = np.asarray(y, np.float64).astype(V.float_dtype(np.float64)), None
    ds = Dataset(name, x.astype(V.float_dtype(x.dtype, min_single=True)), y_out, names,
                 spec.target, spec.task, classes)
    if return_dataframe:
        return _to_dataframe(ds)
    return ds


def _to_dataframe(ds: Dataset) -> Any:
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover
        raise ImportError("return_dataframe=True needs pandas") from e
    df = pd.DataFrame(ds.x, columns=list(ds.feature_names))
    if ds.y is not None:
        df[ds.target_name] = ds.y
    return df
