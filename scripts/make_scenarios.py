#!/usr/bin/env python3
"""Generate the sandbox's scripted conversation library (speech clips + word-timed transcripts).

The Telnyx emulator (``telnyx_nb.sandbox``) plays a scripted two-party conversation on a call:
it streams the clips as media frames and sends ``call.transcription`` webhooks timed to the
words. This script produces that library in ``telnyx_nb/sandbox/scenarios/``:

* ``scenarios.json`` -- the manifest: per scenario, its utterances (track, start/end, text,
  confidence, clip name) and each word's absolute start/end in seconds from call start.
* ``NAME/uNN.8k.wav`` and ``NAME/uNN.16k.wav`` -- one mono 16-bit PCM clip per utterance and
  rate, starting at the utterance's first word and ending at its last.

Why word by word: espeak-ng's command line reports no word timings, and alignment by silence
detection in continuous speech is unreliable (stop closures look like word gaps). So every word
is synthesised on its own, its leading and trailing silence trimmed, and the words are joined
with short silent gaps. A word's span is then known exactly from the concatenation and bounds
its speech energy by construction; ``verify_clip`` re-checks this on the final files at each
rate and fails loudly otherwise. To keep word-by-word speech from sounding like a list, words
inside a sentence are spoken with continuation intonation (a trailing comma) over a falling
pitch line, only the sentence's last word gets the sentence's own punctuation (fall or
question rise), a few function words use their weak (schwa) form, and pauses are longer after
commas and sentence ends than between words.

Output is deterministic: espeak-ng and sox are run with explicit voice, speed, pitch and
filter settings, all random choices (gaps, confidences) come from RNGs seeded by the scenario
name, and the WAV and JSON writers are byte-stable. Re-running rewrites identical bytes for the
same espeak-ng and sox versions (both are recorded in the manifest).

Requires Debian's ``espeak-ng`` and ``sox`` (``apt-get install -y espeak-ng sox``) and numpy.
Usage: ``python3 scripts/make_scenarios.py``
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT_DIR = REPO_ROOT / "telnyx_nb" / "sandbox" / "scenarios"
MANIFEST_NAME = "scenarios.json"
GENERATOR = "scripts/make_scenarios.py"

ESPEAK_RATE = 22050  # espeak-ng's native output rate; every clip is resampled from it
SAMPLE_RATES = (8000, 16000)
CLIP_SUFFIX = {8000: "8k", 16000: "16k"}
PEAK_DBFS = -3.0  # headroom so G.711 companding and resampler overshoot never clip

# Trimming: 5 ms analysis frames; a frame is speech if its RMS is within 40 dB of the word's
# loudest frame (quiet onsets such as /h/ and /th/ sit about 35 dB below the vowel peak).
TRIM_FRAME_S = 0.005
TRIM_BELOW_PEAK_DB = 40.0
FADE_S = 0.003  # raised-cosine edge on each trimmed word so cuts never click

# Pauses (seconds, drawn uniformly) that make the joined words sound like phrased speech.
WORD_GAP_S = (0.05, 0.08)
COMMA_GAP_S = (0.16, 0.22)
SENTENCE_GAP_S = (0.28, 0.36)
TURN_GAP_S = (0.45, 0.85)
FIRST_UTTERANCE_START_S = (0.6, 0.9)
CALL_TAIL_S = 0.8  # silence after the last utterance before the scripted hangup
CONFIDENCE_RANGE = (0.82, 0.98)
PITCH_DECLINATION = 10  # espeak-ng pitch units from a sentence's first word to its last

# Weak (reduced) pronunciations, as espeak-ng phoneme mnemonics, for function words that
# espeak-ng would otherwise say in their stressed citation form when spoken alone ("a" as
# "ay"). Used only for words inside a sentence with no punctuation of their own.
WEAK_FORMS = {"a": "@", "an": "@n", "and": "@nd", "of": "@v", "to": "t@", "at": "@t",
              "from": "fr@m", "can": "k@n"}

# Checks applied to every final clip at every rate (the tests repeat them on committed files).
TIMING_TOLERANCE_S = 0.02  # word edges within 20 ms of speech energy; clip length vs manifest
EDGE_MIN_DBFS = -60.0  # loudest 5 ms frame within the tolerance of each word edge
WORD_MIN_RMS_DBFS = -35.0
GAP_MAX_RMS_DBFS = -70.0

TERMINAL_PUNCTUATION = ".?!"
TOKEN_PATTERN = re.compile(
    r"\{(?P<written>[^|}]+)\|(?P<spoken>[^}]+)\}(?P<punct>[.,?!;:]*)|(?P<plain>\S+)")
TRAILING_PUNCTUATION = re.compile(r"[.,?!;:]+$")


@dataclass(frozen=True)
class Speaker:
    """One party's espeak-ng voice: ``voice`` is passed to ``-v``, ``speed_wpm`` to ``-s``
    and ``pitch`` (0-99) to ``-p``; ``role`` says who the party is in the conversation."""

    role: str
    voice: str
    speed_wpm: int
    pitch: int


@dataclass(frozen=True)
class Scenario:
    """A scripted call. ``turns`` are ``(track, text)`` pairs, the speakers taking turns:
    ``inbound`` is the far-end party the app called (audio Telnyx receives), ``outbound`` the
    app/agent side (audio Telnyx sends). In turn text ``{written|spoken}`` gives a transcript
    word a different spoken form, e.g. ``{471926|4 7 1 9 2 6}`` so an order number is read
    digit by digit."""

    name: str
    title: str
    description: str
    inbound: Speaker
    outbound: Speaker
    turns: tuple[tuple[str, str], ...]


SCENARIOS = (
    Scenario(
        name="support_call",
        title="Customer support: delayed delivery",
        description=(
            "A support agent returns a customer's call about a late order: the customer reads "
            "the order number, the agent finds the package held at a depot, gives a new "
            "delivery date and refunds the shipping fee."
        ),
        inbound=Speaker(role="customer", voice="en-gb+m3", speed_wpm=235, pitch=45),
        outbound=Speaker(role="support agent", voice="en-us+f1", speed_wpm=245, pitch=55),
        turns=(
            ("inbound", "Hello, this is Chris."),
            ("outbound", "Hi Chris, it's Maya from Northwind, about your late delivery."),
            ("inbound", "Yes. My order was due on Tuesday, and it still hasn't arrived."),
            ("outbound", "Sorry about that. What's the order number?"),
            ("inbound", "Sure, it's {471926|4 7 1 9 2 6}."),
            ("outbound", "Thanks. It was held at our Denver depot during the storm."),
            ("inbound", "So when will I get it?"),
            ("outbound", "It will arrive tomorrow before noon."),
            ("inbound", "Great. Do I need to sign for it?"),
            ("outbound", "No. I've also refunded your shipping fee of {$9.95|nine ninety five}."),
            ("inbound", "That's kind, thank you."),
            ("outbound", "You're welcome. Goodbye."),
        ),
    ),
    Scenario(
        name="appointment",
        title="Clinic appointment booking",
        description=(
            "A clinic's scheduling line calls a patient to book a follow-up visit: it offers two "
            "slots, the patient picks one, and the clinic confirms it with instructions."
        ),
        inbound=Speaker(role="patient", voice="en-us+m7", speed_wpm=235, pitch=50),
        outbound=Speaker(role="clinic receptionist", voice="en-gb+f1", speed_wpm=245, pitch=60),
        turns=(
            ("inbound", "Hello?"),
            ("outbound", "Hi, this is Riverside Clinic calling for Alex Morgan about a follow-up visit."),
            ("inbound", "Yes, speaking. What times do you have?"),
            ("outbound", "Thursday the 12th at 10:30, or Friday at 3:15."),
            ("inbound", "Thursday at 10:30 works."),
            ("outbound", "You're booked. Please bring your insurance card."),
            ("inbound", "Will do. Should I fast before?"),
            ("outbound", "No, that's not needed. We'll text you a reminder."),
            ("inbound", "Great, thank you."),
            ("outbound", "Goodbye."),
        ),
    ),
    Scenario(
        name="survey",
        title="Automated satisfaction survey",
        description=(
            "An automated survey calls a customer after a delivery: it asks for a rating from "
            "1 to 5, a likelihood to recommend from 0 to 10 and a yes/no question."
        ),
        inbound=Speaker(role="customer", voice="en-gb+m6", speed_wpm=235, pitch=40),
        outbound=Speaker(role="automated survey", voice="en-us+f1", speed_wpm=250, pitch=65),
        turns=(
            ("inbound", "Hello?"),
            ("outbound", "Hi, this is a Northwind survey. "
                         "From 1 to 5, how satisfied were you with your delivery?"),
            ("inbound", "4."),
            ("outbound", "From 0 to 10, would you recommend us?"),
            ("inbound", "Probably 8."),
            ("outbound", "Did it arrive on time?"),
            ("inbound", "Yes, it did."),
            ("outbound", "Thank you, goodbye."),
        ),
    ),
)


@dataclass(frozen=True)
class Token:
    """One transcript word: ``written`` as it appears in the transcript, ``spoken`` as
    espeak-ng should say it, and ``punct`` the punctuation that follows it in the text."""

    written: str
    spoken: str
    punct: str


@dataclass(frozen=True)
class TimedWord:
    """A word's position inside its utterance clip, in samples at ``ESPEAK_RATE``."""

    word: str
    start: int
    end: int


