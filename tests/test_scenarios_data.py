"""Checks on the committed conversation library in ``telnyx_nb/sandbox/scenarios/``.

The sandbox streams these clips as call audio and times ``call.transcription`` webhooks from the
manifest's word times, so the manifest and the audio must agree: every clip exists at both rates
in the format the codecs expect, word times bound the speech they name, and turns never overlap.
Only committed files are read (the generator, ``scripts/make_scenarios.py``, needs espeak-ng and
sox; these tests do not).
"""

from __future__ import annotations

import json
import wave
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "telnyx_nb" / "sandbox" / "scenarios"
MANIFEST = json.loads((SCENARIO_DIR / "scenarios.json").read_text(encoding="utf-8"))
SAMPLE_RATES = (8000, 16000)
CLIP_SUFFIX = {8000: "8k", 16000: "16k"}
TRACKS = {"inbound", "outbound"}
EXPECTED_DURATION_S = {"support_call": (30.0, 40.0), "appointment": (20.0, 30.0), "survey": (15.0, 20.0)}

TOLERANCE_S = 0.02  # word and clip times must match the audio within 20 ms
FRAME_S = 0.005
PEAK_DBFS_RANGE = (-4.0, -2.0)  # clips are normalised to about -3 dBFS
WORD_MIN_RMS_DBFS = -35.0
EDGE_MIN_DBFS = -60.0  # loudest 5 ms frame within 20 ms of each word edge
SILENCE_MAX_DBFS = -70.0  # between words, 20 ms clear of either word
SPEECH_OVER_SILENCE_DB = 30.0
MIN_TOTAL_SPEECH_S = 60.0
MAX_DIRECTORY_BYTES = 4 * 1024 * 1024

UTTERANCES = [(name, utterance) for name, scenario in MANIFEST["scenarios"].items()
              for utterance in scenario["utterances"]]
CLIPS = [pytest.param(utterance, rate, id=f"{utterance['clip']}@{CLIP_SUFFIX[rate]}")
         for _, utterance in UTTERANCES for rate in SAMPLE_RATES]


def clip_path(utterance: dict, rate: int) -> Path:
    """Where the manifest says an utterance's clip at ``rate`` lives."""
    return SCENARIO_DIR / f"{utterance['clip']}.{CLIP_SUFFIX[rate]}.wav"


