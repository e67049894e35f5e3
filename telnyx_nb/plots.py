"""Matplotlib figures of calls: waveform, spectrogram, transcripts, stream quality, summaries.

Every function takes a live :class:`~telnyx_nb.Receiver` or a loaded session (``tnb.load``)
and returns a :class:`matplotlib.figure.Figure`, built without pyplot: no global state, no
window, nothing shown. It renders headless (``fig.savefig("call.png")``, Agg) and shows inline
as the last expression of a Jupyter cell (the first figure registers IPython's PNG formatter
for figures when none is registered, as ``%matplotlib inline`` does). matplotlib is imported
on the first figure, so ``import telnyx_nb.plots`` stays cheap.

**Which call.** With ``call_control_id=None`` a per-call plot shows the newest call that has
what it plots (media, or transcripts): the one whose first webhook arrived last — the only
one when there is one. Summaries cover every call.

**Call time.** A call's plots share one x axis, in seconds since the call's first webhook
arrived, on the receiver's clock (the clock of every ``received_at`` and of ``Audio.start``);
when no webhook of the call was recorded, since its first media or transcript. The figure's
title gives that origin in UTC. So the two tracks, transcripts and stream-quality series of a
call line up, and a call's plots can be compared with each other and with ``rx.events``.

Every function raises LookupError, naming what is missing, when there is nothing to plot.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from telnyx_nb import quality as analytics
from telnyx_nb.defaults import TIMELINE_MAX_BINS
from telnyx_nb.talk import require_tables

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from telnyx_nb.audio import Audio
    from telnyx_nb.session import Session

__all__ = ["waveform", "spectrogram", "transcript_timeline", "quality_timeline", "latency", "talk_time",
           "quality_summary"]

TRACKS = ("inbound", "outbound")
#: The fork target that carries each track.
FORK_TARGET = {"inbound": "rx", "outbound": "tx"}
COLOURS = {"inbound": "tab:blue", "outbound": "tab:orange"}
TIME_LABEL = "call time [s]"
AMPLITUDE_LABEL = "amplitude [full scale]"
#: A track longer than this many samples is drawn as its min–max envelope over as many columns.
MAX_POINTS = 4000
#: Spectrogram columns at most: on a long call the hop between FFT windows grows.
MAX_COLUMNS = 2000
#: Level shown as the spectrogram's floor and ceiling (dB relative to a full-scale sine).
DB_RANGE = (-100.0, 0.0)
_FULL_SCALE = 32768.0


# -- figures and calls ------------------------------------------------------------------------

def _figure(rows: int, cols: int = 1, *, sharex: bool = True) -> tuple[Figure, list[Axes]]:
    """A constrained-layout Figure (no pyplot) with ``rows`` × ``cols`` axes, in reading order."""
    from matplotlib.figure import Figure

    _register_notebook_repr(Figure)
    fig = Figure(figsize=(11, 1.4 + 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, sharex=sharex, squeeze=False)
    return fig, list(axes.ravel())


def _register_notebook_repr(figure_type: type) -> None:
    """In IPython, let a returned Figure display as PNG when no format is registered for figures
    (a figure built without pyplot has none until ``%matplotlib inline`` or a pyplot import)."""
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    formatters = shell.display_formatter.formatters
    for mime in ("image/png", "image/svg+xml", "application/pdf", "image/jpeg"):
        try:
            if mime in formatters and formatters[mime].lookup_by_type(figure_type):
                return
        except KeyError:
            continue
    from IPython.core.pylabtools import select_figure_formats

    select_figure_formats(shell, {"png"})


def _latest(session: Session, table: pd.DataFrame, what: str) -> str:
    """The newest call with ``what``: of the calls with rows in ``table``, the one whose first
    webhook arrived last (a call with no webhook counts from its first row in ``table``)."""
    rows = table.loc[table["call_control_id"].notna(), ["call_control_id", "received_at"]]
    if rows.empty:
        raise LookupError(f"no call has {what} to plot")
    began = rows.groupby(rows["call_control_id"].astype(object))["received_at"].min()
    events = session.events
    first_webhook = events.groupby(events["call_control_id"].astype(object))["received_at"].min()
    return str(first_webhook.reindex(began.index).fillna(began).idxmax())


def _media_arrivals(frames: pd.DataFrame, rtp: pd.DataFrame) -> pd.DataFrame:
    columns = ["call_control_id", "received_at"]
    return pd.concat([frames[columns].astype({"call_control_id": object}),
                      rtp[columns].astype({"call_control_id": object})], ignore_index=True)


def _origin(session: Session, call_control_id: str, fallback: pd.Timestamp) -> pd.Timestamp:
    """Call time 0: the arrival of the call's first webhook, else ``fallback``."""
    events = session.events
    arrived = events.loc[events["call_control_id"] == call_control_id, "received_at"]
    return arrived.min() if len(arrived) else fallback


