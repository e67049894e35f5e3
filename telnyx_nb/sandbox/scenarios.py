"""What the far end (and the scripted agent) says on a sandbox call: audio and word timing.

A scenario is two tracks of audio as Telnyx names them: ``inbound`` is the far-end party
(the callee of a dialled call, the caller of an incoming one), ``outbound`` the application's
side. Each track is silence with the utterances' clips placed at their ``start_s``. The speech
library lives in ``scenarios/scenarios.json`` (made by ``scripts/make_scenarios.py``) and is
loaded lazily; tone and silence scenarios are synthesised for tests.
"""

from __future__ import annotations

import json
import math
import threading
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal, TypeGuard

import numpy as np

from telnyx_nb.wire import codecs, media

__all__ = ["Word", "Utterance", "Scenario", "get_scenario", "library_names", "utterances_on", "FRAME_S", "TRACKS",
           "check_codec", "scenario_arg"]

FRAME_S = media.FRAME_MS / 1000
TRACKS = ("inbound", "outbound")
Track = Literal["inbound", "outbound"]
_DATA = "scenarios"
_TONE_AMPLITUDE = 0.3 * 32767


@dataclass(frozen=True, slots=True)
class Word:
    """One word of an utterance, times in seconds from the start of the call's media."""

    word: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Utterance:
    """One turn of speech on one track, with its word timing and recogniser confidence."""

    track: Track
    start_s: float
    end_s: float
    text: str
    confidence: float
    words: tuple[Word, ...]
    clip: str | None = None


