"""The read side shared by a live :class:`~telnyx_nb.Receiver` and a loaded session.

:class:`Session` turns the store's internal tables into the public ones (``events``,
``frames``, ...), and serves ``audio()``, ``quality()`` and ``save()``: the same accessors on a
receiver and on a session read back with :func:`load`.
"""

from __future__ import annotations

import shutil
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from telnyx_nb.audio import Audio, assemble
from telnyx_nb.errors import TelnyxNbError
from telnyx_nb.quality import quality
from telnyx_nb.store import Store, legacy, recording
from telnyx_nb.store.columns import plain
from telnyx_nb.store.schema import FORK_TRACK, TABLES
from telnyx_nb.udp import SOCKET_READ
from telnyx_nb.wire import codecs
from telnyx_nb.wire.rtp import extend_sequence

__all__ = ["Session", "StoreSession", "RecordingSession", "LoadedSession", "load"]


class Session:
    """Read accessors over a set of tables: shared by a live Receiver and a loaded session.

    Every table is a fresh DataFrame (a snapshot); times are ``datetime64[ns, UTC]``.
    """

    _l16_byteorder: codecs.ByteOrder = "big"

    def _table(self, name: str) -> pd.DataFrame:
        raise NotImplementedError

    def _payload(self, kind: str, key: int) -> bytes:
        raise NotImplementedError

    def _public(self, name: str) -> pd.DataFrame:
        """The table without its internal ``_`` columns; label columns as plain strings.

        Internally the big tables keep labels (stream id, track, ...) as Categoricals, so
        ``audio()`` and ``quality()`` never build a string per row.
        """
        df = self._table(name)
        df = df[[col for col in df.columns if not col.startswith("_")]]
        for col in df.columns:
            if isinstance(df[col].dtype, pd.CategoricalDtype):
                df[col] = plain(df[col])
        return df

    @property
    def events(self) -> pd.DataFrame:
        """Webhooks, once per event id: ..., verified, attempt, payload (dict)."""
        return self._public("events")

    @property
    def transcripts(self) -> pd.DataFrame:
        """``call.transcription`` webhooks: track, transcript, confidence, is_final."""
        return self._public("transcripts")

    @property
    def frames(self) -> pd.DataFrame:
        """WebSocket media frames (payload bytes are kept apart; see ``audio()``)."""
        return self._public("frames")

    @property
    def rtp(self) -> pd.DataFrame:
        """Forked RTP packets; ``call_control_id`` as attributed (see Store docstring)."""
        return self._public("rtp")

    @property
    def streams(self) -> pd.DataFrame:
        """One row per media stream: ids, times, media format, custom parameters, auth."""
        return self._public("streams")

    @property
    def dtmf(self) -> pd.DataFrame:
        """DTMF frames from media streams."""
        return self._public("dtmf")

    @property
    def marks(self) -> pd.DataFrame:
        """Mark echoes Telnyx sent back on media streams."""
        return self._public("marks")

    @property
    def stream_errors(self) -> pd.DataFrame:
        """Rejected WebSocket input (origin "receiver") and Telnyx ``error`` frames (origin "telnyx")."""
        return self._public("stream_errors")

    @property
    def webhook_errors(self) -> pd.DataFrame:
        """Rejected webhooks: failed signature checks and malformed bodies, with the reason."""
        return self._public("webhook_errors")

    @property
    def rtp_errors(self) -> pd.DataFrame:
        """Datagrams on the fork ports that are not RTP/STREP (hex excerpt)."""
        return self._public("rtp_errors")

    def quality(self) -> pd.DataFrame:
        """Loss, duplicates, reordering, jitter and MOS per stream track and RTP source (see quality.py)."""
        return quality(self._table("frames"), self._table("rtp"))

    def audio(self, call_control_id: str, track: str = "inbound", source: str = "stream", *,
              encoding: str | None = None) -> Audio:
        """One track of a call as :class:`Audio` (``call_control_id`` may also be a stream id).

        ``source="stream"``: WebSocket frames, track "inbound"/"outbound", codec from each
        stream's ``start.media_format``. ``source="fork"``: RTP payloads by extended sequence
        number, track "rx"/"tx" ("inbound"/"outbound" are accepted as rx/tx), codec from the
        payload type. Several streams (or SSRCs) of one call are joined in arrival order.
        ``encoding`` overrides the codec. Raises LookupError when nothing matches.
        """
        if source == "stream":
            table = self._table("frames")
            rows = table[((table["call_control_id"] == call_control_id) | (table["stream_id"] == call_control_id))
                         & (table["track"] == track)]
            kind = "frames"
        elif source == "fork":
            if track not in FORK_TRACK:
                raise ValueError(f"fork track must be one of {sorted(FORK_TRACK)}, got {track!r}")
            table = self._table("rtp")
            rows = table[(table["call_control_id"] == call_control_id) & (table["target"] == FORK_TRACK[track])]
            kind = "rtp"
        else:
            raise ValueError(f"source must be 'stream' or 'fork', got {source!r}")
        if rows.empty:
            raise LookupError(f"no {source} {track} audio for {call_control_id!r}")
        parts, rates = [], set()
        for key, group in rows.groupby("_key", sort=False):
            name = encoding or group["encoding"].iloc[0]
            if not isinstance(name, str):
                raise LookupError(f"unknown encoding for {source} {track} of {call_control_id!r}; pass encoding=")
            codec = codecs.get_codec(name, l16_byteorder=self._l16_byteorder)
            if kind == "frames":
                numbers = extend_sequence(group["chunk"].to_numpy(np.int64), modulus=None)
                rates.add(int(group["sample_rate"].iloc[0]))
            else:
                numbers = extend_sequence(group["seq"].to_numpy())
                clock_rate = group["clock_rate"].iloc[0]
                rates.add(int(clock_rate) if pd.notna(clock_rate) else codec.sample_rate)
            group = group[numbers >= 0]
            numbers = numbers[numbers >= 0]
            parts.append(assemble(numbers, group["_offset"].to_numpy(np.int64), group["n_bytes"].to_numpy(np.int64),
                                  self._payload(kind, int(key)), codec))
        if len(rates) != 1:
            raise ValueError(f"streams of {call_control_id!r} have different sample rates {sorted(rates)}")
        return Audio(np.concatenate(parts), rates.pop())

    @property
    def clocks(self) -> dict[str, str]:
        """What stamped each table's ``received_at``: "kernel" (the kernel's receive time of a
        datagram, see ``telnyx_nb.udp``) or "socket_read" (``time.time_ns()`` when the read returned)."""
        return dict.fromkeys(TABLES, SOCKET_READ)

    def save(self, path: str | PathLike[str], *, overwrite: bool = False) -> Path:
        """Write everything to a recording directory (``store.recording``); :func:`load` reads it.

        Raises FileExistsError when ``path`` is a non-empty directory, unless ``overwrite`` and
        it holds a telnyx_nb session or recording (anything else is never removed).
        """
        raise TelnyxNbError(f"{self!r} is read-only: sessions saved by telnyx_nb 0.1 cannot be saved again")


