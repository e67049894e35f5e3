"""Append-only columns and the conversions from stored values to DataFrame columns."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from telnyx_nb.defaults import EXCERPT_CHARS
from telnyx_nb.labels import category, label_dtype, labels

__all__ = ["Columns", "excerpt", "utc", "parse_times", "label_dtype", "category", "as_labels", "labels", "ints"]


def excerpt(data: str | bytes | bytearray | memoryview) -> str:
    """The start of a bad message, as text (bytes that are not UTF-8 are shown escaped)."""
    if not isinstance(data, str):
        data = bytes(data[: EXCERPT_CHARS * 4]).decode("utf-8", "backslashreplace")
    return data[:EXCERPT_CHARS]


def utc(ns: Iterable[int] | np.ndarray) -> pd.DatetimeIndex:
    """Nanoseconds since the epoch (int64 min = missing) as ``datetime64[ns, UTC]`` (sharing
    memory with ``ns`` when it is an int64 array: 20x faster than ``tz_localize``)."""
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]"), dtype=_UTC)


_UTC = pd.DatetimeTZDtype("ns", "UTC")


def parse_times(values: Iterable[str | None]) -> pd.DatetimeIndex:
    """Telnyx ISO-8601 timestamps (``...Z``) as ``datetime64[ns, UTC]``; bad, missing or outside
    what nanoseconds hold (1677-09-21 to 2262-04-11; pandas parses years 1 to 9999) -> NaT."""
    parsed = pd.to_datetime(pd.Series(list(values), dtype=object), utc=True, format="ISO8601", errors="coerce")
    parsed = parsed.where((parsed >= _NS_MIN) & (parsed <= _NS_MAX))
    return pd.DatetimeIndex(parsed).as_unit("ns")


_NS_MIN, _NS_MAX = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")


class Columns:
    """One append-only table: stdlib ``array`` columns for numbers, lists for objects ("O")."""

    def __init__(self, **spec: str) -> None:
        #: column name -> ``array`` typecode, or "O" for Python objects.
        self.codes = dict(spec)
        self.columns: dict[str, array | list] = {
            name: [] if code == "O" else array(code) for name, code in spec.items()
        }
        self._appenders = [column.append for column in self.columns.values()]

    def append(self, *values: Any) -> None:
        """Append one row; a value a column cannot hold (OverflowError) leaves no partial row."""
        try:
            for add, value in zip(self._appenders, values, strict=True):
                add(value)
        except (OverflowError, TypeError):
            size = min(len(column) for column in self.columns.values())
            for column in self.columns.values():
                del column[size:]
            raise

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def tail(self, start: int) -> dict[str, array | list]:
        """Copies of the rows from ``start`` on (the caller holds the store's lock)."""
        return {name: column[start:] for name, column in self.columns.items()}

    def copy(self) -> dict[str, array | list]:
        return {name: column[:] for name, column in self.columns.items()}


def as_labels(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``df`` with each of ``columns`` (those it has) as a label column (:func:`category`);
    a column already of :func:`label_dtype` is kept as it is. Modifies and returns ``df``."""
    for col in columns:
        if col in df.columns and not _is_label(df[col].dtype):
            df[col] = category(df[col])
    return df


def _is_label(dtype: object) -> bool:
    return isinstance(dtype, pd.CategoricalDtype) and dtype.categories.dtype == label_dtype(()).categories.dtype


def ints(values: list[int | None], index: np.ndarray) -> pd.arrays.IntegerArray:
    """``values[index]`` as nullable Int64 (None = missing)."""
    raw = np.array([-1 if v is None else v for v in values], dtype=np.int64)[index]
    return pd.arrays.IntegerArray(raw, raw < 0)
