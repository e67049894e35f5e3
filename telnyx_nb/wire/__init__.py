"""Sans-I/O protocol layer shared by the receiver and the sandbox.

Pure functions and dataclasses over bytes: no sockets, no asyncio, so each
module can be tested and fuzzed with plain values.
"""

from telnyx_nb.wire import codecs, media, rtp, webhooks

__all__ = ["codecs", "media", "rtp", "webhooks"]
