"""Network impairments: what happens to each frame/packet and webhook, decided by a seeded RNG.

Per frame (WebSocket ``media``) or packet (forked RTP), in this order:
1. **loss** — dropped with probability ``loss``; with ``burst`` a Gilbert–Elliott channel
   decides instead (both may be set: a frame is dropped if either says so);
2. **duplicate** — sent twice, back to back, with probability ``duplicate``;
3. **delay** — ``jitter_ms``: extra delay drawn uniformly from [0, 2·jitter_ms] (mean
   ``jitter_ms``); ``reorder``: with that probability the frame is also held back 30 ms
   (1.5 frame times), so it goes out after the next frame.
Each track of each path (stream inbound/outbound, fork rx/tx) is its own channel with its own
RNG derived from ``seed``, so fates are reproducible whatever the interleaving.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["GilbertElliott", "Impairment", "Channel", "Fate", "REORDER_HOLD_S", "impairment_arg"]

Fate = Literal["delivered", "dropped", "duplicated"]
REORDER_HOLD_S = 0.030


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state burst-loss channel (per frame: Good→Bad with ``p``, Bad→Good with ``r``).

    In Good a frame is lost with ``loss_good``, in Bad with ``loss_bad``. Mean burst length is
    ``1/r`` frames; stationary loss is ``(r·loss_good + p·loss_bad)/(p + r)``. ``impair(burst=)``
    also takes a dict with these keys or a tuple ``(p, r[, loss_good[, loss_bad]])``.
    """

    p: float
    r: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p", "r", "loss_good", "loss_bad"):
            _probability(name, getattr(self, name))

    @classmethod
    def coerce(cls, value: GilbertElliott | dict | tuple | list | None) -> GilbertElliott | None:
        if value is None or isinstance(value, GilbertElliott):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (tuple, list)):
            return cls(*value)
        raise TypeError(f"burst must be a GilbertElliott, dict or tuple, got {type(value).__name__}")


def _probability(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Impairment:
    """The impairments of one call, from the moment they were set (see module docstring).

    ``codec_mismatch``: ``start.media_format`` (and the fork's payload type) names one G.711 law
    while payloads are encoded with the other (L16 streams are not affected).
    ``drop_ws_after_s``: the sandbox closes the WebSocket abruptly (TCP shutdown, no ``stop``
    frame, no close frame) that long after ``impair()`` — or after the stream starts, if it
    starts later. ``webhook_duplicate``: a webhook is delivered twice (same event id).
    ``webhook_reorder``: a webhook is held back and delivered after the call's next one.
    """

    loss: float = 0.0
    burst: GilbertElliott | None = None
    jitter_ms: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0
    codec_mismatch: bool = False
    drop_ws_after_s: float | None = None
    webhook_duplicate: float = 0.0
    webhook_reorder: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate", "webhook_duplicate", "webhook_reorder"):
            _probability(name, getattr(self, name))
        if not (isinstance(self.jitter_ms, (int, float)) and 0 <= self.jitter_ms <= 10_000):
            raise ValueError(f"jitter_ms must be in [0, 10000], got {self.jitter_ms!r}")
        if self.drop_ws_after_s is not None and not self.drop_ws_after_s >= 0:
            raise ValueError(f"drop_ws_after_s must be >= 0, got {self.drop_ws_after_s!r}")
        object.__setattr__(self, "burst", GilbertElliott.coerce(self.burst))
        if self.seed is None:
            object.__setattr__(self, "seed", secrets.randbits(32))

    @property
    def affects_media(self) -> bool:
        return bool(self.loss or self.burst or self.jitter_ms or self.reorder or self.duplicate)

    def channel(self, name: str) -> Channel:
        """The RNG-driven channel for one path/track, e.g. ``"stream/inbound"``."""
        return Channel(self, random.Random(f"{self.seed}/{name}"))

    def webhook_rng(self, call_control_id: str) -> random.Random:
        return random.Random(f"{self.seed}/webhooks/{call_control_id}")


class Channel:
    """Fates for one ordered sequence of frames or packets."""

    __slots__ = ("_imp", "_rng", "_bad")

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self._imp = impairment
        self._rng = rng
        self._bad = False

    def next(self) -> tuple[Fate, float]:
        """The fate of the next frame and its extra delay in seconds."""
        imp, rng = self._imp, self._rng
        lost = imp.loss > 0 and rng.random() < imp.loss
        if imp.burst is not None:
            ge = imp.burst
            self._bad = (rng.random() >= ge.r) if self._bad else (rng.random() < ge.p)
            lost = (rng.random() < (ge.loss_bad if self._bad else ge.loss_good)) or lost
        if lost:
            return "dropped", 0.0
        fate: Fate = "duplicated" if imp.duplicate > 0 and rng.random() < imp.duplicate else "delivered"
        delay = rng.uniform(0.0, 2e-3 * imp.jitter_ms) if imp.jitter_ms > 0 else 0.0
        if imp.reorder > 0 and rng.random() < imp.reorder:
            delay += REORDER_HOLD_S
        return fate, delay


def impairment_arg(impairment: Impairment) -> dict[str, Any]:
    """An Impairment's fields (seed filled in) as JSON-able keyword arguments."""
    return asdict(impairment)
