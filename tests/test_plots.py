"""tnb.plots: every figure rendered to PNG (Agg) from real sandbox calls, live and loaded, and checked.

Two calls of the sandbox's "survey" scenario (19 s of speech on both tracks) run through the
real ``telnyx`` SDK into one Receiver: call A streams both tracks over a WebSocket, call B forks
its RTP with seeded loss and jitter; both are transcribed (both tracks, interim results). Each
figure must render to a PNG that is not blank, with something drawn in every panel, every axis
labelled with its unit, every panel titled, and a legend naming the series wherever a panel
shows more than one. The same on ``tnb.load()`` of the saved session.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

import telnyx_nb as tnb
from telnyx_nb import plots
from telnyx_nb.sandbox import Sandbox

from waiting import timeout, wait_until

PER_CALL = ["waveform", "spectrogram", "transcript_timeline", "quality_timeline", "latency", "talk_time"]
#: The plots that place transcripts at the audio time of their words given the call's script.
SCRIPTED = ("latency", "talk_time")
ALL = [*PER_CALL, "quality_summary"]
UNIT = re.compile(r"\S.*(\[.+\]|\(.+\))")


@pytest.fixture(scope="module")
def sb():
    with Sandbox(ring_s=0.05, webhook_backoff_s=0.05) as s:
        yield s


@pytest.fixture(scope="module")
def calls(sb):
    """After two finished calls: ({"stream": ccid, "fork": ccid}, the receiver, their word timing)."""
    client = sb.client()
    with tnb.Receiver(public_key=sb.public_key) as rx:
        ccids = {}
        for path, to in (("stream", "+15550300"), ("fork", "+15550301")):
            sb.route(to, "survey")
            ccids[path] = tnb.dial(client, rx, connection_id=sb.connection_id, to=to,
                                   from_="+15550199").data.call_control_id
        for ccid in ccids.values():
            rx.wait_for("call.answered", ccid, timeout=10)
        tnb.start_streaming(client, ccids["stream"], rx, stream_track="both_tracks")
        sb.impair(ccids["fork"], loss=0.05, jitter_ms=20, seed=3)
        tnb.start_forking(client, ccids["fork"], rx)
        interim = {"transcription_engine": "Google", "language": "en", "interim_results": True}
        for ccid in ccids.values():
            tnb.start_transcription(client, ccid, rx, transcription_tracks="both", transcription_engine_config=interim)
        for ccid in ccids.values():
            rx.wait_for("call.hangup", ccid, timeout=30)
        sb.wait_webhooks(timeout(10))
        script = pd.concat([sb.script(ccid) for ccid in ccids.values()], ignore_index=True)
        utterances = script.groupby("call_control_id", observed=True)["utterance"].nunique().sum()
        wait_until(lambda: rx.transcripts["is_final"].sum() == utterances, what="every final transcript")
        yield ccids, rx, script


@pytest.fixture(scope="module")
def loaded(calls, tmp_path_factory):
    _, rx, _ = calls
    return tnb.load(rx.save(tmp_path_factory.mktemp("plots") / "session"))


def png_pixels(fig) -> np.ndarray:
    """The figure rendered to PNG with Agg, read back as an (h, w, 4) float array."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    assert buffer.tell() > 1000, "the PNG is (nearly) empty"
    buffer.seek(0)
    return matplotlib.image.imread(buffer, format="png")


def check_figure(fig) -> None:
    """Units on every axis, titles, legends; then not blank, with something drawn in every panel."""
    assert fig._suptitle is not None and fig._suptitle.get_text(), "the figure has no title"
    shown = {text.get_text() for legend in fig.legends for text in legend.get_texts()}
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for ax in fig.axes:
        if ax not in panels:
            assert UNIT.fullmatch(ax.get_ylabel()), f"colour bar without a unit: {ax.get_ylabel()!r}"
            continue
        assert ax.get_title(), "a panel without a title"
        for axis, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
            assert UNIT.fullmatch(label), f"{axis} axis of {ax.get_title()!r} has no unit: {label!r}"
        labels = [label for label in ax.get_legend_handles_labels()[1] if not label.startswith("_")]
        if len(labels) > 1:
            legend = ax.get_legend()
            named = shown | ({text.get_text() for text in legend.get_texts()} if legend else set())
            assert set(labels) <= named, f"series of {ax.get_title()!r} missing from the legends"
    pixels = png_pixels(fig)[..., :3]
    assert pixels.std() > 0, "the PNG is one colour"
    height = pixels.shape[0]
    for ax in panels:
        box = ax.get_window_extent()          # in the PNG's pixels (same dpi); inside the spines
        inside = pixels[int(height - box.y1) + 3:int(height - box.y0) - 3, int(box.x0) + 3:int(box.x1) - 3]
        assert inside.size and (inside != inside[0, 0]).any(), f"nothing drawn in {ax.get_title()!r}"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("path", ["stream", "fork"])