@dataclass(frozen=True, eq=False)
class Scenario:
    """A scripted conversation: audio per track, utterances, and DTMF digits at given times.

    Build with :meth:`tone` / :meth:`silence` for tests, or get a library scenario by name
    (:func:`get_scenario`). Rendered audio and encodings are cached per instance.
    """

    name: str
    duration_s: float
    utterances: tuple[Utterance, ...] = ()
    dtmf: tuple[tuple[float, str], ...] = ()
    title: str = ""
    description: str = ""
    tone_hz: dict[str, float] = field(default_factory=dict, repr=False)
    #: Number of 20 ms frames per track; the far end hangs up after the last one.
    n_frames: int = field(init=False, repr=False)
    _cache: dict[object, object] = field(default_factory=dict, repr=False, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, init=False)

    @classmethod
    def tone(
        cls,
        seconds: float = 2.0,
        frequency: float = 440.0,
        *,
        outbound_frequency: float | None = None,
        transcript: Iterable[tuple[str, float, float, str]] = (),
        dtmf: Iterable[tuple[float, str]] = (),
        confidence: float = 0.9,
    ) -> Scenario:
        """A sine tone on the inbound track (and on outbound if ``outbound_frequency``).

        ``transcript`` items are ``(track, start_s, end_s, text)``; words are spread evenly
        over the span, so transcription webhooks can be tested on short calls.
        ``dtmf`` items are ``(at_s, digit)``.
        """
        tones = {"inbound": float(frequency)}
        if outbound_frequency is not None:
            tones["outbound"] = float(outbound_frequency)
        return cls._synthetic("tone", seconds, tones, transcript, dtmf, confidence)

    @classmethod
    def silence(
        cls,
        seconds: float = 2.0,
        *,
        transcript: Iterable[tuple[str, float, float, str]] = (),
        dtmf: Iterable[tuple[float, str]] = (),
        confidence: float = 0.9,
    ) -> Scenario:
        """Digital silence on both tracks (same options as :meth:`tone`)."""
        return cls._synthetic("silence", seconds, {}, transcript, dtmf, confidence)

    @classmethod
    def _synthetic(cls, name: str, seconds: float, tones: dict[str, float],
                   transcript: Iterable[tuple[str, float, float, str]], dtmf: Iterable[tuple[float, str]],
                   confidence: float) -> Scenario:
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"seconds must be a positive finite number, got {seconds!r}")
        utterances = tuple(sorted((_even_utterance(*item, confidence) for item in transcript), key=lambda u: u.end_s))
        digits = tuple(sorted((float(at), _check_digit(d)) for at, d in dtmf))
        return cls(name, float(seconds), utterances, digits, tone_hz=tones)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_frames", max(1, math.ceil(round(self.duration_s / FRAME_S, 6))))

    def to_spec(self) -> dict[str, Any]:
        """A JSON-able description that :meth:`from_spec` turns back into an equivalent scenario
        (how a scenario reaches the sandbox's process; speech clips travel by name)."""
        return {
            "name": self.name, "duration_s": self.duration_s, "title": self.title, "description": self.description,
            "tone_hz": dict(self.tone_hz), "dtmf": [[at, digit] for at, digit in self.dtmf],
            "utterances": [{"track": u.track, "start_s": u.start_s, "end_s": u.end_s, "text": u.text,
                            "confidence": u.confidence, "clip": u.clip,
                            "words": [[w.word, w.start_s, w.end_s] for w in u.words]} for u in self.utterances],
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Scenario:
        """The scenario :meth:`to_spec` described."""
        utterances = tuple(
            Utterance(_track(u["track"]), float(u["start_s"]), float(u["end_s"]), str(u["text"]),
                      float(u["confidence"]), tuple(Word(str(w), float(a), float(b)) for w, a, b in u["words"]),
                      u.get("clip"))
            for u in spec.get("utterances", ())
        )
        duration_s = float(spec["duration_s"])
        if not (duration_s > 0 and math.isfinite(duration_s)):
            raise ValueError(f"seconds must be a positive finite number, got {duration_s!r}")
        return cls(str(spec["name"]), duration_s, utterances,
                   tuple((float(at), _check_digit(d)) for at, d in spec.get("dtmf", ())),
                   title=str(spec.get("title", "")), description=str(spec.get("description", "")),
                   tone_hz={_track(t): float(hz) for t, hz in spec.get("tone_hz", {}).items()})

    def pcm(self, rate: int) -> dict[str, np.ndarray]:
        """Both tracks as int16 samples at ``rate``, exactly ``n_frames`` frames long."""
        return self._cached(("pcm", rate), lambda: self._render(rate))

    def encoded(self, encoding: str) -> dict[str, bytes]:
        """Both tracks encoded for the wire: PCMU/PCMA at 8 kHz, L16 at 16 kHz big-endian."""
        codec = codecs.get_codec(encoding)
        return self._cached(("enc", codec.name),
                            lambda: {t: codec.encode(s) for t, s in self.pcm(codec.sample_rate).items()})

    def _cached(self, key, make):
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def _render(self, rate: int) -> dict[str, np.ndarray]:
        n = self.n_frames * int(rate * FRAME_S)
        tracks = {track: np.zeros(n, dtype=np.int16) for track in TRACKS}
        t = np.arange(n) / rate
        for track, hz in self.tone_hz.items():
            tracks[track] = (np.sin(2 * np.pi * hz * t) * _TONE_AMPLITUDE).astype(np.int16)
        for utterance in self.utterances:
            if utterance.clip is None:
                continue
            clip = _load_clip(utterance.clip, rate)
            start = round(utterance.start_s * rate)
            end = min(n, start + len(clip))
            if end > start:
                tracks[utterance.track][start:end] = clip[: end - start]
        for array in tracks.values():
            array.flags.writeable = False
        return tracks


def _check_digit(digit: str) -> str:
    if not (isinstance(digit, str) and len(digit) == 1 and digit in "0123456789*#ABCD"):
        raise ValueError(f"a DTMF digit is one of 0-9 * # A-D, got {digit!r}")
    return digit


def _is_track(track: str) -> TypeGuard[Track]:
    return track in TRACKS


def _track(track: str) -> Track:
    if not _is_track(track):
        raise ValueError(f"track must be 'inbound' or 'outbound', got {track!r}")
    return track


def _even_utterance(track: str, start_s: float, end_s: float, text: str, confidence: float) -> Utterance:
    if not _is_track(track):
        raise ValueError(f"track must be 'inbound' or 'outbound', got {track!r}")
    if not 0 <= start_s < end_s:
        raise ValueError(f"utterance needs 0 <= start_s < end_s, got {start_s}, {end_s}")
    words = text.split() or [text]
    step = (end_s - start_s) / len(words)
    timed = tuple(Word(w, start_s + i * step, start_s + (i + 1) * step) for i, w in enumerate(words))
    return Utterance(track, float(start_s), float(end_s), text, float(confidence), timed)


@cache
def _manifest() -> dict:
    with resources.files(__package__).joinpath(_DATA).joinpath("scenarios.json").open("rb") as handle:
        manifest = json.load(handle)
    if manifest.get("format") != 1:
        raise ValueError(f"unsupported scenarios.json format {manifest.get('format')!r}")
    return manifest["scenarios"]


def _load_clip(clip: str, rate: int) -> np.ndarray:
    suffix = {8000: "8k", 16000: "16k"}.get(rate)
    if suffix is None:
        raise ValueError(f"speech clips exist at 8000 and 16000 Hz, not {rate}")
    path = resources.files(__package__).joinpath(_DATA).joinpath(f"{clip}.{suffix}.wav")
    with path.open("rb") as handle, wave.open(handle) as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2 or wav.getframerate() != rate:
            raise ValueError(f"clip {clip} at {rate} Hz is not mono 16-bit PCM at that rate")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)


