"""``Audio`` (int16 samples and a rate, with a WAV writer and a notebook player), and
``assemble``: one track's stored payloads decoded into samples in media order."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from telnyx_nb.wire import codecs

__all__ = ["Audio", "assemble"]


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


def assemble(numbers: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, payload: bytes,
             codec: codecs.Codec) -> np.ndarray:
    """Decode one track: frames in number order, first copy of duplicates, gaps as silence.

    ``numbers`` are chunks or extended RTP sequence numbers. A missing number is filled with
    one frame of the codec's digital silence, the frame being the most common payload size,
    so the sample index is media time when frames have equal durations (Telnyx: 20 ms).
    A payload that ends in a partial sample (an odd-length L16 chunk) loses that byte, so one
    bad frame cannot make the whole track undecodable.
    """
    if not len(numbers):
        return np.zeros(0, dtype=np.int16)
    unique, first = np.unique(numbers, return_index=True)
    width = codec.bytes_per_sample
    frame = int(np.bincount(lengths).argmax())
    silence = codec.silence * (frame // len(codec.silence))
    pieces = []
    previous = unique[0] - 1
    view = memoryview(payload)
    for number, i in zip(unique.tolist(), first.tolist(), strict=True):
        if number - previous > 1:
            pieces.append(silence * (number - previous - 1))
        pieces.append(view[offsets[i] : offsets[i] + lengths[i] - lengths[i] % width])
        previous = number
    return codec.decode(b"".join(pieces))
