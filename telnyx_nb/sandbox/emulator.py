"""``Sandbox``: the emulator on its own event loop thread (``telnyx_nb.loopthread``), with a
synchronous, thread-safe API: public methods hop onto that loop and wait for the result, so
they can be called from a notebook cell or any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pandas as pd
from aiohttp import web

from telnyx_nb.loopthread import LoopThread
from telnyx_nb.sandbox.calls import Call, CallControl, Route
from telnyx_nb.sandbox.ground_truth import GroundTruth
from telnyx_nb.sandbox.impairments import GilbertElliott, Impairment
from telnyx_nb.sandbox.media_clock import MediaClock
from telnyx_nb.sandbox.scenarios import Scenario, get_scenario
from telnyx_nb.sandbox.server import make_app
from telnyx_nb.sandbox.webhook_sender import WebhookSender
from telnyx_nb.wire import webhooks

if TYPE_CHECKING:
    import telnyx

__all__ = ["Sandbox"]

T = TypeVar("T")
_CALL_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 5.0


class Sandbox:
    """A faithful Telnyx Call Control emulator (see the package docstring for its choices).

    >>> sb = Sandbox().start()            # doctest: +SKIP
    >>> client = sb.client()              # a real telnyx.Telnyx pointed at it

    ``scenario``/``codec``: what calls to numbers without a :meth:`route` play.
    ``webhook_url``: where webhooks go for calls that name none (the connection's URL).
    ``ring_s``: how long a dialled call rings before the far end answers.
    ``webhook_attempts``/``webhook_backoff_s``/``webhook_timeout_s``: delivery retries.
    ``clock_slots``: phases of the media clock (see ``media_clock``). ``use_uvloop``: run the
    loop on uvloop when it is installed.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        connection_id: str | None = None,
        scenario: str | Scenario = "support_call",
        codec: str = "PCMU",
        webhook_url: str | None = None,
        ring_s: float = 0.2,
        webhook_attempts: int = 3,
        webhook_backoff_s: float = 0.5,
        webhook_timeout_s: float = 5.0,
        clock_slots: int = 20,
        use_uvloop: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key or "KEY_SANDBOX_" + secrets.token_hex(12)
        self.connection_id = connection_id or str(secrets.randbelow(9 * 10**18) + 10**18)
        self._signer = webhooks.Signer()
        self.public_key = self._signer.public_key
        self._default_route = Route(get_scenario(scenario), _codec(codec)).prepare()
        self._webhook_url = webhook_url
        self._ring_s = ring_s
        self._new_sender = functools.partial(WebhookSender, self._signer, attempts=webhook_attempts,
                                             backoff_s=webhook_backoff_s, timeout_s=webhook_timeout_s)
        self._clock_slots = clock_slots
        self._io = LoopThread("telnyx_nb-sandbox", "auto" if use_uvloop else "asyncio")
        self._control: CallControl | None = None
        self._clock: MediaClock | None = None
        self._runner: web.AppRunner | None = None
        self._sender: WebhookSender | None = None

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Start the loop thread and the server; returns once it is listening."""
        if self._io.running:
            return self
        self._io.start()
        try:
            self._call(self._astart())
        except BaseException:
            self.stop()
            raise
        return self

    async def _astart(self) -> None:
        self._clock = MediaClock(self._clock_slots)
        self._sender = self._new_sender()
        await self._sender.start()
        self._control = CallControl(host=self.host, connection_id=self.connection_id, clock=self._clock,
                                    sender=self._sender, ring_s=self._ring_s, default_route=self._default_route,
                                    default_webhook_url=self._webhook_url)
        await self._control.start()
        self._runner = web.AppRunner(make_app(self._control, self.api_key), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._clock.start(asyncio.get_running_loop())

    def stop(self) -> None:
        """Hang up every live call (stop frames, webhooks best effort), then shut down."""
        if not self._io.running:
            return
        try:
            self._call(self._astop())
        finally:
            self._io.stop(_STOP_TIMEOUT_S)

    async def _astop(self) -> None:
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

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = _CALL_TIMEOUT_S) -> T:
        if not self._io.running:
            coro.close()
            raise RuntimeError("the sandbox is not running; call start() first")
        return self._io.run(coro, timeout)

    # --- connection details --------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v2`` — give it to the SDK as ``base_url`` / ``TELNYX_BASE_URL``."""
        return f"http://{self.host}:{self.port}/v2"

    def env(self) -> dict[str, str]:
        """The environment variables that point the ``telnyx`` SDK at this sandbox."""
        return {"TELNYX_BASE_URL": self.base_url, "TELNYX_API_KEY": self.api_key, "TELNYX_PUBLIC_KEY": self.public_key}

    def client(self, **options: Any) -> telnyx.Telnyx:
        """A real ``telnyx.Telnyx`` for this sandbox (retries off, 10 s timeout unless given)."""
        import telnyx

        options = {"max_retries": 0, "timeout": 10.0, **options}
        return telnyx.Telnyx(base_url=self.base_url, api_key=self.api_key, public_key=self.public_key, **options)

    def aclient(self, **options: Any) -> telnyx.AsyncTelnyx:
        """A real ``telnyx.AsyncTelnyx`` for this sandbox (same defaults as :meth:`client`)."""
        import telnyx

        options = {"max_retries": 0, "timeout": 10.0, **options}
        return telnyx.AsyncTelnyx(base_url=self.base_url, api_key=self.api_key, public_key=self.public_key, **options)

    # --- scripting the far end ---------------------------------------------------------
    def route(self, to: str, scenario: str | Scenario = "support_call", *, codec: str = "PCMU") -> None:
        """Calls dialled to ``to`` play ``scenario`` with the call codec ``codec`` (PCMU/PCMA)."""
        route = Route(get_scenario(scenario), _codec(codec)).prepare()
        control = _running(self._control)
        self._call(self._on_loop(lambda: control.routes.__setitem__(to, route)))

    def incoming_call(self, to: str = "+15550100", from_: str = "+15550199", *, webhook_url: str | None = None,
                      scenario: str | Scenario | None = None, codec: str = "PCMU") -> str:
        """Simulate an incoming call: ``call.initiated`` (direction incoming) to ``webhook_url``;
        the application answers it with ``client.calls.actions.answer(ccid)``. Returns the ccid."""
        route = Route(get_scenario(scenario), _codec(codec)).prepare() if scenario is not None else None
        control = _running(self._control)
        return self._call(self._on_loop(lambda: control.incoming(to=to, from_=from_, webhook_url=webhook_url,
                                                                 route=route)))

    def hangup(self, call_control_id: str) -> None:
        """The far end hangs up now (``call.hangup`` with ``hangup_source`` of the far side)."""
        self._with_call(call_control_id, _running(self._control).far_end_hangup)

    def send_dtmf(self, call_control_id: str, digits: str) -> None:
        """The far end presses ``digits``: one per 20 ms tick, as ``dtmf`` frames on the stream
        and ``call.dtmf.received`` webhooks."""
        for digit in digits:
            if digit not in "0123456789*#ABCD":
                raise ValueError(f"invalid DTMF digit {digit!r}")
        self._with_call(call_control_id, lambda call: call.pending_dtmf.extend(digits))

    def impair(self, call_control_id: str, loss: float = 0.0, burst: GilbertElliott | dict | tuple | None = None,
               jitter_ms: float = 0.0, reorder: float = 0.0, duplicate: float = 0.0, codec_mismatch: bool = False,
               drop_ws_after_s: float | None = None, seed: int | None = None, *, webhook_duplicate: float = 0.0,
               webhook_reorder: float = 0.0) -> Impairment:
        """Impair the call's media (stream and fork) and webhooks from now on; replaces earlier
        settings. ``burst``: Gilbert–Elliott ``{"p", "r", "loss_good", "loss_bad"}`` or a tuple
        in that order. Returns the settings, with ``seed`` filled in when it was None."""
        impairment = Impairment(loss=loss, burst=GilbertElliott.coerce(burst), jitter_ms=jitter_ms, reorder=reorder,
                                duplicate=duplicate, codec_mismatch=codec_mismatch, drop_ws_after_s=drop_ws_after_s,
                                seed=seed, webhook_duplicate=webhook_duplicate, webhook_reorder=webhook_reorder)
        self._with_call(call_control_id, lambda call: call.impair(impairment))
        return impairment

    # --- observing ---------------------------------------------------------------------
    def ground_truth(self, call_control_id: str, payloads: bool = False) -> pd.DataFrame:
        """Every frame/packet generated for the call and its fate (see ``ground_truth.COLUMNS``)."""
        columns = self._with_call(call_control_id, lambda call: call.ground_truth.snapshot())
        return GroundTruth.to_frame(columns, payloads)

    def call_state(self, call_control_id: str) -> str:
        """``ringing``, ``answered`` or ``ended``."""
        return self._with_call(call_control_id, lambda call: call.state)

    def pacing(self, reset: bool = False) -> dict[str, float]:
        """Media pacing error (send time − deadline) over every frame/packet sent, in ms."""
        clock = _running(self._clock)
        return self._call(self._on_loop(lambda: clock.pacing(reset)))

    def webhook_stats(self) -> dict[str, int]:
        """Webhooks queued, delivered, failed (given up), duplicated, and attempts made."""
        sender = _running(self._sender)
        return self._call(self._on_loop(lambda: dict(sender.stats)))

    def wait_webhooks(self, timeout: float = 10.0) -> None:
        """Block until every queued webhook is delivered or given up."""
        self._call(asyncio.wait_for(_running(self._sender).drain(), timeout), timeout + 1)

    def _with_call(self, call_control_id: str, fn: Callable[[Call], T]) -> T:
        """Run ``fn(call)`` on the loop; KeyError for an unknown call_control_id."""
        control = _running(self._control)

        def run() -> T:
            call = control.calls.get(call_control_id)
            if call is None:
                raise KeyError(f"no call with call_control_id {call_control_id!r}")
            return fn(call)
        return self._call(self._on_loop(run))

    @staticmethod
    async def _on_loop(fn: Callable[[], T]) -> T:
        return fn()


def _codec(codec: str) -> Literal["PCMU", "PCMA"]:
    if codec == "PCMU":
        return "PCMU"
    if codec == "PCMA":
        return "PCMA"
    raise ValueError(f"a call's codec is PCMU or PCMA, got {codec!r}")


def _running(part: T | None) -> T:
    """A part the sandbox creates in ``start()``; RuntimeError before that."""
    if part is None:
        raise RuntimeError("the sandbox is not running; call start() first")
    return part
