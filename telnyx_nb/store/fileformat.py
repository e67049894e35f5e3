"""The session directory: one Parquet file per table, one payload file per track, a manifest.

Layout (``FORMAT`` "telnyx_nb.session", ``VERSION`` 1)::

    manifest.json              format, version, saved_at, l16_byteorder, clocks {table: clock},
                               tables {name: {file, rows}},
                               payloads {"frames": [keys], "rtp": [keys]}
    <table>.parquet            every table of ``schema.TABLES``, internal ``_key``/``_offset`` columns included
    payloads/<kind>-<key>.bin  the payload bytes of one stream track (``frames``) or RTP source (``rtp``)

Dict columns (``events.payload``, ``streams.custom_parameters``) are stored as JSON text and
read back as dicts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from telnyx_nb.store.schema import JSON_COLUMNS, TABLES, TIME_COLUMNS

__all__ = ["FORMAT", "VERSION", "write", "read", "read_payload"]

FORMAT = "telnyx_nb.session"
VERSION = 1
_PAYLOAD_KINDS = ("frames", "rtp")


def write(path: str | PathLike[str], tables: Mapping[str, pd.DataFrame], payload: Callable[[str, int], bytes],
          *, l16_byteorder: str, clocks: Mapping[str, str]) -> Path:
    """Write ``tables`` (every name in ``TABLES``) and the payload of each ``_key`` they use.

    ``clocks``: what stamped each table's ``received_at`` ("kernel" or "socket_read").
    """
    root = Path(path)
    (root / "payloads").mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "l16_byteorder": l16_byteorder, "clocks": dict(clocks), "tables": {},
        "payloads": {kind: [] for kind in _PAYLOAD_KINDS},
    }
    for name in TABLES:
        df = tables[name].copy()
        for col in JSON_COLUMNS.get(name, []):
            df[col] = [orjson.dumps(value).decode() for value in df[col]]
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), root / f"{name}.parquet")
        manifest["tables"][name] = {"file": f"{name}.parquet", "rows": len(df)}
        if name in _PAYLOAD_KINDS:
            for key in sorted(set(df["_key"].tolist())):
                (root / "payloads" / f"{name}-{key}.bin").write_bytes(payload(name, key))
                manifest["payloads"][name].append(key)
    (root / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return root


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
        tables[name] = df
    return manifest, tables


def read_payload(path: str | PathLike[str], kind: str, key: int) -> bytes:
    """The payload bytes of one stream track (``kind`` "frames") or RTP source ("rtp")."""
    return (Path(path) / "payloads" / f"{kind}-{key}.bin").read_bytes()
