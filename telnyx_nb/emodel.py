"""The E-model (ITU-T G.107) in the simplified form commonly used for voice over IP.

A pure module with no project imports, so that both the analytics (``quality()``) and the
sandbox (``call_quality_stats``) compute MOS with one formula.

G.107 rates a connection on the transmission rating factor

    R = Ro − Is − Id − Ie,eff + A

which, with every default of G.107 for the parameters an IP network does not change (send and
receive loudness, noise, sidetone, A = 0), reduces to ``Ro − Is = 93.2``, so

    R = 93.2 − Id − Ie,eff.

**Delay impairment** Id, for a one-way mouth-to-ear delay d in ms, in the approximation of Cole
& Rosenbluth ("Voice over IP performance monitoring", 2001) that most VoIP monitors use in
place of G.107's full echo and delay terms:

    Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)        (H: 0 below 177.3 ms, 1 above)

**Equipment impairment** Ie,eff of a codec with packet loss (G.107 §7.2, formula 7-29):

    Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)

with Ppl the packet-loss percentage, ``Ie`` the codec's impairment without loss (G.711: 0),
``Bpl`` its robustness to loss (G.113 Appendix I, G.711: 4.3 without packet-loss concealment,
25.1 with it) and ``BurstR`` the burst ratio (1 for random loss; the observed mean length of a
lost run over the mean expected for random loss at the same rate, ``(lost / runs) · (1 − p)``,
above 1 for bursty loss). **MOS** from R (G.107 Annex B):

    MOS = 1                                             R < 0
    MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R)     0 ≤ R ≤ 100
    MOS = 4.5                                           R > 100

so a clean G.711 call (d = 10 ms: no loss, no jitter) gets R = 93.2 − 0.24 = 92.96, MOS 4.4046 (4.40).

**Where it is used.** ``quality()`` (each row's ``mos``; the per-call summary's lowest) calls
:func:`mos`: G.711 without concealment (Ie = 0, Bpl = 4.3), random loss (BurstR = 1), the row's
``loss_pct`` as Ppl and d = 2 × ``jitter_ms`` + 10 ms (a jitter buffer of twice the RFC 3550
jitter, plus 10 ms of codec and packetisation delay; the network delay is not measured). The
sandbox's ``call_quality_stats`` calls :func:`e_model_mos` with the share of frames it did not
send and their mean added delay, so the two agree on what they both see (``tnb.quality.reconcile``).
To weigh bursty loss as G.107 does, pass ``burst_r`` computed from ``quality()``'s ``loss_burst_*``
columns.
"""

from __future__ import annotations

__all__ = ["e_model_mos", "mos", "R0", "G711_BPL", "G711_BPL_PLC"]

#: Ro − Is with G.107's default parameters.
R0 = 93.2
#: G.711's packet-loss robustness factor, without and with packet-loss concealment (G.113 App. I).
G711_BPL = 4.3
G711_BPL_PLC = 25.1


def mos(loss_pct: float, jitter_ms: float, latency_ms: float = 0.0) -> float:
    """MOS of a received G.711 stream as ``quality()`` rates it: :func:`e_model_mos` with
    d = latency_ms + 2 × jitter_ms + 10 ms (a jitter buffer of twice the jitter, plus codec
    delay), Ie = 0, Bpl = 4.3, random loss."""
    return e_model_mos(loss_pct, latency_ms + 2.0 * jitter_ms + 10.0)


def e_model_mos(loss_pct: float, d: float, *, ie: float = 0.0, bpl: float = G711_BPL, burst_r: float = 1.0) -> float:
    """MOS from the simplified E-model: one-way delay ``d`` in ms, packet loss ``loss_pct`` in %.

    R = 93.2 − Id − Ie,eff;  Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3);
    Ie,eff = Ie + (95 − Ie)·Ppl / (Ppl/BurstR + Bpl);
    MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R), 1 if R < 0, 4.5 if R > 100.
    Defaults: G.711 without packet-loss concealment (``ie`` 0, ``bpl`` 4.3), random loss
    (``burst_r`` 1). See the module docstring for the sources.
    """
    i_d = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ie_eff = ie + (95.0 - ie) * loss_pct / (loss_pct / burst_r + bpl)
    r = R0 - i_d - ie_eff
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)
