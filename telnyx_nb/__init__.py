"""telnyx_nb: Telnyx call audio, RTP forks and live transcripts into pandas, from a notebook."""

from telnyx_nb import wire

__version__ = "0.1.0"

__all__ = ["wire", "__version__"]
