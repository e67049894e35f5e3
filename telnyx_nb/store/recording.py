"""The recording: a :class:`~telnyx_nb.store.Store` written continuously to a directory, crash-safe.

Layout (``FORMAT`` "telnyx_nb.recording", ``VERSION`` 2)::

    manifest.json                 format, version, created_at, updated_at, finished, l16_byteorder,
                                  clocks {table: clock}, payload_types, duplicate_events,
                                  rows {table: rows flushed}, parts (the last complete segment number),
                                  payload_bytes {"frames-K"|"rtp-K": bytes}
    <table>/part-000001.parquet   one segment per flush that had new rows, for every append-only
                                  table (events, transcripts, frames, rtp, dtmf, marks, the error tables)
    streams.parquet, sources.parquet   the stream and RTP-source registries (rewritten each flush)
    payloads/<kind>-<key>.bin     payload bytes, append-only: one file per stream track
                                  ("frames", key 2 * stream + track) or RTP source ("rtp", key = source)

Rows hold the store's raw columns (nanosecond stamps, indexes into the registries, offsets
into the payload files); dict columns are JSON text. Label columns are resolved when the
recording is read back into a Store, so a loaded recording has exactly the live tables.
A whole directory of recordings reads as one dataset per table with ``pyarrow.dataset`` or
DuckDB (``read_parquet('rec-*/frames/*.parquet')``).

Crash safety, by write order: payload bytes are appended first, then each segment is written
to a temporary name and renamed into place, then the registries, then the manifest (also
renamed into place): the manifest's ``rows`` are flush markers — every row they count is on
disk with its payload. A process killed mid-flush leaves at worst a ``*.tmp`` file (skipped
and counted by :func:`read`) and payload bytes no row refers to yet.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import warnings
from array import array
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from telnyx_nb.store.attribution import RtpSource
from telnyx_nb.store.schema import FRAME_DTYPE, FRAME_ROW
from telnyx_nb.store.tables import Store, StreamInfo

__all__ = ["FORMAT", "VERSION", "Recorder", "Follower", "read", "is_recording"]

FORMAT = "telnyx_nb.recording"
VERSION = 2
#: Tables stored as Columns (everything append-only but ``frames``, which is packed rows).
COLUMN_TABLES = ("events", "transcripts", "rtp", "dtmf", "marks", "stream_errors", "webhook_errors", "rtp_errors")
_DICT_COLUMNS = {"events": ("payload",)}
_STREAM_FIELDS = tuple(StreamInfo.__dataclass_fields__)
_SOURCE_FIELDS = tuple(RtpSource.__dataclass_fields__)


def is_recording(path: str | PathLike[str]) -> bool:
    """True when ``path`` holds a recording's manifest."""
    try:
        return orjson.loads((Path(path) / "manifest.json").read_bytes()).get("format") == FORMAT
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return False