@dataclass(frozen=True)
class _Call:
    """One call on its call-time axis: the origin and, when it has audio, both tracks."""

    call_control_id: str
    origin: pd.Timestamp
    source: str | None = None           # "stream" or "fork"; None without audio
    audio: Audio | None = None          # 2 channels: inbound (fork rx), outbound (fork tx)

    def seconds(self, times: pd.Series) -> np.ndarray:
        """Call time of UTC ``times``, in seconds."""
        return (times - self.origin).dt.total_seconds().to_numpy(float)

    @property
    def audio_offset(self) -> float:
        """Call time of the first audio sample, in seconds."""
        start = self.audio.start if self.audio is not None else None
        return 0.0 if start is None else (start - self.origin).total_seconds()

    def title(self, what: str) -> str:
        return (f"{what}: call {self.call_control_id}\n"
                f"call time 0 = {self.origin:%Y-%m-%d %H:%M:%S}.{self.origin.microsecond // 1000:03d} UTC")

    def track_title(self, track: str) -> str:
        if self.source == "fork":
            return f"{track} track (forked RTP, target {FORK_TARGET[track]})"
        if self.source == "stream":
            return f"{track} track (media stream)"
        return f"{track} track"


def _call_audio(session: Session, call_control_id: str | None, source: str | None) -> _Call:
    """A call's two tracks time-aligned (``source`` None: its stream, else its fork)."""
    if call_control_id is None:
        call_control_id = _latest(session, _media_arrivals(session.frames, session.rtp), "streamed or forked audio")
    failures = []
    for src in (source,) if source else ("stream", "fork"):
        try:
            audio = session.audio(call_control_id, "both", src)
        except LookupError as error:
            failures.append(str(error))
            continue
        origin = _origin(session, call_control_id, audio.start if audio.start is not None else pd.Timestamp.now("UTC"))
        return _Call(call_control_id, origin, src, audio)
    raise LookupError(f"no audio to plot for call {call_control_id!r}: {'; '.join(failures)}")


def _track_figure(call: _Call, what: str, ylabel: str) -> tuple[Figure, dict[str, Axes]]:
    """Both tracks of a call, one above the other on a shared call-time axis, labelled."""
    fig, axes = _figure(len(TRACKS))
    fig.suptitle(call.title(what))
    for track, ax in zip(TRACKS, axes, strict=True):
        ax.set_title(call.track_title(track))
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(ylabel)
    return fig, dict(zip(TRACKS, axes, strict=True))


def _legend(ax: Axes) -> None:
    """A legend beside the axes when it shows more than one series (each label once)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if len(unique) > 1:
        ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False)


def _figure_legend(fig: Figure, ax: Axes) -> None:
    """One legend for the whole figure, right of the panels, from ``ax``'s series."""
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) > 1:
        fig.legend(handles, labels, loc="outside right center", fontsize="small", frameon=False)


# -- audio ------------------------------------------------------------------------------------

