"""Talk time from a call's audio, and its final transcripts on the audio's timeline.

:func:`talk_time` (``tnb.quality.talk_time``) runs an energy voice-activity detector over each
track of a call's audio, as ``rx.audio(ccid, "both")`` aligns the two tracks, and sums speech,
silence, overlap and pauses; :func:`script_times` places transcripts at the audio time of
their words when a word-timed script of the call is known (the sandbox's ``sb.script(ccid)``).

**The detector** (vectorised numpy over 20 ms frames, ``wire.media.FRAME_MS``): a frame's
level is its RMS in dBFS (0 dB = a full-scale square wave, digital silence -inf). A frame is
speech when its level is above ``max(floor_dbfs, min(noise + snr_db, peak - snr_db))``,
``noise`` being the ``noise_percentile``-th percentile of the track's frame levels (an adaptive
noise floor: on a conversation's track somebody else talks much of the time) and ``peak`` its
loudest frame (so a track that never falls silent is all talk, not all noise). Runs of speech frames shorter than
``min_speech_s`` are dropped (clicks); then pauses shorter than ``hangover_s`` are bridged, so
a sentence's word gaps do not split it. A segment starts at its first speech frame and ends at
its last (the hangover bridges pauses, it adds no time at the end). Any sound that loud counts:
a tone, music or loud noise is "talk" to an energy detector. Defaults and units:
``telnyx_nb.defaults`` (``VAD_*``).

**Call time.** ``start_s``/``end_s`` columns are seconds since the first sample of the call's
audio (``rx.audio(ccid, "both").start``, the UTC time in ``start``/``end`` minus that); every
table also has the UTC instants, which compare across sources (``sb.script`` gives both).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from telnyx_nb import defaults
from telnyx_nb.audio import Audio
from telnyx_nb.wire.media import FRAME_MS

__all__ = ["TalkTime", "talk_time", "script_times", "speech_segments", "Tables", "require_tables", "SUMMARY_COLUMNS",
           "SEGMENT_COLUMNS", "UTTERANCE_COLUMNS"]

#: Columns of ``TalkTime.summary``, in order.
SUMMARY_COLUMNS = ["call_control_id", "track", "source", "duration_s", "talk_s", "silence_s", "talk_fraction",
                   "talk_share", "overlap_s", "longest_silence_s", "longest_dead_air_s", "segments", "words", "wpm"]
#: Columns of ``TalkTime.segments``, in order.
SEGMENT_COLUMNS = ["call_control_id", "track", "segment", "start", "end", "start_s", "end_s", "duration_s"]
#: Columns of ``TalkTime.utterances``, in order.
_SCRIPT_COLUMNS = {"call_control_id", "track", "utterance", "word_index", "word", "start_at", "end_at"}
UTTERANCE_COLUMNS = ["call_control_id", "track", "received_at", "transcript", "confidence", "words", "start", "end",
                     "start_s", "end_s", "duration_s", "wpm"]
_TRACKS = ("inbound", "outbound")
_FORK_TRACKS = {"rx": "inbound", "tx": "outbound"}
_FULL_SCALE_DB = 20 * np.log10(32768.0)
_SILENT_DB = -200.0                     # the level of digital silence (instead of -inf)
_BLOCK_FRAMES = 1 << 14                 # frames squared at a time: bounded memory on an hour of audio
_TOKEN = re.compile(r"\w+")


class Tables(Protocol):
    """What the analytics read: a live ``Receiver`` or a loaded session (``tnb.load``)."""

    @property
    def frames(self) -> pd.DataFrame: ...
    @property
    def rtp(self) -> pd.DataFrame: ...
    @property
    def transcripts(self) -> pd.DataFrame: ...
    @property
    def events(self) -> pd.DataFrame: ...
    @property
    def commands(self) -> pd.DataFrame: ...
    @property
    def streams(self) -> pd.DataFrame: ...
    @property
    def marks(self) -> pd.DataFrame: ...

    def audio(self, call_control_id: str | None = None, track: str | None = None, source: str | None = None
              ) -> Audio: ...


def require_tables(rx_or_session: object) -> None:
    """Raise TypeError unless ``rx_or_session`` is what the analytics read (:class:`Tables`):
    a ``Receiver`` or a loaded session. Looks at its class only (reading a table costs)."""
    kind = type(rx_or_session)
    if not all(hasattr(kind, name) for name in ("frames", "rtp", "transcripts", "events", "commands", "audio")):
        raise TypeError(f"expected a Receiver or a session (tnb.load), got {kind.__name__}")


@dataclass(frozen=True)
class TalkTime:
    """What :func:`talk_time` returns: three tidy DataFrames (columns in the function's docstring)."""

    summary: pd.DataFrame
    segments: pd.DataFrame
    utterances: pd.DataFrame

    def _repr_html_(self) -> str:
        return str(self.summary._repr_html_())


def frame_levels(samples: np.ndarray, frame: int) -> np.ndarray:
    """RMS level (dBFS, float64) of each whole ``frame``-sample frame of 1-D int16 ``samples``;
    digital silence is -200 dBFS. A last partial frame is left out."""
    n = len(samples) // frame
    energy = np.empty(n, dtype=np.float64)
    for first in range(0, n, _BLOCK_FRAMES):
        last = min(n, first + _BLOCK_FRAMES)
        block = samples[first * frame:last * frame].reshape(-1, frame).astype(np.float32)
        energy[first:last] = np.einsum("ij,ij->i", block, block, dtype=np.float64) / frame
    with np.errstate(divide="ignore"):
        levels = 10 * np.log10(energy) - _FULL_SCALE_DB
    return np.maximum(levels, _SILENT_DB)


def _runs(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in a boolean array."""
    edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def speech_segments(levels: np.ndarray, frame_s: float, *, floor_dbfs: float = defaults.VAD_FLOOR_DBFS,
                    snr_db: float = defaults.VAD_SNR_DB, noise_percentile: float = defaults.VAD_NOISE_PERCENTILE,
                    hangover_s: float = defaults.VAD_HANGOVER_S, min_speech_s: float = defaults.VAD_MIN_SPEECH_S
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The detector (module docstring) over frame ``levels`` (dBFS) of ``frame_s`` seconds each:
    start and end (exclusive) frame indices of each talk segment, int64 arrays."""
    if not len(levels):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    noise, peak = float(np.percentile(levels, noise_percentile)), float(levels.max())
    threshold = max(floor_dbfs, min(noise + snr_db, peak - snr_db))
    starts, ends = _runs(levels > threshold)
    keep = (ends - starts) * frame_s >= min_speech_s - 1e-9
    starts, ends = starts[keep], ends[keep]
    if len(starts) < 2:
        return starts.astype(np.int64), ends.astype(np.int64)
    split = (starts[1:] - ends[:-1]) * frame_s >= hangover_s - 1e-9
    first, last = np.concatenate(([True], split)), np.concatenate((split, [True]))
    return starts[first].astype(np.int64), ends[last].astype(np.int64)


def _mask(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, starts, 1)
    np.add.at(marks, ends, -1)
    return np.cumsum(marks[:-1]) > 0


def _longest_gap(mask: np.ndarray) -> int:
    starts, ends = _runs(~mask)
    return int((ends - starts).max()) if len(starts) else 0


def _tokens(text: object) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.lower())) if isinstance(text, str) else ()


