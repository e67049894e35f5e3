"""telnyx_nb: Telnyx call audio, RTP forks and live transcripts into pandas, from a notebook.

The names below are imported on first use (PEP 562), so that ``import telnyx_nb`` is cheap and
the processes the toolkit spawns (``python -m telnyx_nb.sandbox``) load only what they use.

Background messages (a webhook the sandbox gave up, a callback that raised, what a child
process reports) go to :mod:`logging` under the ``telnyx_nb`` logger, which has a
``NullHandler``: nothing is printed unless the application configures logging
(``logging.basicConfig()`` shows warnings and errors).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: public name -> the module that defines it
_EXPORTS = {
    "wire": "telnyx_nb.wire",
    "quality": "telnyx_nb.quality",
    "Receiver": "telnyx_nb.receiver",
    "Sandbox": "telnyx_nb.sandbox",
    "Audio": "telnyx_nb.audio",
    "load": "telnyx_nb.session",
    "TelnyxNbError": "telnyx_nb.errors",
    "Reason": "telnyx_nb.errors",
    "StreamNotOpenError": "telnyx_nb.errors",
    "StreamNotStartedError": "telnyx_nb.errors",
    "ReceiverNotStartedError": "telnyx_nb.errors",
    "SelfTest": "telnyx_nb.wire.selftest",
    **{name: "telnyx_nb.actions" for name in ("dial", "answer", "hangup", "start_streaming", "stop_streaming",
                                               "start_forking", "stop_forking", "start_transcription",
                                               "stop_transcription")},
    "CallPanel": "telnyx_nb.widgets",
    "Dashboard": "telnyx_nb.widgets",
    "plots": "telnyx_nb.plots",
    "real_telnyx_env": "telnyx_nb.env",
}

__all__ = [
    "wire", "quality", "__version__", "Receiver", "Sandbox", "Audio", "load",
    "TelnyxNbError", "Reason", "StreamNotOpenError", "StreamNotStartedError", "ReceiverNotStartedError", "SelfTest",
    "dial", "answer", "hangup", "start_streaming", "stop_streaming", "start_forking", "stop_forking",
    "start_transcription", "stop_transcription", "CallPanel", "Dashboard", "plots", "real_telnyx_env",
]

if TYPE_CHECKING:
    from telnyx_nb import plots, quality, wire
    from telnyx_nb.actions import (
        answer,
        dial,
        hangup,
        start_forking,
        start_streaming,
        start_transcription,
        stop_forking,
        stop_streaming,
        stop_transcription,
    )
    from telnyx_nb.audio import Audio
    from telnyx_nb.env import real_telnyx_env
    from telnyx_nb.errors import (
        Reason,
        ReceiverNotStartedError,
        StreamNotOpenError,
        StreamNotStartedError,
        TelnyxNbError,
    )
    from telnyx_nb.receiver import Receiver
    from telnyx_nb.sandbox import Sandbox
    from telnyx_nb.session import load
    from telnyx_nb.widgets import CallPanel, Dashboard
    from telnyx_nb.wire.selftest import SelfTest


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'telnyx_nb' has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if module == f"{__name__}.{name}" else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