def parse_tokens(text: str) -> list[Token]:
    """Split turn text into tokens, resolving ``{written|spoken}`` markup."""
    tokens = []
    for match in TOKEN_PATTERN.finditer(text):
        if match["plain"] is not None:
            punct_match = TRAILING_PUNCTUATION.search(match["plain"])
            punct = punct_match.group() if punct_match else ""
            written = match["plain"][: len(match["plain"]) - len(punct)]
            tokens.append(Token(written=written, spoken=written, punct=punct))
        else:
            tokens.append(Token(written=match["written"], spoken=match["spoken"], punct=match["punct"]))
    return tokens


def display_text(tokens: list[Token]) -> str:
    """The transcript text of an utterance: written forms with their punctuation."""
    return " ".join(token.written + token.punct for token in tokens)


def tool_version(command: list[str], pattern: str) -> str:
    """Run a ``--version`` command and extract the version with ``pattern``'s first group."""
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(pattern, output)
    if not match:
        sys.exit(f"cannot parse version from {' '.join(command)}: {output!r}")
    return match.group(1)


def espeak(text: str, speaker: Speaker, pitch: int, workdir: Path) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng and return float samples in [-1, 1] at ESPEAK_RATE."""
    wav_path = workdir / "piece.wav"
    subprocess.run(
        ["espeak-ng", "-v", speaker.voice, "-s", str(speaker.speed_wpm), "-p", str(pitch),
         "-z", "-w", str(wav_path), "--stdin"],
        input=text.encode("utf-8"), check=True, capture_output=True,
    )
    with wave.open(str(wav_path), "rb") as wav:
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, ESPEAK_RATE):
            sys.exit(f"espeak-ng wrote an unexpected WAV format for {text!r}")
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if samples.size == 0:
        sys.exit(f"espeak-ng produced no audio for {text!r}")
    return samples.astype(np.float64) / 32768.0


def frame_rms_dbfs(samples: np.ndarray, rate: int) -> np.ndarray:
    """RMS level of consecutive 5 ms frames in dBFS (a partial last frame is dropped)."""
    hop = max(1, int(rate * TRIM_FRAME_S))
    count = samples.size // hop
    frames = samples[: count * hop].reshape(count, hop)
    return 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-10)


def trim_to_speech(samples: np.ndarray) -> np.ndarray:
    """Cut leading and trailing silence from a synthesised word and fade its edges."""
    hop = int(ESPEAK_RATE * TRIM_FRAME_S)
    levels = frame_rms_dbfs(samples, ESPEAK_RATE)
    speech_frames = np.flatnonzero(levels >= levels.max() - TRIM_BELOW_PEAK_DB)
    trimmed = samples[speech_frames[0] * hop: (speech_frames[-1] + 1) * hop].copy()
    fade_length = int(ESPEAK_RATE * FADE_S)
    fade = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade_length))
    trimmed[:fade_length] *= fade
    trimmed[-fade_length:] *= fade[::-1]
    return trimmed


def spoken_text(token: Token, is_sentence_end: bool) -> str:
    """What espeak-ng is asked to say for one token, with punctuation chosen for intonation:
    the sentence's own mark on its last word, a comma (continuation rise) on the others."""
    if is_sentence_end:
        has_terminal_mark = bool(token.punct) and token.punct[-1] in TERMINAL_PUNCTUATION
        return token.spoken + (token.punct[-1] if has_terminal_mark else ".")
    if not token.punct and token.spoken.lower() in WEAK_FORMS:
        return f"[[{WEAK_FORMS[token.spoken.lower()]}]],"
    return token.spoken + ","


