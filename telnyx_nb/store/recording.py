"""The recording: a :class:`~telnyx_nb.store.Store` written continuously to a directory, crash-safe.

Layout (``FORMAT`` "telnyx_nb.recording", ``VERSION`` 3)::

    manifest.json                 format, version, recording_id, created_at, updated_at, finished,
                                  l16_byteorder, clocks {table: clock}, payload_types, duplicate_events,
                                  rows {table: rows flushed}, parts (the last complete segment number),
                                  payload_bytes {"frames-K"|"rtp-K": bytes}, merges (merges done),
                                  merge_floor (segments up to it are of an older version: never merged)
    <table>/part-000001.parquet   one segment per flush that had new rows, for every append-only
                                  table (events, transcripts, frames, rtp, dtmf, marks, the error tables)
    <table>/part-000001-000064.parquet   segments 1 to 64 of that table merged (``COMPACT_PARTS``)
    streams.parquet, sources.parquet   the stream and RTP-source registries (rewritten when changed)
    commands.parquet              the ``commands`` registry (``store.commands``; rewritten when changed,
                                  ``options`` as JSON text; absent in recordings made before it)
    payloads/<kind>-<key>.bin     payload bytes, append-only: one file per stream track
                                  ("frames", key 2 * stream + track) or RTP source ("rtp", key = source)

Every row and registry row starts with the manifest's ``recording_id``, then ``received_at``
(``timestamp[ns, UTC]``), and carries its labels instead of the store's registry indexes:
``frames`` stream_id, call_control_id (the stream's call when the row was written), track;
``rtp`` target, ssrc, call_leg_id (STREP); ``marks`` stream_id, call_control_id; ``dtmf``
stream_id or target + ssrc. The other columns are the store's (``offset`` into the payload
file); dict columns are JSON text. A whole directory of recordings reads as one dataset per
table with ``pyarrow.dataset`` or DuckDB (``read_parquet('rec-*/frames/*.parquet')``); an RTP
row's call is its source's (join ``sources.parquet`` on recording_id, target, ssrc: a source
can be attributed after its first rows were written). Reading back maps the labels to the
registries' indexes, so a loaded recording has exactly the live tables; version-2 segments
(``received_ns`` and indexes) are read as they are.

Crash safety, by write order: payload bytes are appended first, then each segment is written
to a temporary name and renamed into place, then the registries, then the manifest (also
renamed into place): the manifest's ``rows`` are flush markers — every row they count is on
disk with its payload. A process killed mid-flush leaves at worst a ``*.tmp`` file (skipped
and counted by :func:`read`) and payload bytes no row refers to yet. A merge writes the merged
file (renamed into place), then the manifest (``merges`` + 1), then deletes the segments it
holds; readers prefer a merged file to its segments, a live :class:`Follower` lists the
directories again when ``merges`` changed, and a recorder resumed after a kill deletes the
segments a merged file already holds.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import uuid
from array import array
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telnyx_nb.store.attribution import RtpSource
from telnyx_nb.store.commands import CommandInfo
from telnyx_nb.store.schema import COLUMN_DEFAULTS, FRAME_DTYPE, FRAME_ROW, TRACKS
from telnyx_nb.store.tables import Store, StreamInfo

__all__ = ["FORMAT", "VERSION", "Recorder", "Follower", "read", "is_recording"]

log = logging.getLogger(__name__)

FORMAT = "telnyx_nb.recording"
VERSION = 3
#: A table's single-flush segments are merged into one file once this many are unmerged.
COMPACT_PARTS = 64
#: Tables stored as Columns (everything append-only but ``frames``, which is packed rows).
COLUMN_TABLES = ("events", "transcripts", "rtp", "dtmf", "marks", "stream_errors", "webhook_errors", "rtp_errors")
_DICT_COLUMNS = {"events": ("payload",)}
_STREAM_FIELDS = tuple(StreamInfo.__dataclass_fields__)
_SOURCE_FIELDS = tuple(RtpSource.__dataclass_fields__)
_COMMAND_FIELDS = tuple(CommandInfo.__dataclass_fields__)
#: Registry columns holding dicts, stored as JSON text.
_REGISTRY_DICTS = ("custom_parameters", "options")
#: The columns of a ``frames`` segment reading back needs (of this version and of version 2);
#: its labels are read as dictionaries (a few distinct values over many rows).
_FRAME_READ = frozenset(("received_at", "stream_id", *(FRAME_DTYPE.names or ())))
_FRAME_LABELS = ("stream_id", "track")
#: Rows packed at a time into ``frames`` (:func:`_packed_frames`): about 720 kB, within a CPU cache.
_PACK_ROWS = 16384


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
    full disk, a removed directory) stops the recording: ``error`` says why, it is logged once
    (an error of the ``telnyx_nb.store.recording`` logger; the Receiver's ``health()`` warns
    in the notebook), and what was written before stays readable. Never raises from the thread.
    From then on ``unrecorded_rows`` counts the rows the store collected that the recording
    does not hold. ``clocks()`` returns the table -> clock names written to the manifest.
    ``forget_flushed``: after each flush the store drops what was written (``Store.forget``),
    for a store nobody reads but through the recording (the capture process): its memory then
    stays flat — also once the recording has stopped, when each flush interval drops what it
    could not write (counted in ``unrecorded_rows``), so a full disk costs rows, never memory.
    ``compact_parts``: once a table has this many single-flush segments not merged yet, they
    are merged into one file (``close()`` merges what is left); 0 never merges.
    """

    def __init__(self, store: Store, path: str | PathLike[str], *, l16_byteorder: str,
                 clocks: Callable[[], Mapping[str, str]], flush_interval_s: float = 1.0,
                 forget_flushed: bool = False, compact_parts: int = COMPACT_PARTS) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s!r}")
        self.store = store
        self.path = Path(path)
        self.flush_interval_s = flush_interval_s
        self.forget_flushed = forget_flushed
        self.compact_parts = compact_parts
        self._l16_byteorder = l16_byteorder
        self._clocks = clocks
        self._rows = dict.fromkeys((*COLUMN_TABLES, "frames"), 0)
        self._payload_bytes: dict[str, int] = {}
        self._parts = 0
        #: Per table, its single-flush segments not merged yet (numbers), and segments a merged
        #: file holds already, deleted once the manifest says so.
        self._unmerged: dict[str, list[int]] = {table: [] for table in (*COLUMN_TABLES, "frames")}
        self._covered: list[Path] = []
        #: Merges done (the manifest's ``merges``: a follower lists the directories when it changed)
        #: and the last segment of an older version (never merged: its columns differ).
        self._merges = 0
        self._merge_floor = 0
        self._manifest: dict[str, Any] = {}
        #: The registry rows as last written (a registry is rewritten only when it changed).
        self._registries: dict[str, list[dict[str, Any]]] = {}
        self._created = _now()
        self.recording_id = uuid.uuid4().hex
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
        self.recording_id = manifest.get("recording_id", self.recording_id)
        self._merges = int(manifest.get("merges", 0))
        self._merge_floor = int(manifest.get("merge_floor", 0) if manifest.get("version", 0) >= 3
                                else manifest.get("parts", 0))
        self._rows.update({table: len(getattr(self.store, table)) for table in COLUMN_TABLES})
        self._rows["frames"] = len(self.store.frames) // FRAME_ROW.size
        self._payload_bytes = {f"frames-{k}": len(b) for k, b in enumerate(self.store._frame_payloads)}
        self._payload_bytes.update({f"rtp-{k}": len(b) for k, b in enumerate(self.store._rtp_payloads)})
        for table in self._unmerged:
            files = _segment_files(self.path / table)
            self._parts = max([self._parts, self._merge_floor, *(last for _, last, _ in files)])
            merged = [(first, last) for first, last, _ in files if last > first]
            for first, last, name in files:
                if first == last and any(a <= first <= b for a, b in merged):
                    self._covered.append(self.path / table / name)      # merged before a crash
                elif first == last and first > self._merge_floor:
                    self._unmerged[table].append(first)
            self._unmerged[table].sort()

    # -- the flush thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Write the manifest now (the directory is a loadable recording from the start, even one
        whose first flush meets a full disk), then flush every ``flush_interval_s``."""
        if self._thread is None:
            self.flush()
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name="telnyx_nb-recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._wake.wait(self.flush_interval_s):
            self.flush()            # after an error: drops what cannot be written (forget_flushed)

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
            if self.error is None:
                try:
                    self._flush(finished)
                    self._compact(2 if finished else self.compact_parts)
                except (OSError, pa.ArrowException) as exc:
                    kept = ("dropped (the capture keeps no row it cannot record)" if self.forget_flushed
                            else "kept in this session's tables only")
                    self.error = (f"recording to {self.path} stopped: {exc}; what it wrote before stays loadable, "
                                  f"rows collected since are {kept} and counted in health()['unrecorded_rows']")
                    log.error("%s", self.error)
                else:
                    self.flushes += 1
                    return True
            if self.forget_flushed:
                self._drop_unrecorded()
            return False

    @property
    def unrecorded_rows(self) -> int:
        """Rows the store collected that the recording does not hold, once it has stopped on an
        error (0 while it works: rows not flushed yet are on their way)."""
        if self.error is None:
            return 0
        return sum(self._totals().values()) - sum(self._rows.values())

    def _totals(self) -> dict[str, int]:
        """Rows collected per table since the recording began (forgotten ones included)."""
        store = self.store
        with store.lock:
            totals = {table: len(getattr(store, table)) + store.forgotten[table] for table in COLUMN_TABLES}
            totals["frames"] = len(store.frames) // FRAME_ROW.size + store.forgotten["frames"]
        return totals

    def _drop_unrecorded(self) -> None:
        """The recording has stopped: the store forgets every row and payload byte it holds."""
        store = self.store
        totals = self._totals()
        with store.lock:
            payload = {f"frames-{k}": store._frame_base[k] + len(b) for k, b in enumerate(store._frame_payloads)}
            payload.update({f"rtp-{k}": store._rtp_base[k] + len(b) for k, b in enumerate(store._rtp_payloads)})
        store.forget(totals, payload)

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
            commands = [dict(vars(c)) for c in store.commands]
            duplicates = store.duplicate_events
        (self.path / "payloads").mkdir(exist_ok=True)
        for name, data in payloads:                  # 1. payloads, appended
            if data or name not in self._payload_bytes:
                with open(self.path / "payloads" / f"{name}.bin", "ab") as out:
                    out.write(data)
                self._payload_bytes[name] = self._payload_bytes.get(name, 0) + len(data)
        labels = _Labels(self.recording_id, streams, sources)
        segments = {table: labels.file_table(table, _columns_table(table, tails[table], getattr(store, table).codes))
                    for table in COLUMN_TABLES}
        packed = np.frombuffer(frames, dtype=FRAME_DTYPE)
        segments["frames"] = labels.file_table("frames", pa.table({name: packed[name]
                                                                   for name in FRAME_DTYPE.names or ()}))
        part = self._parts + 1
        for table, segment in segments.items():      # 2. segments, renamed into place
            if segment.num_rows:
                _write_parquet(segment, self.path / table / f"part-{part:06d}.parquet")
                self._unmerged[table].append(part)
                self._parts = part
        for name, registry, fields in (("streams", streams, _STREAM_FIELDS), ("sources", sources, _SOURCE_FIELDS),
                                       ("commands", commands, _COMMAND_FIELDS)):   # 3. registries, when changed
            if self._registries.get(name) != registry:
                _write_parquet(_registry(registry, fields, self.recording_id), self.path / f"{name}.parquet")
                self._registries[name] = registry
        self._rows = counts
        self._manifest = {                            # 4. the manifest: flush markers
            "format": FORMAT, "version": VERSION, "recording_id": self.recording_id, "created_at": self._created,
            "updated_at": _now(), "finished": finished, "l16_byteorder": self._l16_byteorder,
            "clocks": dict(self._clocks()), "payload_types": {str(k): v for k, v in store.payload_types.items()},
            "duplicate_events": duplicates, "rows": counts, "parts": self._parts,
            "payload_bytes": dict(self._payload_bytes), "merges": self._merges, "merge_floor": self._merge_floor,
        }
        self._write_manifest()
        if self.forget_flushed:
            store.forget(counts, self._payload_bytes)

    def _write_manifest(self) -> None:
        data = orjson.dumps(self._manifest, option=orjson.OPT_INDENT_2)
        _replace(self.path / "manifest.json", lambda tmp: tmp.write_bytes(data))

    def _compact(self, at_least: int) -> None:
        """Merge each table's unmerged segments when there are ``at_least`` of them (0: never).

        By write order: the merged file ``part-AAAAAA-BBBBBB.parquet`` (segments A to B, renamed
        into place), then the manifest (``merges`` + 1), then the segments are deleted. A reader
        prefers a merged file to the segments it holds, so every state in between loads whole.
        """
        if not at_least:
            return
        for table, parts in self._unmerged.items():
            if len(parts) < max(at_least, 2):
                continue
            folder = self.path / table
            names = [f"part-{n:06d}.parquet" for n in parts]
            merged = pa.concat_tables([_read_parquet(folder / name) for name in names])
            _write_parquet(merged, folder / f"part-{parts[0]:06d}-{parts[-1]:06d}.parquet")
            self._covered += [folder / name for name in names]
            parts.clear()
        if self._covered:
            self._merges += 1
            self._manifest["merges"] = self._merges
            self._write_manifest()
            for path in self._covered:
                path.unlink(missing_ok=True)
            self._covered = []


class _Labels:
    """Rows as the files hold them: every row with its labels (the registries' indexes in the
    store become stream ids, targets and SSRCs), ``received_at`` a UTC timestamp, and the
    recording's id; and back (:meth:`store_table`)."""

    def __init__(self, recording_id: str, streams: list[dict[str, Any]], sources: list[dict[str, Any]]) -> None:
        self.recording_id = recording_id
        # each with a last entry for "none" (index -1) and for an index the registry lacks
        self.stream_ids = pa.array([s["stream_id"] for s in streams] + [None], pa.string())
        self.calls = pa.array([s["call_control_id"] for s in streams] + [None], pa.string())
        self.targets = pa.array([s["target"] for s in sources] + [None], pa.string())
        self.ssrcs = pa.array([s["ssrc"] for s in sources] + [None], pa.int64())
        self.source_keys = pa.array([2 * s["ssrc"] + (s["target"] == "tx") for s in sources], pa.int64())

    @staticmethod
    def _at(values: pa.ChunkedArray | pa.Array, count: int) -> pa.Array:
        index = np.asarray(values).astype(np.int64)
        return pa.array(np.where((index < 0) | (index >= count), count, index))

    def file_table(self, table: str, t: pa.Table) -> pa.Table:
        if not t.num_rows:
            return t
        columns: dict[str, Any] = {"recording_id": pa.repeat(pa.scalar(self.recording_id), t.num_rows),
                                   "received_at": t["received_ns"].cast(pa.timestamp("ns", "UTC"))}
        for name in t.column_names:
            if name == "received_ns":
                continue
            if name == "stream":
                at = self._at(t[name], len(self.stream_ids) - 1)
                columns["stream_id"] = self.stream_ids.take(at)
                if table != "dtmf":
                    columns["call_control_id"] = self.calls.take(at)
            elif name == "track" and table == "frames":
                columns["track"] = pa.array(TRACKS, pa.string()).take(t[name].cast(pa.int64()))
            elif name in ("source", "rtp_source"):
                at = self._at(t[name], len(self.targets) - 1)
                columns["target"], columns["ssrc"] = self.targets.take(at), self.ssrcs.take(at)
            elif name == "leg":
                columns["call_leg_id"] = t[name]
            else:
                columns[name] = t[name]
        return pa.table(columns)

    def store_table(self, table: str, t: pa.Table) -> pa.Table:
        """A segment's columns as the store keeps them (a segment of an older version as it is;
        label columns the store does not keep are left for the reader to ignore). A stream or
        source the registry lacks gets an index past its end in ``frames`` and ``rtp`` (the row
        is then torn), -1 elsewhere."""
        if "received_at" not in t.column_names:
            return t
        missing = 2**31 - 1 if table in ("frames", "rtp") else -1
        columns: dict[str, Any] = dict(zip(t.column_names, t.columns, strict=True))
        columns["received_ns"] = t["received_at"].cast(pa.int64())
        if table in ("frames", "marks", "dtmf"):
            columns["stream"] = _index_in(t["stream_id"], self.stream_ids[:-1]).fill_null(missing)
        if table == "frames":
            columns["track"] = _index_in(t["track"], pa.array(TRACKS)).cast(pa.int8())
        if table in ("rtp", "dtmf"):
            tx = pc.equal(t["target"], "tx").cast(pa.int64())
            source = pc.index_in(pc.add(pc.multiply(t["ssrc"], 2), tx), value_set=self.source_keys)
            columns["rtp_source" if table == "dtmf" else "source"] = source.fill_null(missing)
            columns["leg"] = t["call_leg_id"]
        return pa.table(columns)


