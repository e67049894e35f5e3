"""telnyx_nb: Telnyx call audio, RTP forks and live transcripts into pandas, from a notebook."""

from telnyx_nb import wire
from telnyx_nb.actions import (
    start_forking,
    start_streaming,
    start_transcription,
    stop_forking,
    stop_streaming,
    stop_transcription,
)
from telnyx_nb.audio import Audio
from telnyx_nb.errors import Reason, StreamNotOpenError, StreamNotStartedError, TelnyxNbError
from telnyx_nb.receiver import Receiver
from telnyx_nb.sandbox import Sandbox
from telnyx_nb.session import load

__version__ = "0.1.0"

__all__ = [
    "wire", "__version__", "Receiver", "Sandbox", "Audio", "load",
    "TelnyxNbError", "Reason", "StreamNotOpenError", "StreamNotStartedError",
    "start_streaming", "stop_streaming", "start_forking", "stop_forking",
    "start_transcription", "stop_transcription",
]