def read_clip(utterance: dict, rate: int) -> np.ndarray:
    """An utterance's clip at ``rate`` as float samples in [-1, 1)."""
    with wave.open(str(clip_path(utterance, rate)), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2") / 32768.0


def dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS; -200 for an empty or all-zero span."""
    if samples.size == 0:
        return -200.0
    return float(20 * np.log10(np.sqrt(np.mean(samples**2)) + 1e-10))


def loudest_frame_dbfs(samples: np.ndarray, rate: int) -> float:
    """Level of the loudest 5 ms frame in ``samples``."""
    hop = int(rate * FRAME_S)
    count = samples.size // hop
    return max(dbfs(frame) for frame in samples[: count * hop].reshape(count, hop))


def span(samples: np.ndarray, rate: int, utterance: dict, start_s: float, end_s: float) -> np.ndarray:
    """The samples of a clip between two absolute call times."""
    first = max(0, round((start_s - utterance["start_s"]) * rate))
    last = min(samples.size, round((end_s - utterance["start_s"]) * rate))
    return samples[first:last]


def test_manifest_header():
    assert MANIFEST["format"] == 1
    assert MANIFEST["generator"] == "scripts/make_scenarios.py"
    assert MANIFEST["espeak_ng_version"]
    assert MANIFEST["sample_rates"] == list(SAMPLE_RATES)
    assert set(MANIFEST["scenarios"]) == set(EXPECTED_DURATION_S)


@pytest.mark.parametrize("name", sorted(EXPECTED_DURATION_S))
def test_scenario_length_and_turns(name):
    scenario = MANIFEST["scenarios"][name]
    low, high = EXPECTED_DURATION_S[name]
    assert low <= scenario["duration_s"] <= high
    assert scenario["title"] and scenario["description"]
    utterances = scenario["utterances"]
    assert [u["id"] for u in utterances] == [f"u{n:02d}" for n in range(1, len(utterances) + 1)]
    assert {u["track"] for u in utterances} == TRACKS
    assert 0.5 <= utterances[0]["start_s"] <= 1.0
    for before, after in pairwise(utterances):
        assert before["track"] != after["track"], f"{after['id']} does not change speaker"
        assert 0.4 <= after["start_s"] - before["end_s"] <= 1.0, f"gap before {after['id']}"
    assert utterances[-1]["end_s"] <= scenario["duration_s"]


@pytest.mark.parametrize("name,utterance", UTTERANCES, ids=[u["clip"] for _, u in UTTERANCES])
def test_utterance_fields_and_words(name, utterance):
    assert utterance["track"] in TRACKS
    assert utterance["clip"] == f"{name}/{utterance['id']}"
    assert 0.80 <= utterance["confidence"] <= 0.99
    assert utterance["start_s"] < utterance["end_s"]
    words = utterance["words"]
    assert words, "utterance has no words"
    assert words[0]["start_s"] == pytest.approx(utterance["start_s"], abs=0.001), "clip starts late"
    assert words[-1]["end_s"] == pytest.approx(utterance["end_s"], abs=0.001), "clip ends late"
    text_position = 0
    for word in words:
        assert word["start_s"] < word["end_s"], f"{word['word']!r} has no duration"
        found = utterance["text"].find(word["word"], text_position)
        assert found >= 0, f"{word['word']!r} is not in the text after position {text_position}"
        text_position = found + len(word["word"])
    for before, after in pairwise(words):
        assert before["end_s"] <= after["start_s"], f"{before['word']!r} overlaps {after['word']!r}"


@pytest.mark.parametrize("utterance,rate", CLIPS)
def test_clip_format_and_duration(utterance, rate):
    with wave.open(str(clip_path(utterance, rate)), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == rate
        assert wav.getcomptype() == "NONE"
        duration_s = wav.getnframes() / rate
    assert duration_s == pytest.approx(utterance["end_s"] - utterance["start_s"], abs=TOLERANCE_S)


@pytest.mark.parametrize("utterance,rate", CLIPS)
def test_clip_is_normalised_and_unclipped(utterance, rate):
    samples = read_clip(utterance, rate)
    peak_dbfs = 20 * np.log10(np.max(np.abs(samples)))
    assert PEAK_DBFS_RANGE[0] <= peak_dbfs <= PEAK_DBFS_RANGE[1]
    assert dbfs(samples) > -30.0, "clip is nearly silent"


@pytest.mark.parametrize("utterance,rate", CLIPS)
def test_word_spans_hold_the_speech(utterance, rate):
    """Each word span is loud, has speech within 20 ms of both edges, and the time between
    words (20 ms clear of them) is silent, so the span bounds the word's energy."""
    samples = read_clip(utterance, rate)
    words = utterance["words"]
    gaps = [span(samples, rate, utterance, before["end_s"] + TOLERANCE_S, after["start_s"] - TOLERANCE_S)
            for before, after in pairwise(words)]
    silence_dbfs = dbfs(np.concatenate(gaps)) if gaps else -200.0
    assert silence_dbfs <= SILENCE_MAX_DBFS, f"between-word silence is at {silence_dbfs:.1f} dBFS"
    for word in words:
        level = dbfs(span(samples, rate, utterance, word["start_s"], word["end_s"]))
        assert level >= WORD_MIN_RMS_DBFS, f"{word['word']!r} is at {level:.1f} dBFS"
        assert level - silence_dbfs >= SPEECH_OVER_SILENCE_DB
        onset = span(samples, rate, utterance, word["start_s"], word["start_s"] + TOLERANCE_S)
        offset = span(samples, rate, utterance, word["end_s"] - TOLERANCE_S, word["end_s"])
        assert loudest_frame_dbfs(onset, rate) >= EDGE_MIN_DBFS, f"{word['word']!r} starts in silence"
        assert loudest_frame_dbfs(offset, rate) >= EDGE_MIN_DBFS, f"{word['word']!r} ends in silence"


def test_total_speech_is_at_least_a_minute():
    total_s = sum(u["end_s"] - u["start_s"] for _, u in UTTERANCES)
    assert total_s >= MIN_TOTAL_SPEECH_S


def test_directory_holds_exactly_the_manifest_clips_and_stays_small():
    expected = {clip_path(u, rate) for _, u in UTTERANCES for rate in SAMPLE_RATES}
    assert set(SCENARIO_DIR.glob("*/*.wav")) == expected
    total_bytes = sum(path.stat().st_size for path in SCENARIO_DIR.rglob("*") if path.is_file())
    assert total_bytes <= MAX_DIRECTORY_BYTES