def library_names() -> list[str]:
    """Names of the speech scenarios shipped as package data, plus ``tone`` and ``silence``."""
    return [*sorted(_manifest()), "tone", "silence"]


@cache
def _library(name: str) -> Scenario:
    spec = _manifest()[name]
    utterances = tuple(
        Utterance(
            u["track"], float(u["start_s"]), float(u["end_s"]), u["text"], float(u["confidence"]),
            tuple(Word(w["word"], float(w["start_s"]), float(w["end_s"])) for w in u["words"]), u["clip"],
        )
        for u in spec["utterances"]
    )
    return Scenario(name, float(spec["duration_s"]), utterances, title=spec.get("title", ""),
                    description=spec.get("description", ""))


@cache
def _default_synthetic(name: str) -> Scenario:
    return Scenario.tone() if name == "tone" else Scenario.silence()


def get_scenario(scenario: str | Scenario) -> Scenario:
    """Resolve a scenario name (library, ``tone``, ``silence``) or pass a Scenario through."""
    if isinstance(scenario, Scenario):
        return scenario
    if scenario in ("tone", "silence"):
        return _default_synthetic(scenario)
    if not isinstance(scenario, str) or scenario not in _manifest():
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(library_names())}")
    return _library(scenario)


def utterances_on(scenario: Scenario, tracks: Sequence[str]) -> list[Utterance]:
    """The scenario's utterances on the given tracks, in order of their end."""
    return sorted((u for u in scenario.utterances if u.track in tracks), key=lambda u: u.end_s)


def check_codec(codec: str) -> Literal["PCMU", "PCMA"]:
    """A call's codec: PCMU or PCMA (ValueError otherwise)."""
    if codec == "PCMU":
        return "PCMU"
    if codec == "PCMA":
        return "PCMA"
    raise ValueError(f"a call's codec is PCMU or PCMA, got {codec!r}")


def scenario_arg(scenario: str | Scenario) -> str | dict[str, Any]:
    """How a scenario travels to the sandbox's process: a library name, or its spec."""
    if isinstance(scenario, Scenario):
        try:
            if get_scenario(scenario.name) is scenario:
                return scenario.name
        except ValueError:
            pass
        return scenario.to_spec()
    return scenario
