"""Append-only columns and the conversions from stored values to DataFrame columns."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from telnyx_nb.defaults import EXCERPT_CHARS

__all__ = ["Columns", "excerpt", "utc", "parse_times", "labels", "ints", "plain"]


def excerpt(data: str | bytes | bytearray | memoryview) -> str:
    """The start of a bad message, as text (bytes that are not UTF-8 are shown escaped)."""
    if not isinstance(data, str):
        data = bytes(data[: EXCERPT_CHARS * 4]).decode("utf-8", "backslashreplace")
    return data[:EXCERPT_CHARS]


def utc(ns: Iterable[int] | np.ndarray) -> pd.DatetimeIndex:
    """Nanoseconds since the epoch (int64 min = missing) as ``datetime64[ns, UTC]``."""
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]")).tz_localize("UTC")


def parse_times(values: Iterable[str | None]) -> pd.DatetimeIndex:
    """Telnyx ISO-8601 timestamps (``...Z``) as ``datetime64[ns, UTC]``; bad or missing -> NaT."""
    parsed = pd.to_datetime(pd.Series(list(values), dtype=object), utc=True, format="ISO8601", errors="coerce")
    return pd.DatetimeIndex(parsed).as_unit("ns")


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


def labels(values: list[str | None], index: np.ndarray) -> pd.Categorical:
    """``values[index]`` as a Categorical (None = missing), without a Python string per row."""
    table = pd.Categorical(pd.Series(values, dtype=object))
    return pd.Categorical.from_codes(table.codes[index], table.categories)


def ints(values: list[int | None], index: np.ndarray) -> pd.arrays.IntegerArray:
    """``values[index]`` as nullable Int64 (None = missing)."""
    raw = np.array([-1 if v is None else v for v in values], dtype=np.int64)[index]
    return pd.arrays.IntegerArray(raw, raw < 0)


def plain(column: pd.Series) -> pd.Series:
    """A Categorical label column as plain strings, the dtype the public tables use."""
    values = np.array([*column.cat.categories, None], dtype=object)
    return pd.Series(values[column.cat.codes.to_numpy()], index=column.index)
