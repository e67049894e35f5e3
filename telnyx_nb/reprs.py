"""Rich notebook reprs (``_repr_html_``): a title and a two-column table, HTML-escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable

__all__ = ["html_card"]


def html_card(title: str, rows: Iterable[tuple[str, object]]) -> str:
    """``title`` in bold over a table of ``(name, value)`` rows (values shown with ``str``)."""
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(name)}</th>"
                   f"<td style='text-align:left'><code>{html.escape(str(value))}</code></td></tr>"
                   for name, value in rows)
    return f"<div class='telnyx-nb-repr'><b>{html.escape(title)}</b><table>{body}</table></div>"
