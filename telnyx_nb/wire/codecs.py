"""G.711 mu-law / A-law and L16 audio codecs as numpy lookup tables.

Decoding is a 256-entry table lookup and encoding a 65,536-entry one, both
computed once at import from the ITU-T G.711 reference algorithm (the one
CPython's former ``audioop`` implemented), so results are bit-identical to it
without depending on ``audioop``, which Python 3.13 removed. Decode in bulk:
one call per second of audio costs microseconds; one per 20 ms chunk is ~10x
slower per sample.

Resampling uses libsoxr (``soxr``, the resampler pipecat and most audio stacks use): its
anti-alias filter keeps what lies above the target's Nyquist frequency out of the band, where
linear interpolation folds it back (a 5 kHz tone at 48 kHz, taken to 8 kHz, becomes a 3 kHz
tone as loud as the original by interpolation, and is attenuated by 87 dB by soxr;
``tests/test_bidirectional.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import soxr

from telnyx_nb.wire.errors import TelnyxNbError
from telnyx_nb.wire.media import FRAME_MS

__all__ = [
    "Codec",
    "UnsupportedCodecError",
    "ulaw_decode",
    "ulaw_encode",
    "alaw_decode",
    "alaw_encode",
    "l16_decode",
    "l16_encode",
    "get_codec",
    "to_int16",
    "resample",
    "Resampler",
    "bidirectional_format",
    "BIDIRECTIONAL_DEFAULT",
    "CODECS",
]

ByteOrder = Literal["big", "little"]


class UnsupportedCodecError(TelnyxNbError, ValueError):
    """An encoding name this toolkit cannot decode (e.g. OPUS, G722, AMR-WB)."""


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _segment(magnitude: np.ndarray, segment_ends: list[int]) -> np.ndarray:
    """Index of the first segment whose end is >= magnitude (8 when none is)."""
    return np.searchsorted(np.asarray(segment_ends), magnitude, side="left")


def _ulaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit input
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 33
    seg = _segment(magnitude, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> (seg + 1)) & 0x0F))
    return _index_by_uint16((code ^ mask).astype(np.uint8))


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit input
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(magnitude, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    quant = (magnitude >> np.maximum(seg, 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | quant)
    return _index_by_uint16((code ^ mask).astype(np.uint8))


def _index_by_uint16(codes_from_min: np.ndarray) -> np.ndarray:
    """Reorder a table indexed by sample+32768 into one indexed by the sample's uint16 view."""
    return np.roll(codes_from_min, -32768)


_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()
_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()


