"""``Sandbox``: the public face of the emulator, in its own process or on a thread.

``Sandbox(process=True)`` (the default): ``start()`` spawns the sandbox's own process
(``process.SandboxProcess``; the same ``engine.Engine`` as ``telnyx-nb sandbox``), so that
nothing the notebook does — a cell that holds the interpreter lock for seconds — can delay the
emulator's media clock, exactly as with real Telnyx. Each method below is one ``control``
request to it; errors come back as the same exception types with the same messages. The child
ends when ``stop()`` is called or when this process goes away (its stdin pipe closes); if it
dies, the next method call raises ``SandboxProcessError`` saying how, with its stderr.

``Sandbox(process=False)``: the engine runs on an event loop thread of this process
(``telnyx_nb.loopthread``), for places that cannot spawn processes; a busy notebook then starves
its media clock (the ground truth says so: ``skipped`` frames, late ``sent_at``).

Either way the API is synchronous and thread-safe: a method can be called from a notebook cell
or any thread.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import secrets
import socket
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from telnyx_nb.loopthread import LoopThread
from telnyx_nb.reprs import html_card
from telnyx_nb.sandbox.control import ControlClient, SandboxProcessError, unpack_snapshot
from telnyx_nb.sandbox.ground_truth import GroundTruth
from telnyx_nb.sandbox.impairments import GilbertElliott, Impairment, impairment_arg
from telnyx_nb.sandbox.process import SandboxProcess
from telnyx_nb.sandbox.scenarios import Scenario, check_codec, get_scenario, scenario_arg
from telnyx_nb.wire import webhooks

if TYPE_CHECKING:
    import pandas as pd
    import telnyx

    from telnyx_nb.sandbox.engine import Engine

__all__ = ["Sandbox", "SandboxProcessError"]

_CALL_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 5.0
#: How long stop() lets the sandbox's process shut down gracefully before terminating it.
_PROCESS_STOP_TIMEOUT_S = 10.0


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
    ``process``: run the emulator in its own process (default) or, with False, on a thread of
    this one. ``start_timeout``: how long ``start()`` waits for the process to be ready.
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
        process: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key or "KEY_SANDBOX_" + secrets.token_hex(12)
        self.connection_id = connection_id or str(secrets.randbelow(9 * 10**18) + 10**18)
        self._private_key = Ed25519PrivateKey.generate()
        self._signer = webhooks.Signer(self._private_key)
        self.public_key = self._signer.public_key
        self.process = process
        self._scenario = get_scenario(scenario)  # ValueError now for an unknown name
        self._codec = check_codec(codec)
        if webhook_attempts < 1:
            raise ValueError("webhook_attempts must be >= 1")
        if not 1 <= clock_slots <= 20:
            raise ValueError(f"slots must be in 1..20, got {clock_slots}")
        self._options: dict[str, Any] = {
            "webhook_url": webhook_url, "ring_s": ring_s, "webhook_attempts": webhook_attempts,
            "webhook_backoff_s": webhook_backoff_s, "webhook_timeout_s": webhook_timeout_s, "clock_slots": clock_slots}
        self._loop_kind = "auto" if use_uvloop else "asyncio"
        self._start_timeout = start_timeout
        # process=False: the engine on a loop thread of this process
        self._io = LoopThread("telnyx_nb-sandbox", self._loop_kind)
        self._engine: Engine | None = None
        # process=True: the child and its control endpoint
        self._child: SandboxProcess | None = None
        self._control: ControlClient | None = None
        self._loop_name: str | None = None

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Start the emulator; returns once it is listening. With ``process=True``, a child that
        died since the last start is replaced by a new one, and ``start()`` returns as soon as
        the parent has bound the child's sockets and spawned it: the child's start-up runs
        alongside the caller's next steps (a request waits in the listen backlog meanwhile),
        and the first method that needs it waits for it — raising SandboxProcessError, with
        its stderr, if it failed to start. Raises SandboxProcessError at once when the port
        cannot be bound."""
        if self.process:
            if self._child is not None and self._child.alive:
                return self
            threading.Thread(target=_import_sdk, name="telnyx_nb-sdk-import", daemon=True).start()
            self.stop()
            self._start_process()
            return self
        if self._io.running:
            return self
        self._io.start()
        try:
            self._start_thread()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_thread(self) -> None:
        from telnyx_nb.sandbox.calls import Route  # the engine and its aiohttp: only in this mode
        from telnyx_nb.sandbox.engine import Engine

        route = Route(self._scenario, self._codec).prepare()  # rendered here, not on the media clock
        engine = Engine(host=self.host, port=self.port, api_key=self.api_key, connection_id=self.connection_id,
                        signer=self._signer, default_route=route, **self._options)
        self._engine = engine
        self.port = self._io.run(engine.start(), _CALL_TIMEOUT_S)
        self._loop_name = self._io.loop_name

    def _start_process(self) -> None:
        token = secrets.token_urlsafe(32)
        key = self._private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                              serialization.NoEncryption())
        config = {"token": token, "signing_key": base64.b64encode(key).decode("ascii"), "api_key": self.api_key,
                  "connection_id": self.connection_id, "host": self.host,
                  "scenario": scenario_arg(self._scenario), "codec": self._codec, "loop": self._loop_kind,
                  **self._options}
        child = SandboxProcess(config, self._start_timeout)
        self.port, control_port = child.start(self.host, self.port)
        self._child = child
        self._control = ControlClient(control_port, token)

    def _ready_child(self) -> SandboxProcess:
        """The running child, once it has reported ready (see ``process.SandboxProcess.wait_ready``)."""
        child = self._child
        if child is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        ready = child.wait_ready()
        if self._loop_name is None:
            if ready.get("public_key") != self.public_key or ready.get("api_key") != self.api_key:
                self.stop()
                raise SandboxProcessError("the sandbox's process reported different keys than it was given")
            self._loop_name = ready.get("loop")
        return child

    def stop(self) -> None:
        """Hang up every live call (stop frames, webhooks best effort), then shut down (with
        ``process=True``: the child exits; it is terminated if it does not within 10 s)."""
        child, control = self._child, self._control
        if child is not None:
            self._child = self._control = self._loop_name = None
            if control is not None:
                control.close()
            try:
                child.stop(_PROCESS_STOP_TIMEOUT_S)
            finally:
                child.close()
            return
        if not self._io.running:
            return
        engine = self._engine
        try:
            if engine is not None:
                self._io.run(engine.stop(), _CALL_TIMEOUT_S)
        finally:
            self._engine = None
            self._io.stop(_STOP_TIMEOUT_S)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"process {self.pid}" if self.process and self.running else "thread" if not self.process else "process"
        return f"<telnyx_nb.Sandbox {'running' if self.running else 'stopped'}: {self.base_url} ({where})>"

    def _repr_html_(self) -> str:
        """In a notebook: state, the SDK's base URL, connection id and public key, webhook counts."""
        rows: list[tuple[str, object]] = [("base_url", self.base_url), ("connection_id", self.connection_id),
                                          ("public_key", self.public_key)]
        if self.running:
            rows += [(f"webhooks {name}", count) for name, count in self.webhook_stats().items()]
        return html_card(repr(self).strip("<>"), rows)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` (with ``process=True``: while the child lives)."""
        if self.process:
            return self._child is not None and self._child.alive
        return self._io.running

    @property
    def pid(self) -> int | None:
        """The sandbox's process id (``process=True``), else None."""
        return self._child.pid if self._child is not None else None

    def stderr_tail(self, n_bytes: int = 4000) -> str:
        """The last ``n_bytes`` the sandbox's process wrote to stderr (its warnings, e.g. webhooks
        given up); ``""`` with ``process=False``, whose warnings go to this process's logging."""
        return self._child.stderr_tail(n_bytes) if self._child is not None else ""

    @property
    def loop_name(self) -> str | None:
        """The emulator's event loop: ``"uvloop"`` or ``"asyncio"`` (None before start)."""
        if self._child is not None:
            self._ready_child()
        return self._loop_name

    def _command(self, name: str, timeout: float = _CALL_TIMEOUT_S, /, **args: Any) -> Any:
        """Run one engine command, here or in the child (see ``engine.Engine.command``)."""
        if not self.process:
            if not self._io.running or self._engine is None:
                raise RuntimeError("the sandbox is not running; call start() first")
            return self._io.run(self._engine.command(name, args), timeout)
        child, control = self._ready_child(), self._control
        assert control is not None
        if not child.alive:
            raise child.died_error()
        try:
            return control.call(name, args, timeout)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError) and child.alive:
                raise TimeoutError(f"the sandbox's process did not answer {name} within {timeout:g} s") from None
            with contextlib.suppress(Exception):
                child.wait_exit(1.0)
            if not child.alive:
                raise child.died_error() from None
            raise SandboxProcessError(f"the sandbox's control endpoint failed: {exc!r}") from exc

    # --- connection details --------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v2`` — give it to the SDK as ``base_url`` / ``TELNYX_BASE_URL``."""
        return f"http://{self.host}:{self.port}/v2"

    def env(self) -> dict[str, str]:
        """The environment variables that point the ``telnyx`` SDK at this sandbox."""
        return {"TELNYX_BASE_URL": self.base_url, "TELNYX_API_KEY": self.api_key, "TELNYX_PUBLIC_KEY": self.public_key}

    def client(self, **options: Any) -> telnyx.Telnyx:
        """A real ``telnyx.Telnyx`` for this sandbox (retries off, 10 s timeout unless given; on
        loopback, HTTP(S)_PROXY from the environment is not used, as proxies cannot reach this
        machine's 127.0.0.1). Waits for the sandbox's process to be ready (see :meth:`start`)."""
        import telnyx

        return telnyx.Telnyx(**self._client_options(options, telnyx.DefaultHttpxClient))

    def aclient(self, **options: Any) -> telnyx.AsyncTelnyx:
        """A real ``telnyx.AsyncTelnyx`` for this sandbox (same defaults as :meth:`client`)."""
        import telnyx

        return telnyx.AsyncTelnyx(**self._client_options(options, telnyx.DefaultAsyncHttpxClient))

    def _client_options(self, options: dict[str, Any], http_client: Any) -> dict[str, Any]:
        if self._child is not None:
            self._ready_child()
        options = {"max_retries": 0, "timeout": 10.0, **options}
        if "http_client" not in options and ipaddress.ip_address(socket.gethostbyname(self.host)).is_loopback:
            options["http_client"] = http_client(trust_env=False)
        return {"base_url": self.base_url, "api_key": self.api_key, "public_key": self.public_key, **options}

    # --- scripting the far end ---------------------------------------------------------
    def route(self, to: str, scenario: str | Scenario = "support_call", *, codec: str = "PCMU") -> None:
        """Calls dialled to ``to`` play ``scenario`` with the call codec ``codec`` (PCMU/PCMA)."""
        self._command("route", to=to, scenario=self._scenario_arg(scenario), codec=codec)

    def incoming_call(self, to: str = "+15550100", from_: str = "+15550199", *, webhook_url: str | None = None,
                      scenario: str | Scenario | None = None, codec: str = "PCMU") -> str:
        """Simulate an incoming call: ``call.initiated`` (direction incoming) to ``webhook_url``;
        the application answers it with ``client.calls.actions.answer(ccid)``. Returns the ccid."""
        return self._command("incoming_call", to=to, from_=from_, webhook_url=webhook_url,
                             scenario=None if scenario is None else self._scenario_arg(scenario), codec=codec)

    def hangup(self, call_control_id: str) -> None:
        """The far end hangs up now (``call.hangup`` with ``hangup_source`` of the far side)."""
        self._command("hangup", call_control_id=call_control_id)

    def send_dtmf(self, call_control_id: str, digits: str) -> None:
        """The far end presses ``digits``: one per 20 ms tick, as ``dtmf`` frames on the stream
        and ``call.dtmf.received`` webhooks."""
        self._command("send_dtmf", call_control_id=call_control_id, digits=digits)

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
        self._command("impair", call_control_id=call_control_id,
                      impairment=impairment_arg(impairment) if self.process else impairment)
        return impairment

    # --- observing ---------------------------------------------------------------------
    def ground_truth(self, call_control_id: str, payloads: bool = False) -> pd.DataFrame:
        """Every frame/packet generated for the call and what happened to it (see
        ``ground_truth``: ``due_at`` its slot, ``sent_at`` when it really went out, ``fate``)."""
        if self.process:
            snap = unpack_snapshot(self._command("ground_truth", call_control_id=call_control_id, payloads=payloads))
        else:
            snap = self._command("ground_truth", call_control_id=call_control_id)
        return GroundTruth.to_frame(snap, payloads)

    def received_audio(self, call_control_id: str, stream_id: str | None = None) -> tuple[np.ndarray, int]:
        """What the application sent back on the call's media stream (``stream_id``, else the
        call's latest one that sent audio), as the sandbox decoded it for playback: int16
        samples (1-D) and their rate in Hz, decoded with the stream's
        ``stream_bidirectional_codec`` at its rate (``wire.codecs.bidirectional_format``), every
        ``media`` frame in the order received, before resampling and mixing; at most
        ``calls.MAX_RECEIVED_S`` seconds are kept. Only in ``stream_bidirectional_mode="rtp"``
        (MP3 payloads are not decoded). KeyError for an unknown call, LookupError when
        nothing was received."""
        result = self._command("received_audio", call_control_id=call_control_id, stream_id=stream_id)
        return np.frombuffer(base64.b64decode(result["pcm"]), dtype="<i2").astype(np.int16), int(result["rate"])

    def script(self, call_control_id: str) -> pd.DataFrame:
        """What the call's scenario says and when: one row per word, in order of utterance.

        Columns: ``call_control_id``, ``track`` ("inbound"/"outbound"; category),
        ``utterance`` (int64, the utterance's number in the call, in order of start), ``text``
        (the utterance's text, as its final transcription sends it), ``word``, ``word_index``
        (int64, the word's place in its utterance), ``start_s``/``end_s`` (float64, the word's
        span in seconds of call media time: 0 is the first sample of the call's media, played
        from the answer), ``start_at``/``end_at`` (``datetime64[ns, UTC]``: the same instants on
        the sandbox's clock — when the frame carrying media time 0 went out, plus the seconds;
        NaT until the call is answered), ``confidence`` (float64, what its transcription reports).
        The ground truth for talk time and transcription lag (``telnyx_nb.quality.talk_time``,
        ``latency``: pass it as ``script=``). KeyError for an unknown call."""
        import pandas as pd

        result = self._command("script", call_control_id=call_control_id)
        columns = ["track", "utterance", "text", "word", "word_index", "start_s", "end_s", "confidence"]
        words = pd.DataFrame(result["words"], columns=columns)
        origin = result["origin_ns"]
        frame = pd.DataFrame({
            "call_control_id": pd.Categorical([call_control_id] * len(words)),
            "track": pd.Categorical(words["track"], categories=["inbound", "outbound"]),
            "utterance": words["utterance"].astype("int64"),
            "text": words["text"].astype(object),
            "word": words["word"].astype(object),
            "word_index": words["word_index"].astype("int64"),
            "start_s": words["start_s"].astype("float64"),
            "end_s": words["end_s"].astype("float64"),
        })
        for col in ("start", "end"):
            ns = (frame[f"{col}_s"] * 1e9).round().astype("int64") + origin if origin is not None else pd.NaT
            frame[f"{col}_at"] = pd.Series(ns, index=frame.index).astype("datetime64[ns]").dt.tz_localize("UTC")
        frame["confidence"] = words["confidence"].astype("float64")
        return frame

    def call_state(self, call_control_id: str) -> str:
        """``ringing``, ``answered`` or ``ended``."""
        return self._command("call_state", call_control_id=call_control_id)

    def pacing(self, reset: bool = False) -> dict[str, float]:
        """How late the media clock ran, in ms (see ``media_clock.MediaClock.pacing``): send
        time − due time over every frame/packet sent (n, p50_ms, p90_ms, p99_ms, max_ms), the
        clock's own ticks, late_ticks, clock_late_max_ms and skipped_ticks."""
        return self._command("pacing", reset=reset)

    def webhook_stats(self) -> dict[str, int]:
        """Webhooks queued, delivered, failed (given up), duplicated, and attempts made."""
        return self._command("webhook_stats")

    def wait_webhooks(self, timeout: float = 10.0) -> None:
        """Block until every queued webhook is delivered or given up (TimeoutError after ``timeout``)."""
        self._command("wait_webhooks", timeout + 5.0, timeout=timeout)

    def _scenario_arg(self, scenario: str | Scenario) -> str | Scenario | dict[str, Any]:
        return scenario_arg(scenario) if self.process else scenario


def _import_sdk() -> None:
    """Import the telnyx SDK's calls API (about 3.5 s here, most of it ``telnyx.resources.calls``)
    while this process waits for the sandbox's: ``client()`` and the first dial then find it
    loaded. A missing or broken SDK is reported where it is used, not here."""
    with contextlib.suppress(Exception):
        import telnyx.resources.calls  # noqa: F401
