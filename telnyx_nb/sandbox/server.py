"""The sandbox's REST API under ``/v2``: what the ``telnyx`` SDK talks to.

``POST /v2/calls`` (dial), ``GET /v2/calls/{id}`` (status), ``POST
/v2/calls/{id}/actions/{answer,hangup,streaming_start,streaming_stop,fork_start,fork_stop,
transcription_start,transcription_stop}``. Every request needs ``Authorization: Bearer
<api_key>`` (else 401 ``10009``); a body that is not a JSON object is 400 ``10015``; unknown
paths and actions the sandbox does not implement are 404 ``10005``. Every error body is
Telnyx's ``{"errors":[...]}``; nothing a client sends can crash the server (an unexpected
failure is a 500 ``10007`` body and a logged traceback).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from aiohttp import web

from telnyx_nb.sandbox.calls import ACTIONS, CallControl
from telnyx_nb.sandbox.errors import ApiError

__all__ = ["make_app", "MAX_BODY_BYTES"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
_CONTROL = web.AppKey("control", CallControl)
_API_KEY = web.AppKey("api_key", str)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


@web.middleware
async def _telnyx_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        api_key = request.app[_API_KEY]
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError("10009")
        return await handler(request)
    except ApiError as exc:
        return _json(exc.status, exc.body())
    except web.HTTPRequestEntityTooLarge:
        return _json(413, ApiError("10015", f"The request body is larger than {MAX_BODY_BYTES} bytes.").body())
    except web.HTTPMethodNotAllowed:
        return _json(405, ApiError("10005", f"{request.method} is not allowed on {request.path}.").body())
    except web.HTTPNotFound:
        return _json(404, ApiError("10005", f"The sandbox has no endpoint {request.method} {request.path}.").body())
    except Exception:
        log.exception("sandbox REST handler failed on %s %s", request.method, request.path)
        return _json(500, ApiError("10007").body())


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError("10015", f"The request body is not valid JSON ({exc}).") from None
    if not isinstance(body, dict):
        raise ApiError("10015", "The request body must be a JSON object.", pointer="/")
    return body


async def _dial(request: web.Request) -> web.Response:
    return _json(200, request.app[_CONTROL].dial(await _body(request)))


async def _status(request: web.Request) -> web.Response:
    return _json(200, request.app[_CONTROL].status(request.match_info["ccid"]))


async def _action(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise ApiError("10005", f"The sandbox does not implement the '{action}' command.")
    body = await _body(request)
    return _json(200, await request.app[_CONTROL].command(request.match_info["ccid"], action, body))


def make_app(control: CallControl, api_key: str) -> web.Application:
    app = web.Application(middlewares=[_telnyx_errors], client_max_size=MAX_BODY_BYTES)
    app[_CONTROL] = control
    app[_API_KEY] = api_key
    app.router.add_post("/v2/calls", _dial)
    app.router.add_get("/v2/calls/{ccid}", _status)
    app.router.add_post("/v2/calls/{ccid}/actions/{action}", _action)
    return app