def _index_in(values: pa.ChunkedArray, value_set: pa.Array) -> pa.ChunkedArray | pa.Array:
    """``pyarrow.compute.index_in``; a dictionary column's values are looked up once each (on
    its chunks' dictionaries unified), not once per row."""
    if not pa.types.is_dictionary(values.type):
        return pc.index_in(values, value_set=value_set)
    whole = pa.table({"values": values}).unify_dictionaries().column("values").combine_chunks()
    return pc.index_in(whole.dictionary, value_set=value_set).take(whole.indices)


def _segment_files(folder: Path) -> list[tuple[int, int, str]]:
    """A table's segment files as (first flush, last flush, name), in order: ``part-N`` holds
    flush N, a merged ``part-A-B`` flushes A to B (the segments it replaced may still be there)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if name.startswith("part-") and name.endswith(".parquet"):
            numbers = name[5:-8].split("-")
            try:
                found.append((int(numbers[0]), int(numbers[-1]), name))
            except ValueError:
                continue
    return sorted(found)


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


def _registry(rows: list[dict[str, Any]], fields: tuple[str, ...], recording_id: str) -> pa.Table:
    columns: dict[str, list[Any]] = {f: [r[f] for r in rows] for f in fields}
    for name in _REGISTRY_DICTS:
        if name in columns:
            columns[name] = [orjson.dumps(v).decode() for v in columns[name]]
    arrays = {f: pa.array(v) if v else pa.array([], type=pa.null()) for f, v in columns.items()}
    return pa.table({"recording_id": pa.array([recording_id] * len(rows), pa.string()), **arrays})


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
    Segments the recorder merged meanwhile are read from the merged file, less the rows read
    already. Payload bytes stay in their files (``Store.payload`` reads them on demand) unless
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
        #: Per table, the last flush whose rows were read (segments are numbered in flush order),
        #: and the rows read from each single-flush segment a merge may still take in; the last
        #: flush every table has been looked at for, and the manifest's merges then.
        self._last_part: dict[str, int] = {}
        self._single_rows: dict[str, dict[int, int]] = {}
        self._scanned = 0
        self._merges: int | None = None
        self._payload_read: dict[str, int] = {}

    def refresh(self, *, complete_only: bool = True) -> dict[str, Any]:
        """Read what is new; returns the manifest. ValueError if the directory is not a recording."""
        segments: dict[str, list[tuple[int, int, pa.Table]]] = {}
        registries: list[list[dict[str, Any]]] = [[], [], []]
        for _ in range(100):
            manifest = self._manifest()
            try:
                files = self._new_files(manifest.get("parts", 0) if complete_only else None,
                                        manifest.get("merges", 0))
                segments = self._read_segments(files)
                registries = [_read_registry(self.path / f"{name}.parquet")
                              for name in ("streams", "sources", "commands")]
            except FileNotFoundError:          # merged and deleted since the manifest was read
                continue
            if not manifest.get("merges") or self._manifest().get("merges") == manifest.get("merges"):
                break                           # no merge went on meanwhile: no file was missed
        self._apply(manifest, segments, *registries)
        self._merges = manifest.get("merges", 0)
        self._scanned = max(self._scanned, *self._last_part.values(), manifest.get("parts", 0) if complete_only else 0)
        self.manifest = manifest
        return manifest

    def _read_segments(self, files: dict[str, list[tuple[int, int, int, str]]]
                       ) -> dict[str, list[tuple[int, int, pa.Table]]]:
        """The files :meth:`_new_files` found, read on pyarrow's CPU count of threads when there
        are several (a recording's merged segments: each file's read runs without the GIL)."""
        jobs = [(table, first, end, skip, name) for table, found in files.items() for first, end, skip, name in found]

        def read_one(job: tuple[str, int, int, int, str]) -> pa.Table:
            table, _, _, skip, name = job
            return _read_segment(table, self.path / table / name).slice(skip)

        workers = min(len(jobs), pa.cpu_count())
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="telnyx_nb-read") as pool:
                tables = list(pool.map(read_one, jobs))
        else:
            tables = [read_one(job) for job in jobs]
        segments: dict[str, list[tuple[int, int, pa.Table]]] = {table: [] for table in files}
        for (table, first, end, _, _), t in zip(jobs, tables, strict=True):
            segments[table].append((first, end, t))
        return segments

    def _manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = orjson.loads((self.path / "manifest.json").read_bytes())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a telnyx_nb recording (format {manifest.get('format')!r})")
        if manifest.get("version", 0) > VERSION:
            raise ValueError(f"recording version {manifest['version']} is newer than this telnyx_nb ({VERSION})")
        return manifest

    def _apply(self, manifest: dict[str, Any], segments: dict[str, list[tuple[int, int, pa.Table]]],
               streams: list[dict[str, Any]], sources: list[dict[str, Any]], commands: list[dict[str, Any]]) -> None:
        store = self.store
        for row in (*streams, *sources, *commands):
            row.pop("recording_id", None)
        labels = _Labels("", streams, sources)
        with store.lock:
            store.payload_types.update({int(k): v for k, v in manifest.get("payload_types", {}).items()})
            for row in streams:
                row["custom_parameters"] = orjson.loads(row["custom_parameters"])
            store.streams[:] = [StreamInfo(**row) for row in streams]
            store._stream_index = {row["stream_id"]: row["index"] for row in streams}
            store.sources[:] = [RtpSource(**row) for row in sources]
            store.commands[:] = [CommandInfo(**{**row, "options": orjson.loads(row["options"])}) for row in commands]
            store._source_index = {(row["target"], row["ssrc"]): row["index"] for row in sources}
            self._read_payloads("frames", store._frame_payloads, 2 * len(streams))
            self._read_payloads("rtp", store._rtp_payloads, len(sources))
            events_before = len(store.events)
            for table in (*COLUMN_TABLES, "frames"):
                for run in _runs([t for _, _, t in segments.get(table, [])]):
                    group = labels.store_table(table, run)
                    if table == "frames":
                        self._append_frames(group)
                    else:
                        self._append_columns(table, group)
            store._event_ids.update(v for v in store.events.columns["event_id"][events_before:] if v is not None)
            store.duplicate_events = int(manifest.get("duplicate_events", 0))
        for table, read in segments.items():
            singles = self._single_rows.setdefault(table, {})
            for first, end, t in read:
                if first == end:
                    singles[end] = t.num_rows
                else:                           # a merge takes in no segment before its last again
                    for n in [n for n in singles if n <= end]:
                        del singles[n]
                self._last_part[table] = end

    def _new_files(self, last: int | None, merges: int) -> dict[str, list[tuple[int, int, int, str]]]:
        """Per table, the files to read, in order, as (first flush, last flush, rows to skip,
        name): following a live recording (``last``, the manifest's
        last complete flush) with no merge since the last refresh, the segments after the last
        flush looked at, looked up by name (a refresh costs what is new, not what the directories
        hold); else every file after what was read, by listing the directories (a merged file
        in place of the segments it holds, less the rows read from those already)."""
        tables = (*COLUMN_TABLES, "frames")
        if last is not None and merges == self._merges:
            numbers = range(self._scanned + 1, last + 1)
            found: dict[str, list[tuple[int, int, int, str]]] = {}
            for table in tables:
                names = [(n, f"part-{n:06d}.parquet") for n in numbers]
                found[table] = [(n, n, 0, name) for n, name in names if (self.path / table / name).exists()]
            return found
        found = {}
        for table in tables:
            done = self._last_part.get(table, 0)
            singles = self._single_rows.get(table, {})
            chosen, covered = [], done
            for first, end, name in sorted(_segment_files(self.path / table), key=lambda f: (f[0], -f[1])):
                if end <= covered or (last is not None and end > last):
                    continue
                skip = sum(rows for n, rows in singles.items() if first <= n <= done) if first <= done else 0
                chosen.append((first, end, skip, name))
                covered = end
            found[table] = chosen
        return found

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
            column = columns.columns[name]
            if name not in segment.column_names:    # a column added since this segment was written
                default = COLUMN_DEFAULTS[table][name]
                if isinstance(column, array):
                    column.frombytes(np.full(segment.num_rows, default, dtype=np.dtype(code)).tobytes())
                else:
                    column.extend([default] * segment.num_rows)
                continue
            values = segment[name]
            if isinstance(column, array):
                column.frombytes(values.to_numpy().astype(np.dtype(code)).tobytes())
            elif name in _DICT_COLUMNS.get(table, ()):
                column.extend(orjson.loads(v) for v in values.to_pylist())
            else:
                column.extend(values.to_pylist())

    def _append_frames(self, segment: pa.Table) -> None:
        store = self.store
        fields = {name: segment[name].to_numpy().astype(FRAME_DTYPE[name], copy=False)
                  for name in FRAME_DTYPE.names or ()}
        ok = _payload_on_disk(fields, self._sizes("frames", len(store._frame_payloads)))
        torn = len(ok) - int(ok.sum())
        if torn:
            self.torn_rows += torn
            fields = {name: values[ok] for name, values in fields.items()}
        if not store.frames:        # the columns at hand are what the first frames read would decode
            store.seed_frame_fields(fields)
        store.frames += _packed_frames(fields).data       # not tobytes(): one copy fewer


def _payload_on_disk(fields: Mapping[str, np.ndarray], sizes: np.ndarray) -> np.ndarray:
    """Per ``frames`` row (``fields``: each ``FRAME_DTYPE`` field), whether its payload bytes
    are in the payload file of its key, of ``sizes`` bytes (:meth:`Follower._sizes`), checked
    ``_PACK_ROWS`` rows at a time (the temporaries stay small and in the CPU caches)."""
    ok = np.empty(len(fields["received_ns"]), dtype=bool)
    for start in range(0, len(ok), _PACK_ROWS):
        rows = slice(start, start + _PACK_ROWS)
        key = 2 * fields["stream"][rows].astype(np.int64) + fields["track"][rows]
        np.less_equal(fields["offset"][rows] + fields["n_bytes"][rows], sizes.take(key, mode="clip"), out=ok[rows])
    return ok


def _packed_frames(fields: Mapping[str, np.ndarray]) -> np.ndarray:
    """``FRAME_DTYPE`` rows of ``fields`` (each field's values, of one length), packed
    ``_PACK_ROWS`` rows at a time: writing one field through every row, then the next, costs
    ~3x as much (each pass walks the whole packed array, out of the CPU caches)."""
    rows = np.empty(len(fields["received_ns"]), dtype=FRAME_DTYPE)
    for start in range(0, len(rows), _PACK_ROWS):
        block = rows[start:start + _PACK_ROWS]
        for name, values in fields.items():
            block[name] = values[start:start + _PACK_ROWS]
    return rows


def _read_parquet(path: Path) -> pa.Table:
    """One parquet file, read whole into memory first: a registry is replaced while its
    recording runs, and a reader that opened it twice (footer, then data) could mix two
    versions. Single-threaded: a segment holds about a second of rows, and the thread pool's
    start-up costs more than the read (about 3x on a recording's thousands of segments);
    :meth:`Follower._read_segments` reads files side by side instead."""
    return pq.ParquetFile(pa.BufferReader(path.read_bytes())).read(use_threads=False)


def _read_segment(table: str, path: Path) -> pa.Table:
    """A segment of ``table`` as :func:`_read_parquet` reads it; of ``frames``, only the columns
    reading back uses (not the recording id and calls), its labels as dictionaries."""
    if table != "frames":
        return _read_parquet(path)
    data = pa.BufferReader(path.read_bytes())
    footer = pq.read_metadata(data)
    names = footer.schema.to_arrow_schema().names
    labels = list(_FRAME_LABELS) if "stream_id" in names else []     # version 2: indexes
    return pq.ParquetFile(data, metadata=footer, read_dictionary=labels).read(
        [name for name in names if name in _FRAME_READ], use_threads=False)


def _runs(tables: list[pa.Table]) -> list[pa.Table]:
    """Consecutive tables with the same columns, concatenated (a resumed recording of an older
    version holds segments of both)."""
    runs: list[list[pa.Table]] = []
    for table in tables:
        if runs and runs[-1][0].schema == table.schema:
            runs[-1].append(table)
        else:
            runs.append([table])
    return [pa.concat_tables(run) for run in runs]


def _read_registry(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = _read_parquet(path).to_pylist()
    return rows
