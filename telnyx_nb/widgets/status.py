"""One line of text for a command's failure, as a panel's status line shows it (no traceback)."""

from __future__ import annotations

__all__ = ["error_text"]


def error_text(exc: BaseException) -> str:
    """``"422 90034 Call not answered yet: This call can't receive this command…"`` for an error
    answer of Telnyx (the SDK's ``APIStatusError``: HTTP status, then the first error's code,
    title and detail); ``"<ExceptionType>: <message>"`` for anything else (no answer, a receiver
    that is not running)."""
    body = getattr(exc, "body", None)
    errors = body.get("errors") if isinstance(body, dict) else None
    status = getattr(exc, "status_code", None)
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        text = " ".join(str(part) for part in (status, first.get("code"), first.get("title")) if part is not None)
        return f"{text}: {first['detail']}" if first.get("detail") else text
    if isinstance(status, int):
        return f"{status} {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"