class Recorder:
    """Writes what a Store collects to ``path``, at least every ``flush_interval_s`` seconds.

    ``start()`` runs the flushes on a thread of their own; ``flush()`` writes what is new now;
    ``close()`` flushes a last time and marks the recording finished. A write that fails (a
    full disk, a removed directory) stops the recording: ``error`` says why, a RuntimeWarning
    is issued once, and what was written before stays readable. Never raises from the thread.
    ``clocks()`` returns the table -> clock names written to the manifest. ``forget_flushed``:
    after each flush the store drops what was written (``Store.forget``), for a store nobody
    reads but through the recording (the capture process): its memory then stays flat.
    """

    def __init__(self, store: Store, path: str | PathLike[str], *, l16_byteorder: str,
                 clocks: Callable[[], Mapping[str, str]], flush_interval_s: float = 1.0,
                 forget_flushed: bool = False) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s!r}")
        self.store = store
        self.path = Path(path)
        self.flush_interval_s = flush_interval_s
        self.forget_flushed = forget_flushed
        self._l16_byteorder = l16_byteorder
        self._clocks = clocks
        self._rows = dict.fromkeys((*COLUMN_TABLES, "frames"), 0)
        self._payload_bytes: dict[str, int] = {}
        self._parts = 0
        self._created = _now()
        self._lock = threading.Lock()          # one flush at a time
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0
        self.error: str | None = None
        if is_recording(self.path):
            self._resume()
        self.path.mkdir(parents=True, exist_ok=True)

    def _resume(self) -> None:
        """Continue a recording this store was loaded from (a restart after a stop or a crash)."""
        manifest = orjson.loads((self.path / "manifest.json").read_bytes())
        self._created = manifest.get("created_at", self._created)
        self._rows.update({table: len(getattr(self.store, table)) for table in COLUMN_TABLES})
        self._rows["frames"] = len(self.store.frames) // FRAME_ROW.size
        self._payload_bytes = {f"frames-{k}": len(b) for k, b in enumerate(self.store._frame_payloads)}
        self._payload_bytes.update({f"rtp-{k}": len(b) for k, b in enumerate(self.store._rtp_payloads)})
        self._parts = max((int(p.stem.split("-")[1]) for p in self.path.glob("*/part-*.parquet")), default=0)

    # -- the flush thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name="telnyx_nb-recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._wake.wait(self.flush_interval_s):
            if not self.flush():
                return

    def close(self, timeout: float) -> None:
        """Stop the thread, flush what is left and mark the recording finished."""
        thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        self.flush(finished=True)

    # -- one flush --------------------------------------------------------------------------------

    def flush(self, *, finished: bool = False) -> bool:
        """Write what is new; False once the recording has stopped on an error."""
        with self._lock:
            if self.error is not None:
                return False
            try:
                self._flush(finished)
            except (OSError, pa.ArrowException) as exc:
                self.error = f"recording to {self.path} stopped: {exc}"
                warnings.warn(self.error, RuntimeWarning, stacklevel=2)
                return False
            self.flushes += 1
            return True

    def _flush(self, finished: bool) -> None:
        store = self.store
        rows = self._rows
        gone = store.forgotten
        with store.lock:
            tails = {table: getattr(store, table).tail(rows[table] - gone[table]) for table in COLUMN_TABLES}
            counts = {table: len(getattr(store, table)) + gone[table] for table in COLUMN_TABLES}
            frames = bytes(store.frames[(rows["frames"] - gone["frames"]) * FRAME_ROW.size:])
            counts["frames"] = len(store.frames) // FRAME_ROW.size + gone["frames"]
            payloads = [(f"{kind}-{k}", store.payload_tail(kind, k, self._payload_bytes.get(f"{kind}-{k}", 0)))
                        for kind, count in (("frames", len(store._frame_payloads)), ("rtp", len(store._rtp_payloads)))
                        for k in range(count)]
            streams = [dict(vars(s)) for s in store.streams]
            sources = [dict(vars(s)) for s in store.sources]
            duplicates = store.duplicate_events
        (self.path / "payloads").mkdir(exist_ok=True)
        for name, data in payloads:                  # 1. payloads, appended
            if data or name not in self._payload_bytes:
                with open(self.path / "payloads" / f"{name}.bin", "ab") as out:
                    out.write(data)
                self._payload_bytes[name] = self._payload_bytes.get(name, 0) + len(data)
        segments = {table: _columns_table(table, tails[table], getattr(store, table).codes) for table in COLUMN_TABLES}
        packed = np.frombuffer(frames, dtype=FRAME_DTYPE)
        segments["frames"] = pa.table({name: packed[name] for name in FRAME_DTYPE.names or ()})
        part = self._parts + 1
        for table, segment in segments.items():      # 2. segments, renamed into place
            if segment.num_rows:
                _write_parquet(segment, self.path / table / f"part-{part:06d}.parquet")
                self._parts = part
        _write_parquet(_registry(streams, _STREAM_FIELDS), self.path / "streams.parquet")   # 3. registries
        _write_parquet(_registry(sources, _SOURCE_FIELDS), self.path / "sources.parquet")
        self._rows = counts
        manifest = {                                  # 4. the manifest: flush markers
            "format": FORMAT, "version": VERSION, "created_at": self._created, "updated_at": _now(),
            "finished": finished, "l16_byteorder": self._l16_byteorder, "clocks": dict(self._clocks()),
            "payload_types": {str(k): v for k, v in store.payload_types.items()},
            "duplicate_events": duplicates, "rows": counts, "parts": self._parts,
            "payload_bytes": dict(self._payload_bytes),
        }
        data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        _replace(self.path / "manifest.json", lambda tmp: tmp.write_bytes(data))
        if self.forget_flushed:
            store.forget(counts, self._payload_bytes)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``: readers see the old file or the whole new one."""
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_parquet(table: pa.Table, path: Path) -> None:
    _replace(path, lambda tmp: pq.write_table(table, tmp))


def _columns_table(name: str, columns: Mapping[str, Any], codes: Mapping[str, str]) -> pa.Table:
    arrays = {}
    for column, values in columns.items():
        if codes[column] != "O":
            arrays[column] = pa.array(np.frombuffer(values, dtype=np.dtype(codes[column])))
        elif column in _DICT_COLUMNS.get(name, ()):
            arrays[column] = pa.array([orjson.dumps(v).decode() for v in values], type=pa.string())
        else:
            arrays[column] = pa.array([v if v is None or isinstance(v, str) else str(v) for v in values],
                                      type=pa.string())
    return pa.table(arrays)


def _registry(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> pa.Table:
    columns: dict[str, list[Any]] = {f: [r[f] for r in rows] for f in fields}
    if "custom_parameters" in columns:
        columns["custom_parameters"] = [orjson.dumps(v).decode() for v in columns["custom_parameters"]]
    return pa.table({f: pa.array(v) if v else pa.array([], type=pa.null()) for f, v in columns.items()})


# -- reading back --------------------------------------------------------------------------------

def read(path: str | PathLike[str], *, into: Store | None = None, payloads_in_memory: bool = False
         ) -> tuple[Store, dict[str, Any]]:
    """A Store holding everything a recording has on disk, and its manifest.

    Every complete segment is read (a crashed recording may hold more rows than its
    manifest's flush markers); ``*.tmp`` files left by a write cut short are skipped and
    counted in ``manifest["torn_files"]``; rows whose payload bytes or registry entries are
    missing are dropped and counted in ``manifest["torn_rows"]``. ``into``: an empty Store to
    fill (it keeps its own settings, e.g. the fork-claim window), else a new one.
    ``payloads_in_memory``: load the payload bytes (a store that will go on recording needs
    them); otherwise ``Store.payload`` reads them from the files when audio is asked for.
    Raises ValueError when ``path`` is not a recording or is from a newer version.
    """
    follower = Follower(path, into if into is not None else Store(), payloads_in_memory=payloads_in_memory)
    manifest = follower.refresh(complete_only=False)
    manifest["torn_files"] = len(list(Path(path).glob("**/*.tmp")))
    manifest["torn_rows"] = follower.torn_rows
    return follower.store, manifest


class Follower:
    """Fills ``store`` from a recording, and on each :meth:`refresh` with what was flushed since.

    A live recording is followed flush by flush: only segments up to the manifest's last
    complete flush are read, so every row's payload and registry entry is already on disk.
    Payload bytes stay in their files (``Store.payload`` reads them on demand) unless
    ``payloads_in_memory``: the memory of a follower is its rows, not its audio.
    """

    def __init__(self, path: str | PathLike[str], store: Store, *, payloads_in_memory: bool = False) -> None:
        self.path = Path(path)
        self.store = store
        self.payloads_in_memory = payloads_in_memory
        if not payloads_in_memory:
            store.payload_dir = self.path / "payloads"
        self.torn_rows = 0
        #: The manifest as of the last refresh (empty before the first).
        self.manifest: dict[str, Any] = {}
        self._parts_read: set[str] = set()
        self._payload_read: dict[str, int] = {}

    def refresh(self, *, complete_only: bool = True) -> dict[str, Any]:
        """Read what is new; returns the manifest. ValueError if the directory is not a recording."""
        root, store = self.path, self.store
        manifest = orjson.loads((root / "manifest.json").read_bytes())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{root} is not a telnyx_nb recording (format {manifest.get('format')!r})")
        if manifest.get("version", 0) > VERSION:
            raise ValueError(f"recording version {manifest['version']} is newer than this telnyx_nb ({VERSION})")
        last = manifest.get("parts", 0) if complete_only else float("inf")
        new_parts = {table: [p for p in sorted((root / table).glob("part-*.parquet"))
                             if f"{table}/{p.name}" not in self._parts_read and int(p.stem.split("-")[1]) <= last]
                     for table in (*COLUMN_TABLES, "frames")}
        streams = _read_registry(root / "streams.parquet")
        sources = _read_registry(root / "sources.parquet")
        segments = {table: pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None
                    for table, parts in new_parts.items()}
        with store.lock:
            store.payload_types.update({int(k): v for k, v in manifest.get("payload_types", {}).items()})
            for row in streams:
                row["custom_parameters"] = orjson.loads(row["custom_parameters"])
            store.streams[:] = [StreamInfo(**row) for row in streams]
            store._stream_index = {row["stream_id"]: row["index"] for row in streams}
            store.sources[:] = [RtpSource(**row) for row in sources]
            store._source_index = {(row["target"], row["ssrc"]): row["index"] for row in sources}
            self._read_payloads("frames", store._frame_payloads, 2 * len(streams))
            self._read_payloads("rtp", store._rtp_payloads, len(sources))
            for table in COLUMN_TABLES:
                if segments[table] is not None:
                    self._append_columns(table, segments[table])
            if segments["frames"] is not None:
                self._append_frames(segments["frames"])
            store._event_ids.update(v for v in store.events.columns["event_id"] if v is not None)
            store.duplicate_events = int(manifest.get("duplicate_events", 0))
        for table, parts in new_parts.items():
            self._parts_read.update(f"{table}/{p.name}" for p in parts)
        self.manifest = manifest
        return manifest

    def _read_payloads(self, kind: str, buffers: list[bytearray], count: int) -> None:
        bases = self.store._frame_base if kind == "frames" else self.store._rtp_base
        while len(buffers) < count:
            buffers.append(bytearray())
            bases.append(0)
        for key, buffer in enumerate(buffers):
            name = f"{kind}-{key}"
            file = self.path / "payloads" / f"{name}.bin"
            if not self.payloads_in_memory:
                self._payload_read[name] = file.stat().st_size if file.exists() else 0
            elif file.exists():
                with open(file, "rb") as source:
                    source.seek(self._payload_read.get(name, 0))
                    data = source.read()
                buffer += data
                self._payload_read[name] = self._payload_read.get(name, 0) + len(data)

    def _sizes(self, kind: str, count: int) -> np.ndarray:
        """Payload bytes on hand per key, and -1 for a key the registry does not know yet."""
        return np.array([self._payload_read.get(f"{kind}-{key}", 0) for key in range(count)] + [-1], dtype=np.int64)

    def _append_columns(self, table: str, segment: pa.Table) -> None:
        store = self.store
        if table == "rtp":
            source = segment["source"].to_numpy().astype(np.int64)
            sizes = self._sizes("rtp", len(store._rtp_payloads))
            known = np.where(source < len(store._rtp_payloads), source, len(store._rtp_payloads))
            ok = segment["offset"].to_numpy() + segment["n_bytes"].to_numpy() <= sizes[known]
            self.torn_rows += int((~ok).sum())
            segment = segment.filter(pa.array(ok))
        columns = getattr(store, table)
        for name, code in columns.codes.items():
            values = segment[name]
            column = columns.columns[name]
            if isinstance(column, array):
                column.frombytes(values.to_numpy().astype(np.dtype(code)).tobytes())
            elif name in _DICT_COLUMNS.get(table, ()):
                column.extend(orjson.loads(v) for v in values.to_pylist())
            else:
                column.extend(values.to_pylist())

    def _append_frames(self, segment: pa.Table) -> None:
        store = self.store
        rows = np.empty(segment.num_rows, dtype=FRAME_DTYPE)
        for name in FRAME_DTYPE.names or ():
            rows[name] = segment[name].to_numpy()
        sizes = self._sizes("frames", len(store._frame_payloads))
        key = 2 * rows["stream"].astype(np.int64) + rows["track"]
        key = np.where(key < len(store._frame_payloads), key, len(store._frame_payloads))
        ok = rows["offset"] + rows["n_bytes"] <= sizes[key]
        self.torn_rows += int((~ok).sum())
        store.frames += rows[ok].tobytes()


def _read_registry(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # One read of the whole file: a registry is replaced while its recording runs, and a reader
    # that opened it twice (footer, then data) could mix two versions.
    rows: list[dict[str, Any]] = pq.read_table(pa.BufferReader(path.read_bytes())).to_pylist()
    return rows