def _word_count(text: object) -> int:
    """Words of a transcript: its whitespace-separated parts with a letter or digit ("it's" and
    "3:15" are one word each, as the sandbox's script splits them; a lone dash is none)."""
    return sum(1 for part in text.split() if _TOKEN.search(part)) if isinstance(text, str) else 0


def script_times(transcripts: pd.DataFrame, script: pd.DataFrame | None) -> pd.DataFrame:
    """The audio time of each transcript's words, from a word-timed ``script`` (``sb.script``):
    a DataFrame on ``transcripts``' index with ``start`` (the first word of its utterance) and
    ``end`` (its last word heard: an interim result's last word, a final's last), both
    ``datetime64[ns, UTC]``, NaT where unknown (no script: real Telnyx).

    A transcript matches an utterance of its call and track (any track when the transcript has
    none) whose words start with its words (a final: are its words), compared as lower-case
    word characters; of several, the latest whose word ended before the transcript arrived.
    Raises ValueError when ``script`` lacks the columns of ``sb.script``.
    """
    out = pd.DataFrame({"start": pd.Series(pd.NaT, index=transcripts.index, dtype="datetime64[ns, UTC]")})
    out["end"] = out["start"]
    if script is None or script.empty or transcripts.empty:
        return out
    if not set(script.columns) >= _SCRIPT_COLUMNS:
        raise ValueError(f"script must be word timing as sb.script(ccid) gives it (columns {sorted(_SCRIPT_COLUMNS)}); "
                         f"got columns {list(script.columns)}")
    ordered = script.sort_values(["call_control_id", "utterance", "word_index"], kind="stable")
    utterances: dict[tuple[str, str], list[tuple[tuple[str, ...], list[int], int]]] = {}
    for (ccid, track, _), words in ordered.groupby(["call_control_id", "track", "utterance"], observed=True,
                                                   sort=False):
        said: list[str] = []
        ends: list[int] = []
        for word, end in zip(words["word"], words["end_at"].array.asi8.tolist(), strict=True):
            for token in _tokens(word):          # "3:15" speaks two tokens; both end with the word
                said.append(token)
                ends.append(end)
        utterances.setdefault((str(ccid), str(track)), []).append(
            (tuple(said), ends, int(words["start_at"].array.asi8[0])))
    starts, stops = np.full(len(transcripts), pd.NaT.value), np.full(len(transcripts), pd.NaT.value)
    for i, (ccid, track, text, final, received) in enumerate(zip(
            transcripts["call_control_id"], transcripts["track"], transcripts["transcript"], transcripts["is_final"],
            transcripts["received_at"].array.asi8, strict=True)):
        heard = _tokens(text)
        tracks = (track,) if isinstance(track, str) else _TRACKS
        best = None
        for t in tracks:
            for tokens, word_ends, first in utterances.get((str(ccid), t), ()):
                if not heard or tokens[:len(heard)] != heard or (final and len(tokens) != len(heard)):
                    continue
                end = word_ends[len(heard) - 1]
                if best is None or (end <= received and (best[1] > received or end > best[1])):
                    best = (first, end)
        if best is not None:
            starts[i], stops[i] = best
    out["start"] = pd.to_datetime(starts, utc=True).astype("datetime64[ns, UTC]")
    out["end"] = pd.to_datetime(stops, utc=True).astype("datetime64[ns, UTC]")
    return out


