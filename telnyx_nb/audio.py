"""``Audio``: int16 samples and a rate, with a WAV writer and a notebook player."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["Audio"]


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
