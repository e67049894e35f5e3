"""Telnyx REST errors: the codes, titles and body shape the sandbox answers with.

Body: ``{"errors":[{"code":"90018","title":...,"detail":...,"source":{"pointer":"/x"}}]}``.
Titles and details follow Telnyx's error catalogue and OpenAPI examples
(docs/protocol.md, "REST errors"); the HTTP status is the one Telnyx documents for the code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "CATALOGUE"]

#: code -> (HTTP status, title, default detail)
CATALOGUE: dict[str, tuple[int, str, str]] = {
    "10003": (422, "Invalid URL",
              "The URL provided was invalid, malformed, or too long. URLs can be a maximum of 2000 characters."),
    "10004": (422, "Missing required parameter", "A required parameter was missing."),
    "10005": (404, "Resource not found", "The requested resource or URL could not be found."),
    "10007": (500, "Unexpected error", "An unexpected error occured."),
    "10009": (401, "Authentication failed",
              "The required authentication headers were either invalid or not included in the request."),
    "10015": (400, "Bad Request", "The request failed because it was not well-formed."),
    "10032": (422, "Invalid enumerated value", "The value is not one of the allowed values."),
    "10033": (422, "Value outside of range", "The value is outside of the allowed range."),
    "90015": (422, "Invalid Call Control ID", "The call_control_id provided was not valid."),
    "90018": (422, "Call has already ended", "This call is no longer active and can't receive commands."),
    "90031": (422, "Call is not currently forked", "Can't stop forking, because the call isn't currently forked."),
    "90034": (422, "Call not answered yet",
              "This call can't receive this command because it has not been answered yet."),
    "90054": (422, "Call transcription is already in progress",
              "Call transcription can not be started more than once."),
}


class ApiError(Exception):
    """A Telnyx-style REST error; ``status`` and ``body()`` are what the server sends."""

    def __init__(self, code: str, detail: str | None = None, *, pointer: str | None = None) -> None:
        status, title, default_detail = CATALOGUE[code]
        super().__init__(f"{code} {title}: {detail or default_detail}")
        self.code = code
        self.status = status
        self.title = title
        self.detail = detail or default_detail
        self.pointer = pointer

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "title": self.title, "detail": self.detail}
        if self.pointer is not None:
            error["source"] = {"pointer": self.pointer}
        return {"errors": [error]}
