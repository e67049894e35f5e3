"""The read side shared by a live :class:`~telnyx_nb.Receiver` and a loaded session.

:class:`Session` turns the store's internal tables into the public ones (``events``,
``frames``, ...), and serves ``audio()``, ``quality()`` and ``save()``: the same accessors on a
receiver and on a session read back with :func:`load`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from telnyx_nb import pcap
from telnyx_nb.audio import Audio, Timeline, assemble_fork, assemble_stream, fork_payload_kinds, join, stack
from telnyx_nb.errors import TelnyxNbError
from telnyx_nb.quality import quality
from telnyx_nb.reprs import html_card
from telnyx_nb.store import Store, legacy, recording
from telnyx_nb.store.redact import redact_recording
from telnyx_nb.store.schema import FORK_TRACK, TABLES, TRACKS
from telnyx_nb.store.tables import sources_view
from telnyx_nb.udp import SOCKET_READ
from telnyx_nb.wire import codecs
from telnyx_nb.wire.rtp import RtpPacket, build_rtp

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

    def _payload_view(self, kind: str, key: int) -> memoryview:
        """:meth:`_payload` for a reader that looks at part of it (a recording's file is mapped)."""
        return memoryview(self._payload(kind, key))

    def _public(self, name: str) -> pd.DataFrame:
        """The table without its internal ``_`` columns. Label and id columns
        (``schema.LABEL_COLUMNS``) are ``category`` with string categories, here and in the
        internal views, so no read builds a Python string per row."""
        df = self._table(name)
        return df[[col for col in df.columns if not col.startswith("_")]]

    #: The tables whose row counts a notebook shows (``_repr_html_``).
    _REPR_TABLES = ("events", "transcripts", "frames", "rtp", "streams", "commands")

    def _repr_rows(self) -> list[tuple[str, object]]:
        """Rows above the table sizes in the notebook repr: a subclass's state and addresses."""
        return []

    def _repr_html_(self) -> str:
        """In a notebook: what ``repr`` says, the state and addresses, and each table's rows."""
        sizes = [(f"{name} rows", f"{len(self._table(name)):,}") for name in self._REPR_TABLES]
        return html_card(repr(self).strip("<>"), [*self._repr_rows(), *sizes])

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
    def sources(self) -> pd.DataFrame:
        """One row per forked RTP source (target, SSRC), unattributed ones included (null
        ``call_control_id``): how each was attributed, packets, first/last arrival and sequence
        number, sender and fork-port addresses (see ``store.tables.sources_view``). An
        unattributed source's packets are the ``rtp`` rows with its ``ssrc`` and a null
        ``call_control_id``; ``quality()`` has a row per SSRC either way."""
        return self._public("sources")

    @property
    def streams(self) -> pd.DataFrame:
        """One row per media stream: ids, times, media format, custom parameters, auth, and
        ``bidirectional_codec``/``bidirectional_rate``: what Telnyx expects audio sent back in,
        from the recorded command that asked for the stream ("MP3" and null in mp3 mode; null
        when no recorded command did; see ``store.commands``)."""
        return self._public("streams")

    @property
    def commands(self) -> pd.DataFrame:
        """Every Call Control command the ``telnyx_nb`` helpers sent (``tnb.dial``,
        ``tnb.start_streaming``, ...): command, call_control_id, options (secrets masked),
        sent_at, answered_at, status ("sent"/"ok"/"rejected"/"failed"), command_id,
        http_status, error (see ``store.commands``)."""
        return self._public("commands")

    @property
    def dtmf(self) -> pd.DataFrame:
        """DTMF digits: media streams' ``dtmf`` frames (``source`` "stream") and forked RFC 4733
        telephone events (``source`` "fork": one row per event, its first packet's arrival and
        sequence number, ``ssrc``, ``duration_ms``, ``end`` False when its end packets were all
        lost; ``stream_id`` is null and ``call_control_id`` that of its source)."""
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

    def quality(self, by: str | None = None) -> pd.DataFrame:
        """Loss, duplicates, reordering, jitter, MOS, loss and arrival bursts and codec mismatch per
        stream track and RTP source; ``by="call"``: one row per call (see :mod:`telnyx_nb.quality`)."""
        return quality(self._table("frames"), self._table("rtp"), by=by, payload=self._payload_view)

    def audio(self, call_control_id: str | None = None, track: str | None = None, source: str | None = None, *,
              encoding: str | None = None, ssrc: int | None = None) -> Audio:
        """A call's audio on its media timeline, as :class:`Audio` (``call_control_id`` may also
        be a stream id).

        ``source="stream"`` (the default): WebSocket frames, track "inbound" (default) or
        "outbound", codec and rate from each stream's ``start.media_format`` (a stream that
        never sent ``start`` needs ``encoding=``; its rate is then the codec's).
        ``source="fork"``: forked RTP, track "rx" (default) or "tx" ("inbound"/"outbound" are
        accepted as rx/tx), codec from the payload type. ``track="both"``: the two tracks
        time-aligned as two channels (``samples`` of shape ``(n, 2)``). ``ssrc=``: one RTP
        source (attributed to a call or not; implies ``source="fork"``; then ``call_control_id``
        may be None and any target matches unless ``track`` names one). ``encoding`` overrides
        the codec (of every forked payload type but telephone events and comfort noise).

        Placement is by media time (``telnyx_nb.audio``): within a stream by ``chunk`` (and
        ``timestamp``), within an SSRC by RTP timestamp, only audio payload types decoded
        (telephone events are in ``dtmf``, comfort noise fills its period, other payload types
        are counted in ``Audio.left_out``); a call's streams or SSRCs are joined on one
        timeline. ``Audio.start`` is the UTC time of the first sample.
        Raises LookupError when nothing matches, ValueError for a bad argument or for
        streams of one call with different sample rates.
        """
        if source is None:
            source = "fork" if ssrc is not None else "stream"
        if source not in ("stream", "fork"):
            raise ValueError(f"source must be 'stream' or 'fork', got {source!r}")
        if ssrc is not None and source != "fork":
            raise ValueError("ssrc= selects forked RTP: pass source='fork'")
        if call_control_id is None and ssrc is None:
            raise ValueError("pass a call_control_id (or a stream id), or ssrc= for a forked RTP source")
        who = repr(call_control_id) if ssrc is None else f"SSRC {ssrc}"
        if track == "both":
            tracks = ("inbound", "outbound") if source == "stream" else ("rx", "tx")
            timelines = [self._timeline(call_control_id, t, source, encoding, ssrc) for t in tracks]
            if all(t is None for t in timelines):
                raise LookupError(f"no {source} audio on either track for {who}")
            return stack(timelines)
        if track is None and not (source == "fork" and ssrc is not None):
            track = "inbound" if source == "stream" else "rx"
        timeline = self._timeline(call_control_id, track, source, encoding, ssrc)
        if timeline is None:
            raise LookupError(f"no {source} {track or ''} audio for {who}".replace("  ", " "))
        return timeline.audio()

    def _timeline(self, call_control_id: str | None, track: str | None, source: str, encoding: str | None,
                  ssrc: int | None) -> Timeline | None:
        """One track of a call (or an SSRC) joined on one timeline; None when no row matches."""
        byteorder = self._l16_byteorder
        if source == "stream":
            if track not in TRACKS:
                raise ValueError(f"stream track must be one of {list(TRACKS)} or 'both', got {track!r}")
            table = self._table("frames")
            rows = table[((table["call_control_id"] == call_control_id) | (table["stream_id"] == call_control_id))
                         & (table["track"] == track)]
            if rows.empty:
                return None
            pieces = []
            for key, group in rows.groupby("_key", sort=False):
                name = encoding or group["encoding"].iloc[0]
                if not isinstance(name, str):
                    raise LookupError(f"unknown encoding for stream {group['stream_id'].iloc[0]!r} (it sent no "
                                      "'start'); pass encoding=")
                codec = codecs.get_codec(name, l16_byteorder=byteorder)
                rate = group["sample_rate"].iloc[0]
                piece = assemble_stream(
                    group["chunk"].to_numpy(np.int64), group["timestamp"].to_numpy(np.int64),
                    group["_offset"].to_numpy(np.int64), group["n_bytes"].to_numpy(np.int64), _ns(group["received_at"]),
                    self._payload("frames", int(key)), codec, int(rate) if pd.notna(rate) else codec.sample_rate)
                if piece is not None:
                    pieces.append(piece)
            return join(pieces) if pieces else None
        if track is not None and track not in FORK_TRACK:
            raise ValueError(f"fork track must be one of {sorted(FORK_TRACK)} or 'both', got {track!r}")
        table = self._table("rtp")
        match = np.ones(len(table), dtype=bool)
        if call_control_id is not None:
            match &= (table["call_control_id"] == call_control_id).to_numpy(bool)
        if track is not None:
            match &= (table["target"] == FORK_TRACK[track]).to_numpy(bool)
        if ssrc is not None:
            match &= (table["ssrc"] == ssrc).to_numpy(bool)
        rows = table[match]
        if rows.empty:
            return None
        types = rows[["payload_type", "encoding"]].drop_duplicates("payload_type")
        kinds = fork_payload_kinds(dict(zip(types["payload_type"].tolist(), types["encoding"].tolist(), strict=True)),
                                   encoding, byteorder)
        pieces, left_out = [], Counter[int]()
        for key, group in rows.groupby("_key", sort=False):
            piece = assemble_fork(
                group["seq"].to_numpy(np.int64), group["rtp_timestamp"].to_numpy(np.int64),
                group["payload_type"].to_numpy(np.int64), group["marker"].to_numpy(bool),
                group["_offset"].to_numpy(np.int64), group["n_bytes"].to_numpy(np.int64), _ns(group["received_at"]),
                self._payload("rtp", int(key)), *kinds)
            if piece is None:
                left_out.update(Counter(group["payload_type"].to_numpy(np.int64).tolist()))
            else:
                pieces.append(piece)
        if not pieces:
            types = sorted(left_out)
            raise LookupError(f"no audio payload type in forked RTP of {call_control_id if ssrc is None else ssrc!r} "
                              f"(payload types {types}: unknown encoding); pass encoding= or the receiver's "
                              "payload_types")
        return join(pieces)

    def to_pcap(self, path: str | PathLike[str], call_control_id: str | None = None) -> Path:
        """Write the forked RTP (of one call, or all of it) as a pcap file that Wireshark and
        tshark open; returns its path.

        One packet per ``rtp`` row, in arrival order, stamped with its ``received_at`` (the
        kernel's receive time where ``clocks["rtp"]`` is "kernel") at nanosecond resolution;
        IPv4/IPv6 and UDP headers carry the sender's address and the fork port it came to
        (``sources``), in a ``LINKTYPE_RAW`` file (see :mod:`telnyx_nb.pcap`). Each RTP packet is
        rebuilt from the stored header fields and payload (RFC 3550 §5.1: version 2, no
        padding, extension or CSRCs; a STREP header is not kept). Wireshark decodes them as RTP
        with "Decode As" on the fork port, or ``tshark -d udp.port==PORT,rtp``.
        Raises LookupError when ``call_control_id`` has no forked RTP.
        """
        rows = self._table("rtp")
        if call_control_id is not None:
            rows = rows[rows["call_control_id"] == call_control_id]
            if rows.empty:
                raise LookupError(f"no forked RTP for {call_control_id!r}")
        rows = rows.sort_values("received_at", kind="stable")
        sources = self._table("sources")
        ends = {key: ((_host(s.src_host), _port(s.src_port)), (_host(s.dst_host), _port(s.dst_port)))
                for key, s in zip(sources.index, sources.itertuples(index=False), strict=True)}
        payloads = {int(key): self._payload("rtp", int(key)) for key in rows["_key"].unique()}

        def packets() -> Iterator[tuple[int, bytes]]:
            columns = ("received_at", "_key", "ssrc", "seq", "rtp_timestamp", "payload_type", "marker", "_offset",
                       "n_bytes")
            for at, key, ssrc, seq, timestamp, pt, marker, offset, size in zip(
                    *(rows[c].to_numpy() if c != "received_at" else rows[c].array.asi8 for c in columns),
                    strict=True):
                payload = payloads[int(key)][int(offset):int(offset) + int(size)]
                packet = build_rtp(RtpPacket(int(pt), int(seq), int(timestamp), int(ssrc), payload, bool(marker)))
                src, dst = ends.get(int(key), ((None, None), (None, None)))
                yield int(at), pcap.udp_packet(src, dst, packet)

        return pcap.write(path, packets())

    @property
    def clocks(self) -> dict[str, str]:
        """What stamped each table's ``received_at``: "kernel" (the kernel's receive time of a
        datagram, see ``telnyx_nb.udp``) or "socket_read" (``time.time_ns()`` when the read returned)."""
        return dict.fromkeys(TABLES, SOCKET_READ)

    @property
    def redacted(self) -> bool:
        """True for a session saved with ``save(..., redact=True)``: its phone numbers are tokens."""
        return False

    def save(self, path: str | PathLike[str], *, overwrite: bool = False, redact: bool = False) -> Path:
        """Write everything to a recording directory (``store.recording``); :func:`load` reads it.

        ``redact``: phone numbers (``from``/``to`` values, any E.164 number in payloads, stream
        start data, command options and excerpts) are replaced by salted hashes, the same number
        by the same token within this save, so joins still hold (``store.redact``); the loaded
        session says ``redacted``. The copy is written and redacted in a temporary directory
        next to ``path`` and then renamed into place, so ``path`` never holds unredacted data.

        Raises FileExistsError when ``path`` is a non-empty directory, unless ``overwrite`` and
        it holds a telnyx_nb session or recording (anything else is never removed); OSError when
        a file cannot be written.
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

    def _payload_view(self, kind: str, key: int) -> memoryview:
        return self._store.payload_view(kind, key)

    def save(self, path: str | PathLike[str], *, overwrite: bool = False, redact: bool = False) -> Path:
        root = Path(path)
        if root.exists() and any(root.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True to replace it")
            if not (recording.is_recording(root) or legacy.is_session(root)):
                raise FileExistsError(f"{root} is not a telnyx_nb session or recording: not replacing it")
            shutil.rmtree(root)
        if not redact:
            self._write(root)
            return root
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-redacting-", dir=root.parent))
        try:
            self._write(staging)
            redact_recording(staging)
            if root.exists():
                root.rmdir()                   # empty (checked above)
            staging.rename(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return root

    def _write(self, root: Path) -> None:
        recorder = recording.Recorder(self._store, root, l16_byteorder=self._l16_byteorder, clocks=lambda: self.clocks)
        if not recorder.flush(finished=True):
            raise OSError(recorder.error)


class RecordingSession(StoreSession):
    """A recording read back by :func:`load` (finished, or cut short by a crash)."""

    def __init__(self, root: Path) -> None:
        store, self.manifest = recording.read(root)
        byteorder: codecs.ByteOrder = "little" if self.manifest.get("l16_byteorder") == "little" else "big"
        super().__init__(store, l16_byteorder=byteorder)
        self.path = root

    def __repr__(self) -> str:
        state = "finished" if self.manifest.get("finished") else "unfinished (still recording, or cut short)"
        return f"<telnyx_nb recording {str(self.path)!r}, {state}{', redacted' if self.redacted else ''}>"

    @property
    def redacted(self) -> bool:
        return bool(self.manifest.get("redacted", False))

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
        if name == "sources":       # not saved by 0.1: the sources of its rtp rows
            return sources_view(self._tables["rtp"], [])
        if name == "commands":      # not recorded by 0.1
            return Store().table("commands")
        return self._tables[name].copy()

    def _payload(self, kind: str, key: int) -> bytes:
        return legacy.read_payload(self.path, kind, key)

    @property
    def clocks(self) -> dict[str, str]:
        return {**super().clocks, **self.manifest.get("clocks", {})}


def _ns(times: pd.Series) -> np.ndarray:
    """A ``datetime64[ns, UTC]`` column as int64 nanoseconds since the epoch."""
    return times.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _host(value: object) -> str | None:
    """A ``sources`` host (a category value: NaN when missing) as a string or None."""
    return value if isinstance(value, str) else None


def _port(value: object) -> int | None:
    return None if pd.isna(value) else int(value)  # type: ignore[call-overload]


def load(path: str | PathLike[str]) -> RecordingSession | LoadedSession:
    """Open a recording (written by ``save()`` or ``Receiver(record_to=...)``, finished or cut
    short by a crash) or a session saved by telnyx_nb 0.1.

    Raises ValueError when it is neither, or is from a newer version.
    """
    root = Path(path)
    return RecordingSession(root) if recording.is_recording(root) else LoadedSession(root)
