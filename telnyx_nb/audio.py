"""``Audio``: int16 samples and a rate, with a WAV writer and a notebook player; and the two
sample conversions that audio going into a call needs (``to_int16``, ``resample``)."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["Audio", "to_int16", "resample"]


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono 16-bit audio as assembled from a stream or fork (sample index is time)."""

    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"Audio({len(self.samples)} samples, {self.rate} Hz, {self.duration:.2f} s)"

    def wav_bytes(self) -> bytes:
        """The audio as a 16-bit mono PCM WAV file, in memory."""
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.rate)
            out.writeframes(np.asarray(self.samples, dtype="<i2").tobytes())
        return buffer.getvalue()

    def to_wav(self, path: str | PathLike[str]) -> Path:
        """Write a 16-bit mono PCM WAV file and return its path."""
        path = Path(path)
        path.write_bytes(self.wav_bytes())
        return path

    def _repr_html_(self) -> str:
        """An HTML5 player in Jupyter (IPython.display.Audio around the WAV bytes, unscaled)."""
        from IPython.display import Audio as Player

        return Player(data=self.wav_bytes())._repr_html_()


def to_int16(samples: np.ndarray) -> np.ndarray:
    """int16 as is; floats are taken as [-1, 1] and scaled; other integers are clipped."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples
    if samples.dtype.kind == "f":
        samples = np.round(samples * 32767)
    return np.clip(samples, -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """int16 samples at ``rate`` Hz to int16 at ``target`` Hz, by linear interpolation.

    No anti-alias filter: good enough for speech played into a call, not for analysis.
    """
    samples = np.asarray(samples, dtype=np.int16)
    if rate == target or not len(samples):
        return samples
    n = round(len(samples) * target / rate)
    return np.round(np.interp(np.arange(n) * (rate / target), np.arange(len(samples)), samples)).astype(np.int16)
