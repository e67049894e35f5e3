"""The receiver's storage, one job per module.

- ``schema``: table names, label vocabularies, typed columns, the packed frame row;
- ``columns``: append-only columns and stored-value -> DataFrame conversions;
- ``attribution``: which call a forked RTP source belongs to (fork claims);
- ``tables``: :class:`Store`, the thread-safe append-only tables and their DataFrame views;
- ``fileformat``: the session directory written by ``save()`` and read by ``load()``.

None of these imports the analytics (``telnyx_nb.quality``); the read facade that serves
``quality()`` is :mod:`telnyx_nb.session`.
"""

from telnyx_nb.store.attribution import ForkAttribution, RtpSource
from telnyx_nb.store.tables import Store, StreamInfo

__all__ = ["Store", "StreamInfo", "RtpSource", "ForkAttribution"]