def sentences(tokens: list[Token]) -> list[list[Token]]:
    """Group tokens into sentences, each ending at a token with terminal punctuation."""
    groups: list[list[Token]] = [[]]
    for token in tokens:
        groups[-1].append(token)
        if token.punct and token.punct[-1] in TERMINAL_PUNCTUATION:
            groups.append([])
    return [group for group in groups if group]


def pause_range_after(token: Token) -> tuple[float, float]:
    """The range a pause after ``token`` is drawn from: longest after a sentence end,
    medium after a comma-like mark, short between words."""
    if token.punct and token.punct[-1] in TERMINAL_PUNCTUATION:
        return SENTENCE_GAP_S
    return COMMA_GAP_S if token.punct else WORD_GAP_S


def synthesize_utterance(tokens: list[Token], speaker: Speaker, rng: random.Random,
                         workdir: Path) -> tuple[np.ndarray, list[TimedWord]]:
    """Speak an utterance word by word and return its audio with each word's sample span.
    Pitch falls by PITCH_DECLINATION across each sentence, as in read speech."""
    pieces: list[np.ndarray] = []
    timed_words: list[TimedWord] = []
    position = 0
    previous: Token | None = None
    for sentence in sentences(tokens):
        for index, token in enumerate(sentence):
            if previous is not None:
                pause = np.zeros(round(rng.uniform(*pause_range_after(previous)) * ESPEAK_RATE))
                pieces.append(pause)
                position += pause.size
            progress = index / (len(sentence) - 1) if len(sentence) > 1 else 0.5
            pitch = speaker.pitch + round(PITCH_DECLINATION * (0.5 - progress))
            text = spoken_text(token, is_sentence_end=index == len(sentence) - 1)
            audio = trim_to_speech(espeak(text, speaker, pitch, workdir))
            timed_words.append(TimedWord(word=token.written, start=position, end=position + audio.size))
            pieces.append(audio)
            position += audio.size
            previous = token
    return np.concatenate(pieces), timed_words


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample from ESPEAK_RATE to ``rate`` with sox's very-high-quality band-limited
    ``rate`` effect, in 32-bit float so nothing is clipped or dithered on the way."""
    result = subprocess.run(
        ["sox", "-D", "-t", "raw", "-r", str(ESPEAK_RATE), "-e", "floating-point", "-b", "32",
         "-c", "1", "-L", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-L", "-",
         "rate", "-v", str(rate)],
        input=samples.astype("<f4").tobytes(), capture_output=True, check=True,
    )
    return np.frombuffer(result.stdout, dtype="<f4").astype(np.float64)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Scale to a PEAK_DBFS peak and quantise to 16-bit signed PCM."""
    scale = 10 ** (PEAK_DBFS / 20) / np.max(np.abs(samples))
    return np.round(samples * scale * 32767).astype("<i2")


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    """Write mono 16-bit PCM ``pcm`` as a canonical 44-byte-header WAV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())


def rms_dbfs(pcm: np.ndarray) -> float:
    """RMS level of 16-bit samples in dBFS (-200 for an empty or all-zero span)."""
    if pcm.size == 0:
        return -200.0
    return float(20 * np.log10(np.sqrt(np.mean((pcm / 32768.0) ** 2)) + 1e-10))


def verify_clip(label: str, pcm: np.ndarray, rate: int, utterance: dict) -> None:
    """Fail loudly unless the final clip matches its manifest entry: duration, and every
    word span holding speech (loud enough overall and within 20 ms of each edge) with near
    silence between words."""
    problems = []
    clip_duration = pcm.size / rate
    if abs(clip_duration - (utterance["end_s"] - utterance["start_s"])) > TIMING_TOLERANCE_S:
        problems.append(f"clip lasts {clip_duration:.3f} s, manifest says "
                        f"{utterance['end_s'] - utterance['start_s']:.3f} s")

    def samples_between(start_s: float, end_s: float) -> np.ndarray:
        first = max(0, round((start_s - utterance["start_s"]) * rate))
        last = min(pcm.size, round((end_s - utterance["start_s"]) * rate))
        return pcm[first:last]

    words = utterance["words"]
    for word in words:
        span = samples_between(word["start_s"], word["end_s"])
        if rms_dbfs(span) < WORD_MIN_RMS_DBFS:
            problems.append(f"word {word['word']!r} is too quiet ({rms_dbfs(span):.1f} dBFS)")
        onset = samples_between(word["start_s"], word["start_s"] + TIMING_TOLERANCE_S)
        offset = samples_between(word["end_s"] - TIMING_TOLERANCE_S, word["end_s"])
        for edge, window in (("start", onset), ("end", offset)):
            if frame_rms_dbfs(window / 32768.0, rate).max() < EDGE_MIN_DBFS:
                problems.append(f"word {word['word']!r} has no speech within 20 ms of its {edge}")
    for before, after in itertools.pairwise(words):
        gap = samples_between(before["end_s"] + TIMING_TOLERANCE_S, after["start_s"] - TIMING_TOLERANCE_S)
        if rms_dbfs(gap) > GAP_MAX_RMS_DBFS:
            problems.append(f"gap after {before['word']!r} is not silent ({rms_dbfs(gap):.1f} dBFS)")
    if problems:
        sys.exit(f"{label} @ {rate} Hz failed verification:\n  " + "\n  ".join(problems))


def build_scenario(scenario: Scenario, workdir: Path) -> tuple[dict, dict[Path, tuple[np.ndarray, int]]]:
    """Synthesise one scenario: its manifest entry and its clips keyed by relative path."""
    rng = random.Random(scenario.name)
    speakers = {"inbound": scenario.inbound, "outbound": scenario.outbound}
    utterances = []
    clips: dict[Path, tuple[np.ndarray, int]] = {}
    cursor_s = rng.uniform(*FIRST_UTTERANCE_START_S)
    for number, (track, text) in enumerate(scenario.turns, start=1):
        tokens = parse_tokens(text)
        audio, timed_words = synthesize_utterance(tokens, speakers[track], rng, workdir)
        start_s = round(cursor_s, 3)
        utterance_id = f"u{number:02d}"
        utterance = {
            "id": utterance_id,
            "track": track,
            "start_s": start_s,
            "end_s": round(start_s + audio.size / ESPEAK_RATE, 3),
            "text": display_text(tokens),
            "confidence": round(rng.uniform(*CONFIDENCE_RANGE), 3),
            "clip": f"{scenario.name}/{utterance_id}",
            "words": [
                {"word": word.word,
                 "start_s": round(start_s + word.start / ESPEAK_RATE, 3),
                 "end_s": round(start_s + word.end / ESPEAK_RATE, 3)}
                for word in timed_words
            ],
        }
        for rate in SAMPLE_RATES:
            pcm = to_pcm16(resample(audio, rate))
            verify_clip(utterance["clip"], pcm, rate, utterance)
            clips[Path(scenario.name) / f"{utterance_id}.{CLIP_SUFFIX[rate]}.wav"] = (pcm, rate)
        utterances.append(utterance)
        cursor_s = utterance["end_s"] + rng.uniform(*TURN_GAP_S)
    entry = {
        "title": scenario.title,
        "description": scenario.description,
        "duration_s": round(utterances[-1]["end_s"] + CALL_TAIL_S, 3),
        "speakers": {track: {"role": speaker.role, "voice": speaker.voice,
                             "speed_wpm": speaker.speed_wpm, "pitch": speaker.pitch}
                     for track, speaker in speakers.items()},
        "utterances": utterances,
    }
    return entry, clips


def remove_previous_output() -> None:
    """Delete clips and manifest from an earlier run so renamed scenarios leave no orphans;
    anything else in the directory is left alone."""
    for clip in OUTPUT_DIR.glob("*/*.wav"):
        clip.unlink()
    for scenario_dir in OUTPUT_DIR.glob("*/"):
        if scenario_dir.is_dir() and not any(scenario_dir.iterdir()):
            scenario_dir.rmdir()
    (OUTPUT_DIR / MANIFEST_NAME).unlink(missing_ok=True)


def main() -> None:
    """Regenerate the whole library in OUTPUT_DIR and print a short summary."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found; install it with: apt-get install -y espeak-ng sox")
    manifest = {
        "format": 1,
        "generator": GENERATOR,
        "espeak_ng_version": tool_version(["espeak-ng", "--version"], r"text-to-speech:\s*(\S+)"),
        "sox_version": tool_version(["sox", "--version"], r"SoX v(\S+)"),
        "sample_rates": list(SAMPLE_RATES),
        "scenarios": {},
    }
    all_clips: dict[Path, tuple[np.ndarray, int]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for scenario in SCENARIOS:
            entry, clips = build_scenario(scenario, Path(workdir))
            manifest["scenarios"][scenario.name] = entry
            all_clips.update(clips)

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    remove_previous_output()
    for relative_path, (pcm, rate) in all_clips.items():
        write_wav(OUTPUT_DIR / relative_path, pcm, rate)
    (OUTPUT_DIR / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")

    total_speech_s = sum(u["end_s"] - u["start_s"] for entry in manifest["scenarios"].values()
                         for u in entry["utterances"])
    for name, entry in manifest["scenarios"].items():
        print(f"{name}: {len(entry['utterances'])} utterances, {entry['duration_s']:.1f} s")
    print(f"total speech {total_speech_s:.1f} s, {len(all_clips)} clips written to {OUTPUT_DIR}")


if __name__ == "__main__":
    main()
