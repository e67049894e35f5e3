"""Sans-I/O protocol layer shared by the receiver and the sandbox.

Pure functions and dataclasses over bytes: no sockets, no asyncio, so each
module can be tested and fuzzed with plain values.
"""

from telnyx_nb.wire import codecs, errors, media, rtp, selftest, stream, telephone_event, webhooks

__all__ = ["codecs", "errors", "media", "rtp", "selftest", "stream", "telephone_event", "webhooks"]
