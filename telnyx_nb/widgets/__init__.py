"""The notebook face of the toolkit: ipywidgets to drive a call's media actions and watch it live.

``tnb.CallPanel(client, rx, call_control_id)`` (``panel``): toggles for streaming, forking and
transcription with their options, hang-up, and live views (``views``: transcript, counters,
level meters) of one call. ``tnb.Dashboard(client, rx)`` (``dashboard``): every call the
receiver has seen, a picker that opens its panel, and Answer for incoming calls.

Modules: ``states`` (what Telnyx said about a call, without widgets), ``options`` (the
actions' options), ``views``, ``panel``, ``dashboard``, ``status`` (error text),
``_refresh`` (the bounded-rate refresh thread, and how updates from it reach the notebook),
``_live`` (subscribe, refresh, close). Imported on first use of ``tnb.CallPanel`` /
``tnb.Dashboard``: ``import telnyx_nb`` does not load ipywidgets.
"""

from telnyx_nb.widgets.dashboard import Dashboard
from telnyx_nb.widgets.panel import CallPanel
from telnyx_nb.widgets.views import CountersView, LevelMeter, TranscriptView

__all__ = ["CallPanel", "Dashboard", "TranscriptView", "CountersView", "LevelMeter"]
