"""Every limit and default of the receiver, in one place, with its unit.

Each is the default of a documented ``Receiver`` constructor parameter (or of the part it
configures); change them per receiver, not here. The sandbox keeps its own defaults in its
constructor (it may import only ``telnyx_nb.wire``); the 20 ms media frame both sides use is
``telnyx_nb.wire.media.FRAME_MS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from telnyx_nb.wire.webhooks import TOLERANCE_SECONDS

__all__ = [
    "RECEIVER_PROCESS", "HOST", "MAX_MESSAGE_SIZE", "MAX_WEBHOOK_SIZE", "HEADER_TIMEOUT_S", "BODY_TIMEOUT_S",
    "HARD_LIMIT_FACTOR", "READ_SIZE", "UDP_RCVBUF",
    "BACKLOG", "FORK_CLAIM_WINDOW_S", "FORK_SSRC_SEQ_WINDOW", "CALLBACK_QUEUE_SIZE", "SHUTDOWN_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "LAG_INTERVAL_S", "LAG_SAMPLES", "EXCERPT_CHARS", "SIGNATURE_TOLERANCE_S", "FLUSH_INTERVAL_S", "START_TIMEOUT_S",
    "READ_FLUSH_INTERVAL_S",
    "STREAM_SILENCE_S", "SIGNATURE_FAILURES_WARNING", "WAIT_FOR_TIMEOUT_S", "WAIT_FOR_RECHECK_S",
    "SELFTEST_TIMEOUT_S",
    "VAD_FLOOR_DBFS", "VAD_SNR_DB", "VAD_NOISE_PERCENTILE", "VAD_HANGOVER_S", "VAD_MIN_SPEECH_S",
    "AUDIO_EMBED_MAX_S", "WAIT_PROGRESS_AFTER_S", "WAIT_PROGRESS_INTERVAL_S", "Limits", "COUNTERS",
]

#: Where a Receiver captures by default: a child process (True) or a thread of the kernel.
RECEIVER_PROCESS = True
#: Interface the receiver listens on: loopback unless told otherwise.
HOST = "127.0.0.1"
#: Largest WebSocket text message stored, in characters; longer ones go to ``stream_errors``.
MAX_MESSAGE_SIZE = 1 << 20
#: Webhook signatures whose timestamp is further than this from the receiver's clock are
#: refused (``stale``/``future``), in seconds: Telnyx's replay window.
SIGNATURE_TOLERANCE_S: float = TOLERANCE_SECONDS
#: After this many webhooks in a row fail signature verification, the receiver warns once (a
#: UserWarning naming ``rx.webhook_errors`` and the likely cause), in webhooks; a verified one resets it.
SIGNATURE_FAILURES_WARNING = 3
#: Largest webhook body accepted, in bytes; larger ones get HTTP 413 (at once when the
#: request's Content-Length says so, before the body is read).
MAX_WEBHOOK_SIZE = 1 << 20
#: A connection to the webhook port must send a whole request header within this long of
#: opening (or of its first byte after an earlier request), in seconds; else it is closed and
#: recorded (``webhook_errors`` reason "timeout"): slow clients cannot hold the port (slowloris).
HEADER_TIMEOUT_S = 10.0
#: A webhook body must arrive whole within this long of its header, in seconds; else HTTP 408,
#: the connection is closed and recorded (reason "timeout").
BODY_TIMEOUT_S = 30.0
#: A WebSocket message longer than this many times ``max_message_size`` closes the connection
#: (1009) instead of being buffered whole: memory stays bounded.
HARD_LIMIT_FACTOR = 16
#: Bytes per socket read on the stock asyncio loop (asyncio's own 256 KiB costs an
#: mmap/munmap per small message, CPython #85451); also the largest UDP datagram read whole.
READ_SIZE = 64 * 1024
#: UDP receive buffer asked of the kernel for each fork port, in bytes (the kernel may cap it).
UDP_RCVBUF = 4 * 1024 * 1024
#: TCP listen backlog of the webhook/stream port (connections).
BACKLOG = 1024
#: A fork claim binds a new RTP source for this long, in seconds (see ``store.attribution``).
FORK_CLAIM_WINDOW_S = 5.0
#: A new SSRC continues a quiet one of the same call (an SSRC change) when its first sequence
#: number is 1 to this many packets after the old SSRC's newest (see ``store.attribution``).
FORK_SSRC_SEQ_WINDOW = 8
#: Events waiting for ``rx.on`` callbacks; past this, events are dropped and counted.
CALLBACK_QUEUE_SIZE = 10_000
#: How long open HTTP requests may take to finish when the receiver stops, in seconds.
SHUTDOWN_TIMEOUT_S = 1.0
#: A recording (``record_to``) is flushed to disk at least this often, in seconds.
FLUSH_INTERVAL_S = 1.0
#: With a capture process, a table read asks it to flush first only when its last flush asked
#: for is older than this, in seconds: a read then sees every row received up to this long
#: before it (rows since may be missing), and a loop of reads writes at most one segment per
#: table per interval.
READ_FLUSH_INTERVAL_S = 0.2
#: A started media stream that sends nothing for this long is recorded as silent, in seconds
#: (Telnyx sends a frame per track every 20 ms while a call is up).
STREAM_SILENCE_S = 2.0
#: How long ``start()`` waits for the sockets (and a capture process) to be ready, in seconds.
START_TIMEOUT_S = 30.0
#: How long ``stop()`` waits for the I/O thread to end, in seconds.
STOP_TIMEOUT_S = 5.0
#: How long ``rx.wait_for`` waits for an event by default, in seconds.
WAIT_FOR_TIMEOUT_S = 10.0
#: While it waits, ``rx.wait_for`` re-reads ``events`` at least this often, in seconds (it wakes
#: on the event itself; this covers an event whose callback a full queue dropped).
WAIT_FOR_RECHECK_S = 1.0
#: How long ``rx.selftest()`` waits for its request through the public URL to be answered, in seconds.
SELFTEST_TIMEOUT_S = 5.0
#: The loop-lag probe's period, in seconds, and how many samples ``health()`` keeps.
LAG_INTERVAL_S = 0.05
LAG_SAMPLES = 1200
#: Bad input is kept in the error tables as an excerpt of at most this many characters.
EXCERPT_CHARS = 200

# The voice-activity detector of ``telnyx_nb.quality.talk_time`` (``telnyx_nb.talk``; each is a
# keyword of ``talk_time``), over 20 ms frames:
#: A frame quieter than this is never speech, in dB relative to full scale (RMS).
VAD_FLOOR_DBFS = -50.0
#: A frame is speech when it is this much louder than the track's noise floor, in dB...
VAD_SNR_DB = 15.0
#: ...the noise floor being this percentile of the track's frame levels (a conversation's
#: track is silent far more than a tenth of the time: the other party talks), in percent.
VAD_NOISE_PERCENTILE = 10.0
#: A pause shorter than this does not end a talk segment (hangover), in seconds.
VAD_HANGOVER_S = 0.5
#: A burst of speech frames shorter than this is not talk (clicks, pops), in seconds.
VAD_MIN_SPEECH_S = 0.1
#: Seconds of audio a notebook player embeds (the rest is named in a note under it): WAV in
#: base64 costs about 21 kB per second per channel at 8 kHz, and a notebook keeps it.
AUDIO_EMBED_MAX_S = 10.0
#: The most bins ``plots.quality_timeline`` cuts a call into (its ``bin_s`` must leave fewer).
TIMELINE_MAX_BINS = 100_000
#: ``wait_for`` shows a progress bar once a wait has lasted this long, in seconds, and updates it
#: this often.
WAIT_PROGRESS_AFTER_S = 0.5
WAIT_PROGRESS_INTERVAL_S = 0.1


#: The counters ``health()`` reports.
COUNTERS = (
    "webhooks", "webhook_bytes", "webhooks_rejected", "webhooks_malformed",
    "ws_connections", "ws_refused", "ws_messages", "ws_bytes", "stream_errors",
    "udp_packets", "udp_bytes", "udp_errors", "webhook_timeouts",
)


@dataclass(frozen=True)
class Limits:
    """The receiver's I/O limits; defaults and units in ``telnyx_nb.defaults``."""

    max_message_size: int = MAX_MESSAGE_SIZE
    max_webhook_size: int = MAX_WEBHOOK_SIZE
    backlog: int = BACKLOG
    read_size: int = READ_SIZE
    udp_rcvbuf: int = UDP_RCVBUF
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S
    lag_interval_s: float = LAG_INTERVAL_S
    lag_samples: int = LAG_SAMPLES
    stream_silence_s: float = STREAM_SILENCE_S
    signature_tolerance_s: float = SIGNATURE_TOLERANCE_S
    signature_failures_warning: int = SIGNATURE_FAILURES_WARNING
    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S

    def __post_init__(self) -> None:
        for name in ("max_message_size", "max_webhook_size", "backlog", "read_size", "udp_rcvbuf", "lag_samples",
                     "signature_failures_warning"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("shutdown_timeout_s", "lag_interval_s", "signature_tolerance_s", "stream_silence_s",
                     "header_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
