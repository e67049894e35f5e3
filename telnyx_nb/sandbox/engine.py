"""``Engine``: the emulator's parts on one running event loop, and the commands behind ``Sandbox``.

One engine is one sandbox: the REST server (``server``), the calls (``calls``), the media clock,
the webhook sender. It runs on whichever loop starts it: a ``LoopThread`` of the notebook's
process (``Sandbox(process=False)``, and ``telnyx-nb sandbox``) or the main loop of the
sandbox's own process (``python -m telnyx_nb.sandbox --child``, driven through ``control``).

Every public ``Sandbox`` method that acts on the emulator is one :meth:`Engine.command`: a name
and JSON-able keyword arguments in, a JSON-able result out (``ground_truth`` returns a
``ground_truth.Snapshot``). Errors are raised as they are — ``KeyError`` for an unknown
call_control_id, ``ValueError`` for a bad argument — so both modes raise the same exceptions
with the same messages. Commands run on the loop; the one slow step, rendering a route's
audio, runs in a worker thread so that it never holds up the media clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import inspect
import json
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from telnyx_nb.sandbox.calls import Call, CallControl, Route
from telnyx_nb.sandbox.ground_truth import Snapshot
from telnyx_nb.sandbox.impairments import Impairment
from telnyx_nb.sandbox.media_clock import MediaClock
from telnyx_nb.sandbox.scenarios import Scenario, check_codec, get_scenario
from telnyx_nb.sandbox.server import log as server_log
from telnyx_nb.sandbox.server import make_app
from telnyx_nb.sandbox.webhook_sender import WebhookSender
from telnyx_nb.wire import webhooks

__all__ = ["Engine", "COMMANDS"]

#: The commands :meth:`Engine.command` runs (one per ``Sandbox`` method of the same name).
COMMANDS = ("route", "incoming_call", "hangup", "send_dtmf", "impair", "ground_truth", "call_state", "pacing",
            "webhook_stats", "wait_webhooks", "received_audio", "script")
_DTMF_DIGITS = "0123456789*#ABCD"
T = TypeVar("T")
#: Scenarios rebuilt from a spec, kept so that routing the same scenario twice renders it once.
_MAX_SPEC_CACHE = 64


class Engine:
    """The emulator (see the package docstring); :meth:`start` and :meth:`stop` on its loop."""

    def __init__(self, *, host: str, port: int, api_key: str, connection_id: str, signer: webhooks.Signer,
                 default_route: Route, webhook_url: str | None, ring_s: float, webhook_attempts: int,
                 webhook_backoff_s: float, webhook_timeout_s: float, clock_slots: int) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.connection_id = connection_id
        self._default_route = default_route
        self._webhook_url = webhook_url
        self._ring_s = ring_s
        self._new_sender = functools.partial(WebhookSender, signer, attempts=webhook_attempts,
                                             backoff_s=webhook_backoff_s, timeout_s=webhook_timeout_s)
        self._clock_slots = clock_slots
        self._control: CallControl | None = None
        self._clock: MediaClock | None = None
        self._runner: web.AppRunner | None = None
        self._sender: WebhookSender | None = None
        self._specs: dict[str, Scenario] = {}
        self._commands: dict[str, Callable[..., Any]] = {name: getattr(self, "_" + name) for name in COMMANDS}

    # --- lifecycle -------------------------------------------------------------------
    async def start(self, sock: socket.socket | None = None) -> int:
        """Start the parts and listen (on ``sock`` when given: a bound, listening TCP socket
        handed over by the parent process; else on ``host:port``); returns the port."""
        self._clock = MediaClock(self._clock_slots)
        self._sender = self._new_sender()
        await self._sender.start()
        self._control = CallControl(host=self.host, connection_id=self.connection_id, clock=self._clock,
                                    sender=self._sender, ring_s=self._ring_s, default_route=self._default_route,
                                    default_webhook_url=self._webhook_url)
        await self._control.start()
        # aiohttp's own messages (a client gone mid-request) under the sandbox's logger, not aiohttp's
        self._runner = web.AppRunner(make_app(self._control, self.api_key), access_log=None, logger=server_log)
        await self._runner.setup()
        site = (web.SockSite(self._runner, sock) if sock is not None
                else web.TCPSite(self._runner, self.host, self.port))
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._clock.start(asyncio.get_running_loop())
        return self.port

    async def stop(self) -> None:
        """Hang up every live call (stop frames, webhooks best effort), then shut down."""
        if self._control is not None:
            await self._control.close()
        if self._sender is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._sender.drain(), 2.0)
            await self._sender.close()
        if self._clock is not None:
            await self._clock.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        self._control = self._clock = self._runner = self._sender = None

    async def command(self, name: str, args: dict[str, Any]) -> Any:
        """Run command ``name`` (one of COMMANDS) with keyword arguments ``args``."""
        handler = self._commands.get(name)
        if handler is None:
            raise ValueError(f"unknown sandbox command {name!r}")
        result = handler(**args)
        if inspect.isawaitable(result):
            result = await result
        return result

    # --- commands ------------------------------------------------------------------------
    async def _route(self, to: str, scenario: str | dict | Scenario = "support_call", codec: str = "PCMU") -> None:
        route = await self._prepared(scenario, codec)
        _running(self._control).routes[to] = route

    async def _incoming_call(self, to: str = "+15550100", from_: str = "+15550199", webhook_url: str | None = None,
                             scenario: str | dict | Scenario | None = None, codec: str = "PCMU") -> str:
        route = await self._prepared(scenario, codec) if scenario is not None else None
        return _running(self._control).incoming(to=to, from_=from_, webhook_url=webhook_url, route=route)

    def _hangup(self, call_control_id: str) -> None:
        _running(self._control).far_end_hangup(self._call(call_control_id))

    def _send_dtmf(self, call_control_id: str, digits: str) -> None:
        for digit in digits:
            if digit not in _DTMF_DIGITS:
                raise ValueError(f"invalid DTMF digit {digit!r}")
        self._call(call_control_id).pending_dtmf.extend(digits)

    def _impair(self, call_control_id: str, impairment: Impairment | dict[str, Any]) -> None:
        if not isinstance(impairment, Impairment):
            impairment = Impairment(**impairment)
        self._call(call_control_id).impair(impairment)

    def _ground_truth(self, call_control_id: str) -> Snapshot:
        return self._call(call_control_id).ground_truth.snapshot()

    def _received_audio(self, call_control_id: str, stream_id: str | None = None) -> dict[str, Any]:
        received = self._call(call_control_id).received
        if stream_id is None and received:
            stream_id = next(reversed(received))
        if stream_id not in received:
            raise LookupError(f"no application audio received on {stream_id or 'any stream'} of {call_control_id!r}")
        rate, pcm = received[stream_id]
        return {"stream_id": stream_id, "rate": rate, "pcm": base64.b64encode(pcm).decode("ascii")}

    def _script(self, call_control_id: str) -> dict[str, Any]:
        """The call's scenario words (``Sandbox.script``) and when its media time 0 went out."""
        call = self._call(call_control_id)
        utterances = sorted(call.scenario.utterances, key=lambda u: (u.start_s, u.track))
        words = [[u.track, n, u.text, w.word, k, w.start_s, w.end_s, u.confidence]
                 for n, u in enumerate(utterances) for k, w in enumerate(u.words)]
        return {"origin_ns": call.media_origin_ns, "words": words}

    def _call_state(self, call_control_id: str) -> str:
        return self._call(call_control_id).state

    def _pacing(self, reset: bool = False) -> dict[str, float]:
        return _running(self._clock).pacing(reset)

    def _webhook_stats(self) -> dict[str, int]:
        return dict(_running(self._sender).stats)

    async def _wait_webhooks(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(_running(self._sender).drain(), timeout)

    # --- helpers ---------------------------------------------------------------------------
    def _call(self, call_control_id: str) -> Call:
        call = _running(self._control).calls.get(call_control_id)
        if call is None:
            raise KeyError(f"no call with call_control_id {call_control_id!r}")
        return call

    async def _prepared(self, scenario: str | dict | Scenario, codec: str) -> Route:
        """The route, its audio rendered in a worker thread (never on the media clock's loop)."""
        route = Route(self._scenario(scenario), check_codec(codec))
        return await asyncio.get_running_loop().run_in_executor(None, route.prepare)

    def _scenario(self, scenario: str | dict | Scenario) -> Scenario:
        if not isinstance(scenario, dict):
            return get_scenario(scenario)
        key = json.dumps(scenario, sort_keys=True)
        cached = self._specs.get(key)
        if cached is None:
            cached = Scenario.from_spec(scenario)
            if len(self._specs) >= _MAX_SPEC_CACHE:
                self._specs.pop(next(iter(self._specs)))
            self._specs[key] = cached
        return cached



def _running(part: T | None) -> T:
    """A part the engine creates in ``start()``; RuntimeError before that."""
    if part is None:
        raise RuntimeError("the sandbox is not running; call start() first")
    return part
