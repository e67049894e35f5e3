"""Every limit and default of the receiver, in one place, with its unit.

Each is the default of a documented ``Receiver`` constructor parameter (or of the part it
configures); change them per receiver, not here. The sandbox keeps its own defaults in its
constructor (it may import only ``telnyx_nb.wire``); the 20 ms media frame both sides use is
``telnyx_nb.wire.media.FRAME_MS``.
"""

from __future__ import annotations

from telnyx_nb.wire.webhooks import TOLERANCE_SECONDS

__all__ = [
    "RECEIVER_PROCESS", "HOST", "MAX_MESSAGE_SIZE", "MAX_WEBHOOK_SIZE", "HARD_LIMIT_FACTOR", "READ_SIZE", "UDP_RCVBUF",
    "BACKLOG", "FORK_CLAIM_WINDOW_S", "CALLBACK_QUEUE_SIZE", "SHUTDOWN_TIMEOUT_S", "STOP_TIMEOUT_S",
    "LAG_INTERVAL_S", "LAG_SAMPLES", "EXCERPT_CHARS", "SIGNATURE_TOLERANCE_S", "FLUSH_INTERVAL_S", "START_TIMEOUT_S",
    "STREAM_SILENCE_S",
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
#: Largest webhook body accepted, in bytes; larger ones get HTTP 413.
MAX_WEBHOOK_SIZE = 1 << 20
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
#: Events waiting for ``rx.on`` callbacks; past this, events are dropped and counted.
CALLBACK_QUEUE_SIZE = 10_000
#: How long open HTTP requests may take to finish when the receiver stops, in seconds.
SHUTDOWN_TIMEOUT_S = 1.0
#: A recording (``record_to``) is flushed to disk at least this often, in seconds.
FLUSH_INTERVAL_S = 1.0
#: A started media stream that sends nothing for this long is recorded as silent, in seconds
#: (Telnyx sends a frame per track every 20 ms while a call is up).
STREAM_SILENCE_S = 2.0
#: How long ``start()`` waits for the sockets (and a capture process) to be ready, in seconds.
START_TIMEOUT_S = 30.0
#: How long ``stop()`` waits for the I/O thread to end, in seconds.
STOP_TIMEOUT_S = 5.0
#: The loop-lag probe's period, in seconds, and how many samples ``health()`` keeps.
LAG_INTERVAL_S = 0.05
LAG_SAMPLES = 1200
#: Bad input is kept in the error tables as an excerpt of at most this many characters.
EXCERPT_CHARS = 200