class StoreSession(Session):
    """The read side over a live :class:`~telnyx_nb.store.Store` (what a Receiver reads)."""

    def __init__(self, store: Store, *, l16_byteorder: codecs.ByteOrder = "big") -> None:
        self._store = store
        self._l16_byteorder = l16_byteorder

    def _table(self, name: str) -> pd.DataFrame:
        return self._store.table(name)

    def _payload(self, kind: str, key: int) -> bytes:
        return self._store.payload(kind, key)

    def save(self, path: str | PathLike[str], *, overwrite: bool = False) -> Path:
        root = Path(path)
        if root.exists() and any(root.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True to replace it")
            if not (recording.is_recording(root) or legacy.is_session(root)):
                raise FileExistsError(f"{root} is not a telnyx_nb session or recording: not replacing it")
            shutil.rmtree(root)
        recorder = recording.Recorder(self._store, root, l16_byteorder=self._l16_byteorder, clocks=lambda: self.clocks)
        if not recorder.flush(finished=True):
            raise OSError(recorder.error)
        return root


class RecordingSession(StoreSession):
    """A recording read back by :func:`load` (finished, or cut short by a crash)."""

    def __init__(self, root: Path) -> None:
        store, self.manifest = recording.read(root)
        byteorder: codecs.ByteOrder = "little" if self.manifest.get("l16_byteorder") == "little" else "big"
        super().__init__(store, l16_byteorder=byteorder)
        self.path = root

    def __repr__(self) -> str:
        state = "finished" if self.manifest.get("finished") else "unfinished (still recording, or cut short)"
        return f"<telnyx_nb recording {str(self.path)!r}, {state}>"

    @property
    def clocks(self) -> dict[str, str]:
        return {**super().clocks, **self.manifest.get("clocks", {})}


class LoadedSession(Session):
    """A session saved by telnyx_nb 0.1, read back by :func:`load`; read-only."""

    def __init__(self, root: Path) -> None:
        self.path = root
        self.manifest, self._tables = legacy.read(root)
        self._l16_byteorder = "little" if self.manifest.get("l16_byteorder") == "little" else "big"

    def __repr__(self) -> str:
        return f"<telnyx_nb session {str(self.path)!r}>"

    def _table(self, name: str) -> pd.DataFrame:
        return self._tables[name].copy()

    def _payload(self, kind: str, key: int) -> bytes:
        return legacy.read_payload(self.path, kind, key)

    @property
    def clocks(self) -> dict[str, str]:
        return {**super().clocks, **self.manifest.get("clocks", {})}


def load(path: str | PathLike[str]) -> RecordingSession | LoadedSession:
    """Open a recording (written by ``save()`` or ``Receiver(record_to=...)``, finished or cut
    short by a crash) or a session saved by telnyx_nb 0.1.

    Raises ValueError when it is neither, or is from a newer version.
    """
    root = Path(path)
    return RecordingSession(root) if recording.is_recording(root) else LoadedSession(root)
