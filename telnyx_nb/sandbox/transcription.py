"""Scripted speech recognition: ``call.transcription`` results timed to the scenario's words.

One final result per utterance, at its ``end_s``, with the utterance's text and confidence.
With ``transcription_engine_config.interim_results`` true, interim results (``is_final``
false) come first: at the end of each word but the last, the words so far, space-joined
without punctuation. Started mid-call, only results due after the start are sent (an
utterance in progress still gets its final result). Times are seconds of call media.
"""

from __future__ import annotations

from dataclasses import dataclass

from telnyx_nb.sandbox.scenarios import Scenario, utterances_on

__all__ = ["Result", "Transcriber", "TRACKS_FOR"]

TRACKS_FOR = {"inbound": ("inbound",), "outbound": ("outbound",), "both": ("inbound", "outbound")}


@dataclass(frozen=True, slots=True)
class Result:
    at_s: float
    track: str
    transcript: str
    confidence: float
    is_final: bool

    def transcription_data(self) -> dict:
        return {"confidence": self.confidence, "is_final": self.is_final, "transcript": self.transcript,
                "transcription_track": self.track}


class Transcriber:
    """The results of a scenario for some tracks, released as call media time passes."""

    def __init__(self, scenario: Scenario, tracks: str = "inbound", *, interim: bool = False,
                 start_s: float = 0.0) -> None:
        results: list[Result] = []
        for u in utterances_on(scenario, TRACKS_FOR[tracks]):
            if interim:
                for n, word in enumerate(u.words[:-1], start=1):
                    prefix = " ".join(w.word for w in u.words[:n])
                    results.append(Result(word.end_s, u.track, prefix, u.confidence, False))
            results.append(Result(u.end_s, u.track, u.text, u.confidence, True))
        results.sort(key=lambda r: (r.at_s, not r.is_final))
        self._results = [r for r in results if r.at_s >= start_s]
        self._next = 0

    def due(self, media_s: float) -> list[Result]:
        """Results whose time has come by ``media_s``, each returned once."""
        start = self._next
        while self._next < len(self._results) and self._results[self._next].at_s <= media_s:
            self._next += 1
        return self._results[start:self._next]
