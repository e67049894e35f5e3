"""The E-model (ITU-T G.107) in the simplified form commonly used for G.711 voice over IP.

A pure module with no project imports, so that both the analytics (``quality()``) and the
sandbox (``call_quality_stats``) compute MOS with one formula.
"""

from __future__ import annotations

__all__ = ["e_model_mos", "mos"]


def mos(loss_pct: float, jitter_ms: float, latency_ms: float = 0.0) -> float:
    """MOS of a received stream: e_model_mos with d = latency_ms + 2 * jitter_ms + 10 ms
    (a jitter buffer of twice the jitter, plus codec delay)."""
    return e_model_mos(loss_pct, latency_ms + 2.0 * jitter_ms + 10.0)


def e_model_mos(loss_pct: float, d: float) -> float:
    """Simplified E-model (ITU-T G.107 for G.711, after Cole & Rosenbluth 2001), one-way delay d in ms.

    Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3);
    Ie_eff = 95 * P / (P + 4.3)  (G.711 without PLC, Ie = 0, Bpl = 4.3, P = loss %);
    R = 93.2 - Id - Ie_eff;  MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R), 1 if R < 0, 4.5 if R > 100.
    """
    r = 93.2 - (0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)) - 95.0 * loss_pct / (loss_pct + 4.3)
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)
