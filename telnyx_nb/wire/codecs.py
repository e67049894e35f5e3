"""G.711 mu-law / A-law and L16 audio codecs as numpy lookup tables.

Decoding is a 256-entry table lookup and encoding a 65,536-entry one, both
computed once at import from the ITU-T G.711 reference algorithm (the one
CPython's former ``audioop`` implemented), so results are bit-identical to it
without depending on ``audioop``, which Python 3.13 removed. Decode in bulk:
one call per second of audio costs microseconds; one per 20 ms chunk is ~10x
slower per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

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
    """G.711 mu-law bytes to int16 samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples to G.711 mu-law bytes."""
    return _ULAW_ENCODE[_as_int16(samples).view(np.uint16)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """G.711 A-law bytes to int16 samples."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples to G.711 A-law bytes."""
    return _ALAW_ENCODE[_as_int16(samples).view(np.uint16)].tobytes()


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
    """int16 samples at ``rate`` Hz to int16 at ``target`` Hz, by linear interpolation.

    No anti-alias filter: good enough for speech played into a call, not for analysis.
    """
    samples = np.asarray(samples, dtype=np.int16)
    if rate == target or not len(samples):
        return samples
    n = round(len(samples) * target / rate)
    return np.round(np.interp(np.arange(n) * (rate / target), np.arange(len(samples)), samples)).astype(np.int16)