def _calls(rx: Tables, call_control_id: str | None, source: str | None) -> list[tuple[str, str, list[str]]]:
    """(call, source, tracks with audio) for each call to analyse."""
    frames, rtp = rx.frames, rx.rtp
    stream_tracks = {str(c): sorted(map(str, g.unique()))
                     for c, g in frames.groupby("call_control_id", observed=True)["track"]}
    fork_tracks = {str(c): sorted(_FORK_TRACKS[str(t)] for t in g.unique())
                   for c, g in rtp.groupby("call_control_id", observed=True)["target"]}
    calls = [call_control_id] if call_control_id is not None else sorted({*stream_tracks, *fork_tracks})
    found = []
    for ccid in calls:
        use = source or ("stream" if ccid in stream_tracks else "fork")
        tracks = (stream_tracks if use == "stream" else fork_tracks).get(ccid)
        if tracks:
            found.append((ccid, use, tracks))
        elif call_control_id is not None:
            raise LookupError(f"no {source or 'stream or fork'} audio for call {ccid!r}")
    return found


def talk_time(rx_or_session: Tables, call_control_id: str | None = None, *, source: str | None = None,
              script: pd.DataFrame | None = None, floor_dbfs: float = defaults.VAD_FLOOR_DBFS,
              snr_db: float = defaults.VAD_SNR_DB, noise_percentile: float = defaults.VAD_NOISE_PERCENTILE,
              hangover_s: float = defaults.VAD_HANGOVER_S, min_speech_s: float = defaults.VAD_MIN_SPEECH_S
              ) -> TalkTime:
    """Who talked when, per call and track, from the audio; and the final transcripts on it.

    ``rx_or_session``: a Receiver or a loaded session. ``call_control_id``: one call (else
    every call with audio). ``source``: "stream" (WebSocket frames) or "fork" (RTP: rx is
    inbound, tx outbound); default the call's stream if it has one, else its fork. ``script``:
    word times of the calls (``sb.script(ccid)``, or several concatenated) to place transcripts
    on the audio (:func:`script_times`); without one their audio time is NaT. The detector's
    parameters (module docstring) default to ``telnyx_nb.defaults.VAD_*``.

    Returns :class:`TalkTime` with three DataFrames:

    - ``summary``, one row per call and track with audio: ``call_control_id``, ``track``
      ("inbound"/"outbound"; category), ``source``, ``duration_s`` (the aligned audio's
      length), ``talk_s``, ``silence_s`` (= duration - talk), ``talk_fraction`` (talk/duration),
      ``talk_share`` (this track's part of the call's talk, NaN when nobody talked or only one
      track was received),
      ``overlap_s`` (both tracks talking; NaN with one track), ``longest_silence_s`` (this track
      not talking), ``longest_dead_air_s`` (neither talking; the track's silence with one
      track), ``segments`` (int64), ``words`` (Int64: words of its final transcripts, split at
      white space as the script is; NA when the track has none — Telnyx transcribes the
      inbound track only unless ``transcription_tracks`` says "outbound" or "both"), ``wpm``
      (those words per minute of the talk they cover: the track's talk segments that start
      before its last final transcript's words were heard — their end in ``script``, else the
      transcript's arrival — so on a call in progress the talk whose transcript has not come yet
      is left out; NaN without words). Seconds are float64.
    - ``segments``, one row per talk segment: ``call_control_id``, ``track``, ``segment``
      (int64, from 0 per track), ``start``/``end`` (``datetime64[ns, UTC]``), ``start_s``/
      ``end_s``/``duration_s`` (float64, call time: seconds since the call's first sample, not
      since the answer as ``sb.script``'s ``start_s``: compare the two by ``start``).
    - ``utterances``, the final transcripts of those calls: ``call_control_id``, ``track``,
      ``received_at``, ``transcript``, ``confidence``, ``words`` (int64, as above), ``start``/``end``
      (the audio time of its words from ``script``, NaT without), ``start_s``/``end_s``/
      ``duration_s`` (call time, NaN where unknown), ``wpm`` (words per minute of that span).

    Raises LookupError when ``call_control_id`` has no audio from ``source``, ValueError for a
    detector parameter that is not finite (or negative, or a percentile outside 0-100), for a
    ``script`` without ``sb.script``'s columns and for a call whose audio has under one sample
    per 20 ms frame (a stream that declared a sample rate under 50 Hz), TypeError for anything but a
    Receiver or a session.
    """
    require_tables(rx_or_session)
    frame_s = FRAME_MS / 1000
    detector = dict(floor_dbfs=floor_dbfs, snr_db=snr_db, noise_percentile=noise_percentile, hangover_s=hangover_s,
                    min_speech_s=min_speech_s)
    for name, value in detector.items():
        if not math.isfinite(value) or (name in ("hangover_s", "min_speech_s", "snr_db") and value < 0) \
                or (name == "noise_percentile" and not 0 <= value <= 100):
            raise ValueError(f"{name} must be a finite number{'' if name == 'floor_dbfs' else ' >= 0'}"
                             f"{' (0-100)' if name == 'noise_percentile' else ''}, got {value!r}")

    rows: list[dict[str, Any]] = []
    segments: list[pd.DataFrame] = []
    origins: dict[str, int] = {}
    transcripts = rx_or_session.transcripts
    finals = transcripts[transcripts["is_final"].astype(bool)]
    if call_control_id is not None:
        finals = finals[finals["call_control_id"] == call_control_id]
    times = script_times(finals, script)
    counts = np.asarray([_word_count(t) for t in finals["transcript"]], dtype=np.int64)
    heard = times["end"].array.asi8.copy()               # each final's words heard by: the script's end,
    unknown = times["end"].isna().to_numpy()             # else the final's arrival (Telnyx sends it after them)
    heard[unknown] = finals["received_at"].array.asi8[unknown]
    final_calls, final_tracks = finals["call_control_id"].astype(object), finals["track"].astype(object)
    for ccid, use, tracks in _calls(rx_or_session, call_control_id, source):
        audio = rx_or_session.audio(ccid, "both", use)
        assert audio.start is not None
        origins[ccid] = audio.start.value
        frame = round(audio.rate * frame_s)
        if frame < 1:
            raise ValueError(f"call {ccid!r}: its audio runs at {audio.rate} Hz, under one sample per "
                             f"{FRAME_MS} ms frame; pass another call_control_id for the other calls")
        n = len(audio.samples) // frame
        masks, found = {}, {}
        for channel, track in enumerate(_TRACKS):
            if track not in tracks:
                continue
            found[track] = speech_segments(frame_levels(np.ascontiguousarray(audio.samples[:, channel]), frame),
                                           frame_s, **detector)
            masks[track] = _mask(*found[track], n)
        both = np.logical_and.reduce(list(masks.values())) if len(masks) == 2 else None
        anyone = np.logical_or.reduce(list(masks.values()))
        talk_total = sum(int(m.sum()) for m in masks.values()) * frame_s
        for track, mask in masks.items():
            talk = int(mask.sum()) * frame_s
            mine = ((final_calls == ccid) & (final_tracks == track)).to_numpy()
            words = int(counts[mine].sum()) if mine.any() else None
            transcribed = 0.0
            if words is not None:
                starts, ends = found[track]
                before = starts * frame_s * 1e9 < heard[mine].max() - audio.start.value
                transcribed = float((ends - starts)[before].sum()) * frame_s
            rows.append(dict(
                call_control_id=ccid, track=track, source=use, duration_s=n * frame_s, talk_s=talk,
                silence_s=(n - int(mask.sum())) * frame_s, talk_fraction=talk / (n * frame_s) if n else np.nan,
                talk_share=talk / talk_total if talk_total and both is not None else np.nan,
                overlap_s=int(both.sum()) * frame_s if both is not None else np.nan,
                longest_silence_s=_longest_gap(mask) * frame_s, longest_dead_air_s=_longest_gap(anyone) * frame_s,
                segments=len(found[track][0]), words=words,
                wpm=words / (transcribed / 60) if words is not None and transcribed else np.nan))
            starts, ends = found[track]
            segments.append(pd.DataFrame({
                "call_control_id": ccid, "track": track, "segment": np.arange(len(starts), dtype=np.int64),
                "start_s": starts * frame_s, "end_s": ends * frame_s}))
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["words"] = summary["words"].astype("Int64")
    summary["segments"] = summary["segments"].astype(np.int64)
    for col in ("duration_s", "talk_s", "silence_s", "talk_fraction", "talk_share", "overlap_s", "longest_silence_s",
                "longest_dead_air_s", "wpm"):
        summary[col] = summary[col].astype(np.float64)
    segs = pd.concat(segments, ignore_index=True) if segments else pd.DataFrame(
        {"call_control_id": [], "track": [], "segment": np.zeros(0, np.int64), "start_s": [], "end_s": []})
    origin = segs["call_control_id"].astype(object).map(origins).to_numpy(np.int64)
    segs["start"] = _utc(origin + np.round(segs["start_s"].to_numpy(np.float64) * 1e9).astype(np.int64))
    segs["end"] = _utc(origin + np.round(segs["end_s"].to_numpy(np.float64) * 1e9).astype(np.int64))
    segs["duration_s"] = segs["end_s"] - segs["start_s"]
    segs = _labels(segs[SEGMENT_COLUMNS].astype({"start_s": np.float64, "end_s": np.float64, "duration_s": np.float64}))
    return TalkTime(_labels(summary), segs, _utterances(finals, times, counts, origins))


