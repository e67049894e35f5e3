"""``call.hangup``'s ``call_quality_stats``, computed from the media the sandbox actually sent.

Per direction (inbound = stream ``inbound`` + fork ``rx``; outbound = ``outbound`` + ``tx``)
over the call's ground truth: ``packet_count`` frames/packets sent (a duplicated one counts
twice; a frame still queued at hang-up counts as it will be sent), ``skip_packet_count`` those
not sent (dropped by an impairment, skipped by a starved media clock, or never sent),
``jitter_packet_count`` sent with extra delay, ``jitter_max_variance`` the spread of that
delay in ms, and ``mos`` from the ITU-T G.107 E-model for G.711
(``telnyx_nb.emodel.e_model_mos``) with the loss and mean added delay. With no stream or fork,
the counts are the call's 20 ms frames, none skipped. Telnyx sends every value as a string; so
does the sandbox.
"""

from __future__ import annotations

from telnyx_nb.emodel import e_model_mos
from telnyx_nb.sandbox.ground_truth import GroundTruth

__all__ = ["call_quality_stats"]

_DIRECTIONS = {"inbound": ("inbound", "rx"), "outbound": ("outbound", "tx")}


def call_quality_stats(truth: GroundTruth, frames_played: int) -> dict[str, dict[str, str]]:
    stats: dict[str, dict[str, str]] = {}
    for direction, tracks in _DIRECTIONS.items():
        fates = truth.fates(tracks)
        generated = sum(fates.values())
        if generated == 0:
            sent, dropped, delays = frames_played, 0, []
        else:
            sent = fates["delivered"] + 2 * fates["duplicated"]
            dropped = fates["dropped"] + fates["skipped"] + fates["unsent"]
            delays = truth.delays_ms(tracks)
        entry = {"packet_count": str(sent), "skip_packet_count": str(dropped)}
        if direction == "inbound":
            delayed = [d for d in delays if d > 0]
            loss = dropped / generated if generated else 0.0
            mean_delay = sum(delays) / len(delays) if delays else 0.0
            entry.update({
                "jitter_max_variance": f"{(max(delays) - min(delays)) if delays else 0.0:.2f}",
                "jitter_packet_count": str(len(delayed)),
                "mos": f"{e_model_mos(100.0 * loss, mean_delay):.2f}",
            })
        stats[direction] = entry
    return stats