def _draw_waveform(ax: Axes, call: _Call, channel: int, track: str, alpha: float = 1.0) -> None:
    """One channel against call time: every sample, or the min–max envelope of a long track."""
    assert call.audio is not None
    x = call.audio.samples[:, channel] / _FULL_SCALE
    rate, n = call.audio.rate, len(x)
    colour = COLOURS[track]
    if n <= 2 * MAX_POINTS:
        ax.plot(call.audio_offset + np.arange(n) / rate, x, lw=0.6, color=colour, alpha=alpha,
                label=f"{track} audio")
    else:
        per = -(-n // MAX_POINTS)
        columns = np.pad(x, (0, -n % per), mode="edge").reshape(-1, per)
        t = call.audio_offset + np.arange(len(columns)) * per / rate
        ax.fill_between(t, columns.min(axis=1), columns.max(axis=1), step="post", lw=0, color=colour, alpha=alpha,
                        label=f"{track} audio (min–max per {1e3 * per / rate:.0f} ms)")
    peak = max(float(np.abs(x).max(initial=0.0)) * 1.1, 0.01)
    ax.set_ylim(-peak, peak)


def waveform(rx_or_session: Session, call_control_id: str | None = None, *, source: str | None = None) -> Figure:
    """The call's inbound and outbound audio against call time (seconds), as fractions of full
    scale: every sample, or on a long call the min–max envelope per column.

    ``source``: "stream" (WebSocket media) or "fork" (forked RTP); None takes the stream, or
    the fork when the call has no stream. A missing track is silence. Raises LookupError when
    the call (or the receiver, for ``call_control_id=None``) has no audio.
    """
    require_tables(rx_or_session)
    call = _call_audio(rx_or_session, call_control_id, source)
    fig, axes = _track_figure(call, "Waveform", AMPLITUDE_LABEL)
    for channel, (track, ax) in enumerate(axes.items()):
        _draw_waveform(ax, call, channel, track)
    return fig


def _spectrum_db(x: np.ndarray, nfft: int) -> tuple[np.ndarray, int]:
    """Short-time spectrum of int16 ``x`` in dB re a full-scale sine, shape (nfft//2+1, columns),
    Hann windows every ``hop`` samples (half a window, or more to stay within MAX_COLUMNS)."""
    x = x.astype(np.float64) / _FULL_SCALE
    if len(x) < nfft:
        x = np.pad(x, (0, nfft - len(x)))
    hop = max(nfft // 2, -(-(len(x) - nfft + 1) // MAX_COLUMNS))
    windows = np.lib.stride_tricks.sliding_window_view(x, nfft)[::hop]
    hann = np.hanning(nfft)
    magnitude = np.abs(np.fft.rfft(windows * hann, axis=1)) * 2 / hann.sum()
    return 20 * np.log10(np.maximum(magnitude, 10 ** (DB_RANGE[0] / 20))).T, hop


def spectrogram(rx_or_session: Session, call_control_id: str | None = None, *, source: str | None = None,
                nfft: int = 256) -> Figure:
    """The call's inbound and outbound audio as spectrograms: frequency (Hz, up to half the
    sample rate) against call time (seconds), level in dB relative to a full-scale sine
    (dBFS, shown from -100 to 0).

    Hann windows of ``nfft`` samples (32 ms at 8 kHz) every half window, further apart on long
    calls (at most MAX_COLUMNS windows). ``source`` as in :func:`waveform`. Raises LookupError
    when there is no audio, ValueError for ``nfft`` < 16.
    """
    require_tables(rx_or_session)
    if nfft < 16:
        raise ValueError(f"nfft must be at least 16, got {nfft}")
    call = _call_audio(rx_or_session, call_control_id, source)
    assert call.audio is not None
    rate = call.audio.rate
    fig, axes = _track_figure(call, "Spectrogram", "frequency [Hz]")
    images = []
    for channel, ax in enumerate(axes.values()):
        db, hop = _spectrum_db(call.audio.samples[:, channel], nfft)
        left = call.audio_offset
        right = left + ((db.shape[1] - 1) * hop + nfft) / rate
        images.append(ax.imshow(db, origin="lower", aspect="auto", extent=(left, right, 0, rate / 2), cmap="magma",
                                vmin=DB_RANGE[0], vmax=DB_RANGE[1], interpolation="nearest"))
    fig.colorbar(images[0], ax=list(axes.values()), label="level [dBFS]")
    return fig


# -- transcripts ------------------------------------------------------------------------------

def _draw_transcripts(ax: Axes, call: _Call, rows: pd.DataFrame, colour: str) -> None:
    """Interim and final results at their arrival, and each utterance's recognition span (its
    first result to its final), with the final text."""
    if rows.empty:
        return
    rows = rows.sort_values("received_at", kind="stable")
    t = call.seconds(rows["received_at"])
    final = rows["is_final"].fillna(False).to_numpy(bool)
    utterance = np.concatenate(([0], np.cumsum(final[:-1])))
    spans = pd.Series(t).groupby(utterance).agg(["min", "max"])
    along = ax.get_xaxis_transform()          # x in call time, y in axes fraction
    ax.broken_barh(list(zip(spans["min"], spans["max"] - spans["min"], strict=True)), (0.0, 1.0), transform=along,
                   color=colour, alpha=0.15, label="recognising (first result → final)")
    if (~final).any():
        ax.plot(t[~final], np.full((~final).sum(), 0.93), "|", ms=10, color="0.35", transform=along,
                label="interim result (arrival)")
    if final.any():
        ax.plot(t[final], np.full(final.sum(), 0.93), "v", color=colour, mec="black", transform=along,
                label="final result (arrival)")
        for i, (at, text) in enumerate(zip(t[final], rows["transcript"][final], strict=True)):
            text = str(text)
            ax.annotate(text if len(text) <= 40 else text[:39] + "…", (at, 0.84 - 0.12 * (i % 3)),
                        xycoords=along, ha="right", va="top", fontsize="small",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour, "alpha": 0.85})


def transcript_timeline(rx_or_session: Session, call_control_id: str | None = None, *,
                        source: str | None = None) -> Figure:
    """Transcription results of a call over its waveform, one panel per track, against call
    time (seconds; amplitude as a fraction of full scale).

    Each result is marked at its webhook's arrival: interim results as ticks, finals as
    triangles with their text; a shaded span runs from an utterance's first result to its
    final. Transcription covers the tracks it was started for (``transcription_tracks``); a
    call with no audio shows the transcripts alone. ``source`` as in :func:`waveform`.
    Raises LookupError when the call (or every call) has no transcripts.
    """
    require_tables(rx_or_session)
    transcripts = rx_or_session.transcripts
    if call_control_id is None:
        call_control_id = _latest(rx_or_session, transcripts, "transcripts")
    rows = transcripts[transcripts["call_control_id"] == call_control_id]
    if rows.empty:
        raise LookupError(f"no transcripts for call {call_control_id!r} (start them with tnb.start_transcription)")
    try:
        call = _call_audio(rx_or_session, call_control_id, source)
    except LookupError:
        if source is not None:
            raise
        call = _Call(call_control_id, _origin(rx_or_session, call_control_id, rows["received_at"].min()))
    fig, axes = _track_figure(call, "Transcripts", AMPLITUDE_LABEL)
    for channel, (track, ax) in enumerate(axes.items()):
        if call.audio is not None:
            _draw_waveform(ax, call, channel, track, alpha=0.3)
        else:
            ax.set_ylim(-1, 1)
        _draw_transcripts(ax, call, rows[rows["track"] == track], COLOURS[track])
        _legend(ax)
    return fig


# -- stream quality over time -----------------------------------------------------------------

@dataclass(frozen=True)
class _Packets:
    """One stream track or RTP source: numbers, arrivals and media times in arrival order."""

    label: str
    ext: np.ndarray             # extended sequence (chunk) numbers, >= 0
    arrival_ns: np.ndarray
    media_s: np.ndarray
    timed: np.ndarray           # the packets jitter follows (audio, not telephone events)


def _stream_packets(frames: pd.DataFrame) -> list[_Packets]:
    return [_Packets(f"stream {t.key[1]} ({str(t.key[0])[:8]})", t.ext, t.arrival_ns, t.media_s, t.timed)
            for t in analytics.stream_tracks(frames)]


def _fork_packets(rtp: pd.DataFrame) -> list[_Packets]:
    return [_Packets(f"fork {t.key[0]} (SSRC {int(t.key[1])})", t.ext, t.arrival_ns, t.media_s, t.timed)
            for t in analytics.fork_sources(rtp)]


def _binned(p: _Packets, origin_ns: int, bin_s: float) -> pd.DataFrame:
    """Per ``bin_s`` of call time (index: the bin's start, s): RFC 3550 jitter at the bin's
    last packet (ms), loss (%: numbers missing before the packets that arrived in the bin, over
    those plus the packets), and the longest arrival gap ending in the bin (ms)."""
    bins = (p.arrival_ns - origin_ns) // int(bin_s * 1e9)
    if int(bins.max()) - int(bins.min()) >= TIMELINE_MAX_BINS:
        raise ValueError(f"bin_s={bin_s!r} cuts {p.label}'s {(p.arrival_ns.max() - p.arrival_ns.min()) / 1e9:.1f} s "
                         f"into more than {TIMELINE_MAX_BINS:,} bins; use a longer bin_s")
    _, first = np.unique(p.ext, return_index=True)
    first.sort()                                            # first copies, in arrival order
    timed = first[p.timed[first]]
    arrival_s = (p.arrival_ns[timed] - p.arrival_ns[timed][:1]) / 1e9
    jitter = analytics.jitter_series(arrival_s, p.media_s[timed]) * 1e3
    by_number = first[np.argsort(p.ext[first], kind="stable")]
    missing = np.diff(p.ext[by_number], prepend=p.ext[by_number[0]] - 1) - 1
    lost = pd.Series(missing).groupby(bins[by_number]).sum()
    got = pd.Series(bins[first]).value_counts()
    span = pd.RangeIndex(int(bins.min()), int(bins.max()) + 1)
    table = pd.DataFrame({
        "jitter_ms": pd.Series(jitter).groupby(bins[timed]).last(),
        "loss_pct": 100 * lost / (lost + got.reindex(lost.index, fill_value=0)),
        "max_gap_ms": pd.Series(np.diff(p.arrival_ns) / 1e6).groupby(bins[1:]).max(),
    }).reindex(span)
    table.index = table.index * bin_s
    return table


def quality_timeline(rx_or_session: Session, call_control_id: str | None = None, *, bin_s: float = 1.0) -> Figure:
    """Stream quality of a call over call time, per ``bin_s`` seconds, one line per stream track
    and per forked RTP source (target and SSRC): RFC 3550 interarrival jitter (ms) at the end of
    each bin, loss (% of the numbers due in the bin: lost numbers count at the arrival of the
    packet after them) and the longest gap between two arrivals (ms; TCP streams show loss as
    such gaps). Counting follows ``rx.quality()``; over the whole call the lost numbers add up to
    its ``lost``. A bin with no packet is a break in the lines.

    Raises LookupError when the call has no streamed or forked media, ValueError unless
    ``bin_s`` is finite and at least 1 ms, or when it cuts the call into more than
    ``TIMELINE_MAX_BINS`` (100,000) bins.
    """
    require_tables(rx_or_session)
    if not (bin_s >= 0.001 and math.isfinite(bin_s)):
        raise ValueError(f"bin_s must be a finite number of seconds, at least 0.001 (1 ms), got {bin_s!r}")
    frames, rtp = rx_or_session.frames, rx_or_session.rtp
    if call_control_id is None:
        call_control_id = _latest(rx_or_session, _media_arrivals(frames, rtp), "streamed or forked media")
    packets = _stream_packets(frames[frames["call_control_id"] == call_control_id]) + \
        _fork_packets(rtp[rtp["call_control_id"] == call_control_id])
    packets = [p for p in packets if len(p.ext)]
    if not packets:
        raise LookupError(f"no streamed or forked media for call {call_control_id!r}")
    first = min(int(p.arrival_ns.min()) for p in packets)
    call = _Call(call_control_id, _origin(rx_or_session, call_control_id, pd.Timestamp(first, tz="UTC")))
    fig, axes = _figure(3)
    fig.suptitle(call.title(f"Stream quality per {bin_s:g} s"))
    panels = (("jitter_ms", "RFC 3550 interarrival jitter", "jitter [ms]"),
              ("loss_pct", "packet loss", "loss [%]"),
              ("max_gap_ms", "longest gap between arrivals", "gap [ms]"))
    tables = [(p.label, _binned(p, call.origin.value, bin_s)) for p in packets]
    for ax, (column, title, ylabel) in zip(axes, panels, strict=True):
        for label, table in tables:
            ax.stairs(table[column].to_numpy(), np.append(table.index.to_numpy(float), table.index[-1] + bin_s),
                      baseline=None, lw=1.5, label=label)
        ax.set_title(title)
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(ylabel)
        top = ax.get_ylim()[1]
        ax.set_ylim(-0.04 * top, top)           # zero (no loss) just above the axis, not on it
    _figure_legend(fig, axes[0])
    return fig


# -- latency and talk time ---------------------------------------------------------------------

#: Stages of ``tnb.quality.latency`` that are delivery lags, not timed from a command.
_LAGS = {"webhook_lag": "tab:green", "transcription_lag": "tab:purple"}


def _nothing(ax: Axes, text: str) -> None:
    """Say in the panel why it is empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def latency(rx_or_session: Session, call_control_id: str | None = None, *,
            script: pd.DataFrame | None = None) -> Figure:
    """How long a call's steps took, in milliseconds, from :func:`telnyx_nb.quality.latency`.

    Top: each stage timed from the command that caused it — the REST answer, WebSocket
    ``connected``, ``streaming.started``, the ``start`` frame, the first media of each track,
    ``call.fork.started``, the first RTP on each target, a mark's echo — one bar per stage,
    coloured by command, in the order they happened. Bottom: delivery lags, per webhook event
    type (``occurred_at`` → arrival) and per transcription result kind (the audio time of the
    last word → arrival; needs ``script``, the call's word timing such as the sandbox's
    ``sb.script(ccid)``), as the median with min–max whiskers and the count.

    Raises LookupError when the call has no measured stage or lag.
    """
    require_tables(rx_or_session)
    rows = analytics.latency(rx_or_session, script=script)
    rows = rows[rows["seconds"].notna()]
    if call_control_id is None:
        call_control_id = _latest(rx_or_session, rows.assign(received_at=rows["since"]), "measured latencies")
    rows = rows[rows["call_control_id"].astype(object) == call_control_id]
    if rows.empty:
        raise LookupError(f"no measured latency for call {call_control_id!r} (stages are timed from the commands "
                          "the tnb helpers sent with rx, lags from webhooks)")
    lags = rows["stage"].astype(str).isin(list(_LAGS))
    fig, (steps, delivery) = _figure(2, sharex=False)
    fig.suptitle(f"Latency: call {call_control_id}")
    _draw_stages(steps, rows[~lags].sort_values("until", kind="stable"))
    _draw_lags(delivery, rows[lags])
    return fig


def _draw_stages(ax: Axes, stages: pd.DataFrame) -> None:
    ax.set_title("stages, timed from the command that caused them")
    ax.set_xlabel("time since the command was sent [ms]")
    ax.set_ylabel("stage (event awaited)")
    if stages.empty:
        _nothing(ax, "no command recorded (send commands with the tnb helpers and rx)")
        return
    command = stages["command"].astype(str).to_numpy()
    detail = stages["detail"].astype(object).to_numpy()
    names = [stage if pd.isna(d) or d == c else f"{stage} {d}"
             for stage, c, d in zip(stages["stage"].astype(str), command, detail, strict=True)]
    y = np.arange(len(stages))
    ms = stages["seconds"].to_numpy(float) * 1e3
    for name in dict.fromkeys(command):
        mine = command == name
        ax.bar_label(ax.barh(y[mine], ms[mine], label=name), fmt="%.1f", fontsize="x-small", padding=2)
    ax.set_yticks(y, [f"{n} ({c})" for n, c in zip(names, command, strict=True)])
    ax.invert_yaxis()
    ax.margins(x=0.12)
    _legend(ax)


def _draw_lags(ax: Axes, lags: pd.DataFrame) -> None:
    ax.set_title("delivery lags: median, min–max")
    ax.set_xlabel("lag [ms]")
    ax.set_ylabel("webhook or transcription (count)")
    if lags.empty:
        _nothing(ax, "no lag measured")
        return
    stage = lags["stage"].astype(str)
    groups = lags.groupby([stage, lags["detail"].astype(str)], sort=False)["seconds"]
    table = groups.agg(["median", "min", "max", "size"])
    y = np.arange(len(table))
    kind = table.index.get_level_values(0)
    median, low, high = (table[c].to_numpy(float) * 1e3 for c in ("median", "min", "max"))
    for name, colour in _LAGS.items():
        mine = np.asarray(kind == name)
        if mine.any():
            ax.barh(y[mine], median[mine], xerr=[median[mine] - low[mine], high[mine] - median[mine]],
                    capsize=3, color=colour, label=name.replace("_", " "))
    ax.set_yticks(y, [f"{detail} ({n})" for (_, detail), n in zip(table.index, table["size"], strict=True)])
    ax.invert_yaxis()
    _legend(ax)


def _overlap(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(starts, widths) where intervals of ``a`` and of ``b`` (columns start_s, end_s, each
    sorted and disjoint) overlap; empty when either has none."""
    if a.empty or b.empty:
        return np.empty(0), np.empty(0)
    edges = np.unique(np.concatenate([a["start_s"], a["end_s"], b["start_s"], b["end_s"]]))
    middle = (edges[:-1] + edges[1:]) / 2
    inside = []
    for spans in (a, b):
        starts, ends = spans["start_s"].to_numpy(float), spans["end_s"].to_numpy(float)
        k = np.searchsorted(starts, middle, side="right") - 1
        inside.append((k >= 0) & (middle < ends[np.maximum(k, 0)]))
    both = inside[0] & inside[1]
    return edges[:-1][both], np.diff(edges)[both]


def talk_time(rx_or_session: Session, call_control_id: str | None = None, *, source: str | None = None,
              script: pd.DataFrame | None = None) -> Figure:
    """Who talked when on a call, from :func:`telnyx_nb.quality.talk_time` (an energy
    voice-activity detector over each track's audio; see ``telnyx_nb.talk``).

    Top, against call time (s): each track's speech segments, where both talk at once, and the
    final transcripts: at the audio time of their words when ``script`` gives it (the sandbox's
    ``sb.script(ccid)``), else at their arrival. Bottom, per track (s): talk, silence (the rest
    of the call), talk while the other track talks (overlap) and the longest silence.
    ``source`` as in :func:`waveform`. Raises LookupError when the call has no audio.
    """
    require_tables(rx_or_session)
    if call_control_id is None:
        call_control_id = _latest(rx_or_session, _media_arrivals(rx_or_session.frames, rx_or_session.rtp),
                                  "streamed or forked audio")
    talk = analytics.talk_time(rx_or_session, call_control_id, source=source, script=script)
    segments, utterances = talk.segments, talk.utterances
    first = pd.concat([segments["start"], utterances["received_at"]]).min()
    if pd.isna(first):
        raise LookupError(f"nothing to place on call time for call {call_control_id!r}: no webhook, speech "
                          "or transcript")
    call = _Call(call_control_id, _origin(rx_or_session, call_control_id, first))
    summary = talk.summary.assign(track=talk.summary["track"].astype(str)).set_index("track")
    fig, (timeline, totals) = _figure(2, sharex=False)
    fig.suptitle(call.title(f"Talk time ({summary['source'].iloc[0]} audio)"))
    spans = {}
    for row, track in enumerate(TRACKS):
        y = len(TRACKS) - row                  # inbound on top, "both" at 0
        mine = segments[segments["track"].astype(str) == track]
        spans[track] = pd.DataFrame({"start_s": call.seconds(mine["start"]), "end_s": call.seconds(mine["end"])})
        timeline.broken_barh(list(zip(spans[track]["start_s"], spans[track]["end_s"] - spans[track]["start_s"],
                                      strict=True)), (y - 0.3, 0.45), color=COLOURS[track], label=f"{track} speech")
        said = utterances[utterances["track"].astype(str) == track]
        timed = said["start"].notna() & said["end"].notna()
        if timed.any():
            at = call.seconds(said.loc[timed, "start"])
            timeline.broken_barh(list(zip(at, call.seconds(said.loc[timed, "end"]) - at, strict=True)),
                                 (y + 0.2, 0.12), color="black", label="final transcript (script time)")
        if (~timed).any():
            timeline.plot(call.seconds(said.loc[~timed, "received_at"]), np.full(int((~timed).sum()), y + 0.26),
                          "v", color="black", label="final transcript (arrival)")
    starts, widths = _overlap(spans["inbound"], spans["outbound"])
    timeline.broken_barh(list(zip(starts, widths, strict=True)), (-0.3, 0.45), color="tab:red", label="both talk")
    timeline.set_yticks(range(len(TRACKS) + 1), ["both", *reversed(TRACKS)])
    timeline.set_ylim(-0.6, len(TRACKS) + 0.6)
    timeline.set_title("speech (voice-activity detector) and final transcripts")
    timeline.set_xlabel(TIME_LABEL)
    timeline.set_ylabel("track (who talks)")
    _legend(timeline)
    table = summary.reindex([t for t in TRACKS if t in summary.index])[
        ["talk_s", "silence_s", "overlap_s", "longest_silence_s"]].rename(columns={
            "talk_s": "talk", "silence_s": "silence", "overlap_s": "overlap (both talk)",
            "longest_silence_s": "longest silence"})
    _grouped_bars(totals, table, [f"{t} ({100 * summary.loc[t, 'talk_share']:.0f} % of the talk)"
                                  for t in table.index])
    totals.set_title(f"talk and silence per track, over {summary['duration_s'].max():.1f} s of audio")
    totals.set_xlabel("track (share of the call's talk)")
    totals.set_ylabel("duration [s]")
    _legend(totals)
    return fig


# -- across calls -----------------------------------------------------------------------------

def _call_label(call_control_id: object) -> str:
    """A short name for a call on a categorical axis: its id without "v3:", first 10 characters."""
    if not isinstance(call_control_id, str):
        return "(no call)"
    return call_control_id.removeprefix("v3:")[:10]


def _grouped_bars(ax: Axes, table: pd.DataFrame, names: list[str], bottom: float = 0.0) -> None:
    """One group of bars per row of ``table`` (named ``names`` on the x axis), one bar per
    column (a series), each labelled with its value (so that a zero shows)."""
    width = 0.8 / max(len(table.columns), 1)
    x = np.arange(len(table))
    for i, column in enumerate(table.columns):
        values = table[column]
        bars = ax.bar(x + (i - (len(table.columns) - 1) / 2) * width, values - bottom, width, bottom=bottom,
                      label=str(column))
        ax.bar_label(bars, ["" if pd.isna(v) else f"{v:.3g}" for v in values], fontsize="x-small")
    ax.set_xticks(x, names)


def quality_summary(rx_or_session: Session, call_control_id: str | Iterable[str] | None = None) -> Figure:
    """Stream quality of every call (or of the calls named), from ``rx.quality()``: loss (%),
    RFC 3550 jitter (ms), the longest arrival gap (ms) and the E-model MOS (1–5), one group of
    bars per call and one bar per path and direction ("stream inbound", "fork outbound", ...).
    A call's several streams or RTP sources of one direction are combined: loss over their
    expected packets, the worst jitter, gap and MOS. Calls are labelled by the first characters
    of their call control id; forked RTP no call claimed is "(no call)".

    Raises LookupError when there is no stream or fork to summarise.
    """
    require_tables(rx_or_session)
    quality = rx_or_session.quality()
    if call_control_id is not None:
        wanted = [call_control_id] if isinstance(call_control_id, str) else list(call_control_id)
        quality = quality[quality["call_control_id"].isin(wanted)]
    if quality.empty:
        raise LookupError("no streamed or forked media to summarise"
                          + ("" if call_control_id is None else f" for {call_control_id!r}"))
    direction = quality["direction"] if "direction" in quality else quality["track"].astype(str).replace(
        {target: track for track, target in FORK_TARGET.items()})
    grouped = quality.assign(series=quality["source"].astype(str) + " " + direction.astype(str)).groupby(
        ["call_control_id", "series"], dropna=False, sort=False, observed=True)
    per_series = pd.DataFrame({
        "loss_pct": 100 * grouped["lost"].sum() / grouped["expected"].sum().clip(lower=1),
        "jitter_ms": grouped["jitter_ms"].max(), "max_gap_ms": grouped["max_gap_ms"].max(),
        "mos": grouped["mos"].min(),
    })
    series = sorted(per_series.index.unique("series"), key=lambda name: (name.startswith("fork"), "outbound" in name))
    fig, axes = _figure(2, 2, sharex=False)
    fig.suptitle(f"Stream quality of {per_series.index.get_level_values(0).nunique()} call(s)")
    panels = (("loss_pct", "packet loss", "loss [%]", 0.0), ("jitter_ms", "RFC 3550 jitter", "jitter [ms]", 0.0),
              ("max_gap_ms", "longest gap between arrivals", "gap [ms]", 0.0),
              ("mos", "E-model MOS", "MOS [1–5]", 1.0))
    for ax, (column, title, ylabel, bottom) in zip(axes, panels, strict=True):
        table = per_series[column].unstack("series")[series]
        _grouped_bars(ax, table, [_call_label(c) for c in table.index], bottom)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_title(title)
        ax.set_xlabel("call (call control id, first 10 characters)")
        ax.set_ylabel(ylabel)
    axes[-1].set_ylim(1, 5)
    _figure_legend(fig, axes[0])
    return fig
