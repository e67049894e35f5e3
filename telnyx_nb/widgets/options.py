"""The options of each media action, as small rows of ipywidgets that give the SDK's keyword arguments.

A panel shows them next to each toggle; the dashboard's Answer row reuses them for what to
request at answer time. Values are Telnyx's enums (``telnyx-protocol.md`` §1.3); nothing here
validates them beyond that: Telnyx (or the sandbox) answers 422 for a combination it refuses,
and the panel shows that answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

__all__ = ["StreamOptions", "ForkOptions", "TranscriptionOptions", "OPTIONS"]

_CODECS = ("PCMU", "PCMA", "G722", "OPUS", "AMR-WB", "L16")
ENGINES = ("Google", "Telnyx", "Deepgram", "Azure", "xAI", "AssemblyAI", "Speechmatics", "Soniox",
           "Parakeet", "Humain", "Reson8", "Cohere")
_NARROW = w.Layout(width="auto")


def _dropdown(description: str, options: tuple[str, ...], value: str) -> w.Dropdown:
    return w.Dropdown(options=options, value=value, description=description, layout=_NARROW,
                      style={"description_width": "initial"})


class _Options(w.HBox):
    """A row of option widgets; ``kwargs(rx)`` gives the SDK arguments they stand for."""

    def __init__(self, children: list[w.Widget]) -> None:
        super().__init__(children, layout=w.Layout(flex_flow="row wrap"))

    def kwargs(self, rx: Any) -> dict[str, Any]:
        """The keyword arguments for the action's helper (``rx``: the receiver it sends to)."""
        raise NotImplementedError

    def set_disabled(self, disabled: bool) -> None:
        """Grey the options out (while the action runs: Telnyx takes them at start only)."""
        for child in self.children:
            child.disabled = disabled


class StreamOptions(_Options):
    """``streaming_start`` options: ``stream_track``, ``stream_codec``, and the bidirectional
    mode and codec (mode "none" sends neither: Telnyx's default is mp3, PCMU)."""

    def __init__(self) -> None:
        self.track = _dropdown("track", ("both_tracks", "inbound_track", "outbound_track"), "both_tracks")
        self.codec = _dropdown("codec", ("default", *_CODECS), "default")
        self.bidirectional_mode = _dropdown("bidirectional", ("none", "rtp", "mp3"), "none")
        self.bidirectional_codec = _dropdown("back codec", _CODECS, "PCMU")
        super().__init__([self.track, self.codec, self.bidirectional_mode, self.bidirectional_codec])

    def kwargs(self, rx: Any) -> dict[str, Any]:
        options: dict[str, Any] = {"stream_track": self.track.value, "stream_codec": self.codec.value}
        if self.bidirectional_mode.value != "none":
            options["stream_bidirectional_mode"] = self.bidirectional_mode.value
            if self.bidirectional_mode.value == "rtp":
                options["stream_bidirectional_codec"] = self.bidirectional_codec.value
        return options


class ForkOptions(_Options):
    """``fork_start`` options: the target (the receiver's ``rx``/``tx`` ports, plain RTP, or the
    legacy single ``target`` with a STREP header) and ``stream_type`` ("decrypted", the only
    value Telnyx's ``fork_start`` takes)."""

    def __init__(self) -> None:
        self.target = _dropdown("target", ("rx/tx", "target (STREP)"), "rx/tx")
        self.stream_type = _dropdown("stream type", ("decrypted",), "decrypted")
        super().__init__([self.target, self.stream_type])

    def kwargs(self, rx: Any) -> dict[str, Any]:
        """With "target (STREP)", the receiver's rx port (``rx.fork_rx``) is the target."""
        if self.target.value == "rx/tx":
            return {"stream_type": self.stream_type.value}
        return {"extra_body": {"target": rx.fork_rx}}


class TranscriptionOptions(_Options):
    """``transcription_start`` options: engine, tracks ("inbound", "outbound", "both"), and in
    ``transcription_engine_config`` the language and interim results."""

    def __init__(self) -> None:
        self.engine = _dropdown("engine", ENGINES, "Google")
        self.tracks = _dropdown("tracks", ("both", "inbound", "outbound"), "both")
        self.language = w.Text(value="en", description="language", layout=w.Layout(width="10em"),
                               style={"description_width": "initial"})
        self.interim = w.Checkbox(value=True, description="interim results", indent=False, layout=_NARROW)
        super().__init__([self.engine, self.tracks, self.language, self.interim])

    def kwargs(self, rx: Any) -> dict[str, Any]:
        return {"transcription_engine": self.engine.value, "transcription_tracks": self.tracks.value,
                "transcription_engine_config": {"transcription_engine": self.engine.value,
                                                "language": self.language.value,
                                                "interim_results": self.interim.value}}


#: action name -> its options row
OPTIONS: dict[str, Callable[[], _Options]] = {"streaming": StreamOptions, "forking": ForkOptions,
                                      "transcription": TranscriptionOptions}