def _as_int16(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {array.dtype}")
    return array


def ulaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """G.711 mu-law bytes to int16 samples (a table lookup: ``np.take``, about twice as fast as
    indexing with the bytes)."""
    return np.take(_ULAW_DECODE, np.frombuffer(data, dtype=np.uint8))


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples to G.711 mu-law bytes."""
    return np.take(_ULAW_ENCODE, _as_int16(samples).view(np.uint16)).tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """G.711 A-law bytes to int16 samples."""
    return np.take(_ALAW_DECODE, np.frombuffer(data, dtype=np.uint8))


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples to G.711 A-law bytes."""
    return np.take(_ALAW_ENCODE, _as_int16(samples).view(np.uint16)).tobytes()


def l16_decode(data: bytes | bytearray | memoryview, byteorder: ByteOrder = "big") -> np.ndarray:
    """16-bit linear PCM bytes to int16 samples; RFC 2586 says network (big-endian) order."""
    if len(data) % 2:
        raise ValueError(f"L16 payload has an odd number of bytes ({len(data)})")
    dtype = ">i2" if byteorder == "big" else "<i2"
    return np.frombuffer(data, dtype=dtype).astype(np.int16)


def l16_encode(samples: np.ndarray, byteorder: ByteOrder = "big") -> bytes:
    """int16 samples to 16-bit linear PCM bytes in the given byte order."""
    dtype = ">i2" if byteorder == "big" else "<i2"
    return _as_int16(samples).astype(dtype).tobytes()


@dataclass(frozen=True)
class Codec:
    """An audio encoding as Telnyx names it, with its sample format.

    ``silence`` is one encoded sample of digital silence, so a lost 20 ms
    chunk can be filled with ``silence * samples`` before decoding.
    """

    name: str
    sample_rate: int
    bytes_per_sample: int
    rtp_payload_type: int | None
    silence: bytes
    decode: Callable[[bytes], np.ndarray]
    encode: Callable[[np.ndarray], bytes]

    def frame_bytes(self, ptime_ms: int = FRAME_MS, sample_rate: int | None = None) -> int:
        """Payload bytes in one frame of ``ptime_ms`` (160 for PCMU at 8 kHz, 20 ms)."""
        rate = sample_rate or self.sample_rate
        return rate * ptime_ms // 1000 * self.bytes_per_sample


CODECS: dict[str, Codec] = {
    "PCMU": Codec("PCMU", 8000, 1, 0, b"\xff", ulaw_decode, ulaw_encode),
    "PCMA": Codec("PCMA", 8000, 1, 8, b"\xd5", alaw_decode, alaw_encode),
    # Telnyx documents L16 at 16 kHz; no static RTP payload type for that rate.
    "L16": Codec("L16", 16000, 2, None, b"\x00\x00", l16_decode, l16_encode),
}


def get_codec(name: str, *, l16_byteorder: ByteOrder = "big") -> Codec:
    """The codec for a Telnyx encoding name (``media_format.encoding``).

    Raises UnsupportedCodecError for encodings that need a real decoder
    library (G722, OPUS, AMR-WB) or are unknown.
    """
    key = name.upper()
    if key == "L16" and l16_byteorder != "big":
        return Codec(
            "L16", 16000, 2, None, b"\x00\x00",
            lambda data: l16_decode(data, l16_byteorder),
            lambda samples: l16_encode(samples, l16_byteorder),
        )
    try:
        return CODECS[key]
    except KeyError:
        raise UnsupportedCodecError(
            f"cannot decode encoding {name!r}; supported: {', '.join(CODECS)}"
        ) from None


def to_int16(samples: np.ndarray) -> np.ndarray:
    """int16 as is; floats are taken as [-1, 1] and scaled; other integers are clipped."""
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples
    if samples.dtype.kind == "f":
        samples = np.round(samples * 32767)
    return np.clip(samples, -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """int16 samples at ``rate`` Hz to int16 at ``target`` Hz (1-D in, 1-D out, about
    ``len * target / rate`` samples), with soxr's "HQ" filter: flat to 0.91 of the lower
    Nyquist frequency, what lies above it attenuated (>= 40 dB is asserted in the tests).
    One whole signal at a time (its ends are taken as silence); see :class:`Resampler` for a
    stream that arrives in chunks.
    """
    samples = np.asarray(samples, dtype=np.int16)
    if rate == target or not len(samples):
        return samples
    return _to_int16(soxr.resample(samples.astype(np.float32), rate, target, quality="HQ"))


def _to_int16(resampled: np.ndarray) -> np.ndarray:
    """soxr's float32 output (in int16 units) rounded and clipped to int16.

    soxr runs on float32 copies: its int16 path gives results that differ by a few LSB with the
    memory alignment of the input; a fresh float32 array is always aligned alike, so the same
    samples always resample to the same output.
    """
    return np.clip(np.round(resampled), -32768, 32767).astype(np.int16)


class Resampler:
    """A stream of int16 chunks from ``rate`` Hz to ``target`` Hz, with filter state kept across
    chunks (soxr's "HQ" stream): no edge at every chunk boundary.

    The filter looks ahead, so output lags input (soxr hands it out in blocks of about 0.1 s);
    :meth:`flush` returns what is still held when the input has ended (and starts afresh).
    """

    def __init__(self, rate: int, target: int) -> None:
        self.rate, self.target = rate, target
        self.pending = False
        self._stream = None if rate == target else soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Resample one chunk; returns the samples ready so far (possibly none)."""
        samples = np.asarray(samples, dtype=np.int16)
        if self._stream is None or not len(samples):
            return samples
        self.pending = True
        return _to_int16(self._stream.resample_chunk(samples.astype(np.float32)))

    def flush(self) -> np.ndarray:
        """The samples still held for the input so far; the next :meth:`push` starts a new signal."""
        if self._stream is None or not self.pending:
            return np.zeros(0, dtype=np.int16)
        out = _to_int16(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self._stream.clear()
        self.pending = False
        return out


#: RTP codecs whose clock is 8 kHz whatever ``stream_bidirectional_sampling_rate`` says.
_G711 = ("PCMU", "PCMA")
#: Telnyx's defaults in ``rtp`` mode: ``stream_bidirectional_codec`` and ``_sampling_rate`` (Hz).
BIDIRECTIONAL_DEFAULT = ("PCMU", 8000)


def bidirectional_format(options: Mapping[str, Any]) -> tuple[str, int] | None:
    """The encoding and sample rate Telnyx expects of audio sent back on a media stream, from
    the options the stream was requested with (``streaming_start``, or ``dial``/``answer``
    with a ``stream_url``); None in ``mp3`` mode, where ``media`` payloads are MP3 files.

    Telnyx's defaults (developers.telnyx.com streaming-start; the protocol reference, §1.3 and
    §3.3): ``stream_bidirectional_mode`` "mp3", ``stream_bidirectional_codec`` "PCMU",
    ``stream_bidirectional_sampling_rate`` 8000. G.711 (PCMU/PCMA) is 8 kHz whatever the rate
    says; L16 without a rate is 16 kHz ("L16 16 kHz" in the codec list). The sandbox plays
    application audio by the same rule.
    """
    if options.get("stream_bidirectional_mode") != "rtp":
        return None
    codec = str(options.get("stream_bidirectional_codec") or BIDIRECTIONAL_DEFAULT[0])
    if codec in _G711:
        return codec, 8000
    rate = options.get("stream_bidirectional_sampling_rate")
    if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0:
        return codec, rate
    return codec, 16000 if codec == "L16" else BIDIRECTIONAL_DEFAULT[1]
