"""Sessions saved by telnyx_nb 0.1 (format "telnyx_nb.session", version 1), read-only.

``save()`` now writes a recording (``store.recording``); this module only reads the old
directories so that they keep loading.

Layout (``FORMAT`` "telnyx_nb.session", ``VERSION`` 1)::

    manifest.json              format, version, saved_at, l16_byteorder, tables {name: {file, rows}},
                               payloads {"frames": [keys], "rtp": [keys]}
    <table>.parquet            every table of ``schema.TABLES``, internal ``_key``/``_offset`` columns included
    payloads/<kind>-<key>.bin  the payload bytes of one stream track (``frames``) or RTP source (``rtp``)

Dict columns (``events.payload``, ``streams.custom_parameters``) are stored as JSON text and
read back as dicts; label columns are read back as ``category`` (``schema.LABEL_COLUMNS``).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow.parquet as pq

from telnyx_nb.store.columns import as_labels
from telnyx_nb.store.schema import JSON_COLUMNS, LABEL_COLUMNS, TIME_COLUMNS

__all__ = ["FORMAT", "VERSION", "is_session", "read", "read_payload"]

FORMAT = "telnyx_nb.session"
VERSION = 1


def is_session(path: str | PathLike[str]) -> bool:
    """True when ``path`` holds a version-1 session's manifest."""
    try:
        return orjson.loads((Path(path) / "manifest.json").read_bytes()).get("format") == FORMAT
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return False


def read(path: str | PathLike[str]) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The manifest and every table of a session directory.

    Raises ValueError when the directory is not a telnyx_nb session or is from a newer version.
    """
    root = Path(path)
    manifest = orjson.loads((root / "manifest.json").read_bytes())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{root} is not a telnyx_nb session (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > VERSION:
        raise ValueError(f"session version {manifest['version']} is newer than this telnyx_nb ({VERSION})")
    tables = {}
    for name, entry in manifest["tables"].items():
        df = pq.read_table(root / entry["file"]).to_pandas()
        for col in TIME_COLUMNS.get(name, []):
            df[col] = df[col].astype("datetime64[ns, UTC]")
        for col in JSON_COLUMNS.get(name, []):
            df[col] = [orjson.loads(value) for value in df[col]]
        tables[name] = as_labels(df, LABEL_COLUMNS.get(name, ()))
    return manifest, tables


def read_payload(path: str | PathLike[str], kind: str, key: int) -> bytes:
    """The payload bytes of one stream track (``kind`` "frames") or RTP source ("rtp")."""
    return (Path(path) / "payloads" / f"{kind}-{key}.bin").read_bytes()
