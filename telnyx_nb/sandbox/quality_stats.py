"""``call.hangup``'s ``call_quality_stats``, computed from the media the sandbox actually sent.

Per direction (inbound = stream ``inbound`` + fork ``rx``; outbound = ``outbound`` + ``tx``)
over the call's ground truth: ``packet_count`` frames/packets sent (a duplicated one counts
twice), ``skip_packet_count`` dropped ones, ``jitter_packet_count`` sent with extra delay,
``jitter_max_variance`` the spread of that delay in ms, and ``mos`` from the ITU-T G.107
E-model for G.711 (Ie = 0, Bpl = 4.3) with the loss and mean added delay. With no stream or
fork, the counts are the call's 20 ms frames, none skipped. Telnyx sends every value as a
string; so does the sandbox.
"""

from __future__ import annotations

from telnyx_nb.sandbox.ground_truth import GroundTruth

__all__ = ["call_quality_stats", "mos"]

_DIRECTIONS = {"inbound": ("inbound", "rx"), "outbound": ("outbound", "tx")}


def mos(loss_fraction: float, delay_ms: float) -> float:
    """E-model MOS for G.711 given packet loss (0..1) and one-way delay in ms."""
    ppl = 100.0 * loss_fraction
    ie_eff = 95.0 * ppl / (ppl + 4.3)
    idd = 0.024 * delay_ms + (0.11 * (delay_ms - 177.3) if delay_ms > 177.3 else 0.0)
    r = max(0.0, min(100.0, 93.2 - idd - ie_eff))
    return 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def call_quality_stats(truth: GroundTruth, frames_played: int) -> dict[str, dict[str, str]]:
    stats: dict[str, dict[str, str]] = {}
    for direction, tracks in _DIRECTIONS.items():
        fates = truth.fates(tracks)
        generated = sum(fates.values())
        if generated == 0:
            sent, dropped, delays = frames_played, 0, []
        else:
            sent, dropped = fates["delivered"] + 2 * fates["duplicated"], fates["dropped"]
            delays = truth.delays_ms(tracks)
        entry = {"packet_count": str(sent), "skip_packet_count": str(dropped)}
        if direction == "inbound":
            delayed = [d for d in delays if d > 0]
            loss = dropped / generated if generated else 0.0
            mean_delay = sum(delays) / len(delays) if delays else 0.0
            entry.update({
                "jitter_max_variance": f"{(max(delays) - min(delays)) if delays else 0.0:.2f}",
                "jitter_packet_count": str(len(delayed)),
                "mos": f"{mos(loss, mean_delay):.2f}",
            })
        stats[direction] = entry
    return stats
