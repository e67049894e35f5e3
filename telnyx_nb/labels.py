"""Label columns: pandas ``category`` with ``str`` categories, the dtype of every id and label
column the package returns (the receiver's tables, loaded sessions, analytics, the sandbox's
ground truth) — defined once, here, for all of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["label_dtype", "category", "labels"]


def label_dtype(categories: Iterable[str]) -> pd.CategoricalDtype:
    """The dtype of a label column: ``category`` whose categories are an Index of dtype ``str``
    (object on pandas 2, the string dtype on pandas 3), explicit so that a table has the same
    dtype however its values arrived (live, from a recording, from parquet)."""
    return pd.CategoricalDtype(pd.Index(list(categories), dtype=str))


def category(values: Iterable[object], categories: Iterable[str] | None = None) -> pd.Categorical:
    """Label values (strings; None/NaN = missing) as a Categorical of :func:`label_dtype`;
    ``categories`` default to the distinct strings, sorted. A value outside ``categories`` is missing."""
    raw = np.asarray(values if isinstance(values, pd.Series | np.ndarray) else list(values), dtype=object)
    codes, uniques = pd.factorize(raw)
    if categories is None:
        categories = sorted(v for v in uniques if isinstance(v, str))
    dtype = label_dtype(categories)
    position = dtype.categories.get_indexer(pd.Index(uniques, dtype=object))
    return pd.Categorical.from_codes(np.append(position, -1)[codes], dtype=dtype)


def labels(values: Sequence[str | None], index: np.ndarray) -> pd.Categorical:
    """``values[index]`` as a label column (:func:`category`; None = missing), without a Python
    string per row: ``values`` is a registry (one entry per stream or source), ``index`` the rows' entries."""
    categories = sorted({v for v in values if isinstance(v, str)})
    position = {name: code for code, name in enumerate(categories)}
    codes = np.array([position.get(v, -1) if isinstance(v, str) else -1 for v in values],
                     dtype=np.min_scalar_type(-len(categories) - 1))    # what pandas keeps: no recast per row
    return pd.Categorical.from_codes(codes[index], dtype=label_dtype(categories))