def test_live_figures_of_each_call(calls, name, path):
    ccids, rx, script = calls
    fig = getattr(plots, name)(rx, ccids[path], **({"script": script} if name in SCRIPTED else {}))
    check_figure(fig)
    if name in PER_CALL:
        assert ccids[path] in fig._suptitle.get_text()


@pytest.mark.parametrize("name", ALL)
def test_loaded_figures_default_call(calls, loaded, name):
    """call_control_id=None: the newest call (the fork, dialled last) for a call's plots; every call for summaries."""
    ccids, _, _ = calls
    fig = getattr(plots, name)(loaded)
    check_figure(fig)
    title = fig._suptitle.get_text()
    if name in PER_CALL:
        assert ccids["fork"] in title
    else:
        assert "2 call(s)" in title
        assert {label.get_text() for label in fig.axes[0].get_xticklabels()} == \
            {plots._call_label(c) for c in ccids.values()}


def test_track_titles_say_which_path_they_show(calls):
    ccids, rx, _ = calls
    assert [ax.get_title() for ax in plots.waveform(rx, ccids["stream"]).axes] == \
        ["inbound track (media stream)", "outbound track (media stream)"]
    assert [ax.get_title() for ax in plots.waveform(rx, ccids["fork"]).axes] == \
        ["inbound track (forked RTP, target rx)", "outbound track (forked RTP, target tx)"]


def test_transcripts_are_drawn_on_their_track(calls):
    ccids, rx, _ = calls
    fig = plots.transcript_timeline(rx, ccids["stream"])
    transcripts = rx.transcripts
    finals = transcripts[transcripts["is_final"] & (transcripts["call_control_id"] == ccids["stream"])]
    for track, ax in zip(plots.TRACKS, fig.axes, strict=True):
        said = finals.loc[finals["track"] == track, "transcript"]
        assert [t.get_text()[:30] for t in ax.texts] == [t[:30] for t in said]
    for ax in fig.axes:
        assert {"interim result (arrival)", "final result (arrival)"} <= set(ax.get_legend_handles_labels()[1])


def test_quality_timeline_loss_adds_up_to_quality(calls):
    """Binned loss, turned back into counts, adds up to quality()'s lost per fork source."""
    ccids, rx, _ = calls
    quality = rx.quality()
    fork = quality[quality["call_control_id"] == ccids["fork"]]
    assert fork["lost"].sum() > 0                                   # the seed drops packets
    packets = plots._fork_packets(rx.rtp[rx.rtp["call_control_id"] == ccids["fork"]])
    for p in packets:
        table = plots._binned(p, int(p.arrival_ns.min()), 0.5)
        ssrc = int(p.label.split("SSRC ")[1].rstrip(")"))
        lost = int(fork.loc[fork["ssrc"] == ssrc, "lost"].iloc[0])
        bins = (p.arrival_ns - p.arrival_ns.min()) // 500_000_000
        got = np.bincount(bins[np.unique(p.ext, return_index=True)[1]])
        counted = table["loss_pct"].fillna(0).to_numpy() / 100
        # loss_pct = lost / (lost + got)  =>  lost = got * pct / (1 - pct)
        assert round(float((got[:len(counted)] * counted / (1 - counted)).sum())) == lost


def test_nothing_to_plot_raises_lookup_error_naming_it(calls):
    _, rx, _ = calls
    for name in ALL:
        with pytest.raises(LookupError, match="v3:nope"):
            getattr(plots, name)(rx, "v3:nope")
    empty = tnb.Receiver()
    with pytest.raises(LookupError, match="no call has streamed or forked audio"):
        plots.waveform(empty)
    with pytest.raises(LookupError, match="no call has transcripts"):
        plots.transcript_timeline(empty)
    with pytest.raises(LookupError, match="no streamed or forked media"):
        plots.quality_summary(empty)


def test_bad_arguments(calls):
    ccids, rx, _ = calls
    with pytest.raises(ValueError, match="bin_s"):
        plots.quality_timeline(rx, ccids["fork"], bin_s=0)
    with pytest.raises(ValueError, match="nfft"):
        plots.spectrogram(rx, ccids["fork"], nfft=8)
    with pytest.raises(LookupError, match="no audio to plot"):
        plots.waveform(rx, ccids["fork"], source="stream")


def test_the_check_catches_a_missing_unit_title_or_legend(calls):
    """The checks above fail on a figure that lacks what they look for."""
    ccids, rx, _ = calls
    breakers = [lambda fig: fig.axes[0].set_ylabel("amplitude"), lambda fig: fig.axes[1].set_xlabel(""),
                lambda fig: fig.axes[0].set_title(""), lambda fig: fig.axes[0].get_legend().remove()]
    for breaker in breakers:
        fig = plots.transcript_timeline(rx, ccids["stream"])
        breaker(fig)
        with pytest.raises(AssertionError):
            check_figure(fig)


def test_importing_plots_does_not_import_matplotlib():
    code = "import sys, telnyx_nb as tnb; tnb.plots; assert 'matplotlib' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