def _utterances(finals: pd.DataFrame, times: pd.DataFrame, counts: np.ndarray, origins: dict[str, int]
                ) -> pd.DataFrame:
    """The utterances table: the finals of the calls analysed (``origins``), with their script
    times and word counts (``times`` and ``counts`` row for row with ``finals``)."""
    keep = finals["call_control_id"].isin(list(origins)).to_numpy()
    finals, times, counts = finals[keep], times[keep], counts[keep]
    origin = finals["call_control_id"].astype(object).map(origins).astype(np.float64).to_numpy()
    out = pd.DataFrame({
        "call_control_id": finals["call_control_id"].astype(object), "track": finals["track"].astype(object),
        "received_at": finals["received_at"], "transcript": finals["transcript"].astype(object),
        "confidence": finals["confidence"].astype(np.float64),
        "words": counts,
        "start": times["start"], "end": times["end"],
    })
    for col in ("start", "end"):
        ns = out[col].array.asi8.astype(np.float64)
        ns[out[col].isna().to_numpy()] = np.nan
        out[f"{col}_s"] = (ns - origin) / 1e9
    out["duration_s"] = out["end_s"] - out["start_s"]
    out["wpm"] = out["words"] / (out["duration_s"] / 60)
    return _labels(out[UTTERANCE_COLUMNS].reset_index(drop=True))


def _utc(ns: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(ns, utc=True)).astype("datetime64[ns, UTC]")


def _labels(df: pd.DataFrame) -> pd.DataFrame:
    """Label and id columns as ``category`` with string categories (the tables' convention)."""
    for col in ("call_control_id", "track", "source"):
        if col in df:
            df[col] = df[col].astype(object).astype("category")
    return df
