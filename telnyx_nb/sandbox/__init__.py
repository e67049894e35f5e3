"""The sandbox: a faithful Telnyx Call Control emulator, the default target of telnyx_nb.

``Sandbox().start()`` serves Telnyx's REST API under ``/v2`` on 127.0.0.1 for the real
``telnyx`` SDK, sends Ed25519-signed webhooks, dials ``stream_url`` as a WebSocket client,
forks RTP over UDP and sends scripted transcriptions, at real-time pace, with impairments
and a ground-truth record of every frame. Modules: ``server`` (REST), ``params`` (request
validation), ``errors`` (error bodies), ``calls`` (state machine and commands),
``media_clock`` (pacing), ``streamer`` (WebSocket), ``playback`` (bidirectional audio),
``forker`` (RTP), ``transcription``, ``webhook_sender``, ``scenarios`` (audio + script),
``impairments``, ``ground_truth``, ``quality_stats``, ``engine`` (all of the above on one
event loop, and the commands behind the public API), ``emulator`` (``Sandbox``, the public
API), ``process`` / ``child`` / ``control`` (the sandbox's own process: spawning it, its main,
the endpoint that drives it), ``shell`` (``serve``, for the command line).

**Process model.** ``Sandbox()`` (``process=True``) runs the engine in a process of its own,
``python -m telnyx_nb.sandbox --child`` started with ``subprocess`` (never a fork), as real
Telnyx is outside the notebook: the notebook's interpreter lock, however long a cell holds it,
never delays its media. Its methods are requests to a control endpoint on 127.0.0.1 guarded
by a random token (``control``); errors re-raise as the same exception types and messages; a
child that dies is reported (``SandboxProcessError``) on the next call. The child exits on
``stop()`` or when the parent's process goes away (EOF on its stdin). ``process=False`` runs
the engine on a thread of the caller's process (``telnyx-nb sandbox`` does, being a process of
its own already).

**Ground truth** records what really happened (``ground_truth``): each frame's slot
(``due_at``), when it was really handed to its socket (``sent_at``), and a ``fate`` that is
never ``delivered`` for a frame that was not sent (``dropped``, ``skipped`` when a starved
clock gave its tick up, ``pending``, ``unsent``). ``Sandbox.pacing()`` says how late the media
clock and the sends ran.

Where Telnyx's documentation is silent, the sandbox chooses (the protocol facts are in
``docs/protocol.md``; its section "Where Telnyx is silent: the project's choices" points here):

* **Media timing.** 20 ms frames: 160 bytes PCMU/PCMA at 8 kHz, 640 bytes L16 at 16 kHz.
  ``sequence_number`` counts every frame of a stream from 1 (``start`` is 1; ``connected``
  and ``error`` frames carry none); ``chunk`` counts each track's media frames from 1;
  ``timestamp`` is milliseconds of media since the stream began, ``20·(chunk-1)``. Dropped
  frames (impairments) still consume their ``chunk`` and ``sequence_number``.
* **Codecs.** A call is PCMU (default) or PCMA (``route(..., codec=)``). ``stream_codec``
  ``default`` → the call's codec; PCMU↔PCMA are transcoded; L16 is 16 kHz **big-endian**
  (RFC 2586 network order); G722/OPUS/AMR-WB fall back to the call's codec (Telnyx: "when
  transcoding is not possible, the codec from the call will be used"). Forks never
  transcode: payload type 0 or 8.
* **DTMF on a fork.** The far end's digits (scenario or ``send_dtmf``) go on ``rx`` as RFC 4733
  telephone events, payload type 101, same SSRC and sequence numbers: 100 ms per digit, one
  packet per 20 ms after that tick's audio packet (the audio goes on), the end packet sent 3
  times; ground-truth rows of ``path`` "fork_event" (``forker``). Telnyx does not say whether
  its forks carry events.
* **Tracks.** ``inbound`` = the far end (the callee of a dialled call, the caller of an
  incoming one) = fork ``rx``; ``outbound`` = the application's side = fork ``tx``.
* **One stream or fork per call.** ``fork_start`` stops an active stream (``stop`` frame +
  ``streaming.stopped``) and replaces it; ``streaming_start`` likewise stops an active fork
  (``call.fork.stopped``) or stream. ``streaming_stop`` with no (matching) stream, and
  ``transcription_stop`` with no transcription, are 200 and do nothing. ``answer`` on a call
  that is not ringing is 200 and does nothing. ``hangup`` of a ringing call ends it
  (``originator_cancel`` for a dialled call, ``call_rejected`` for an incoming one).
* **Bidirectional.** With ``stream_bidirectional_mode="rtp"`` the application's ``media`` is
  decoded with ``stream_bidirectional_codec`` (PCMU/PCMA 8 kHz; L16 big-endian at
  ``stream_bidirectional_sampling_rate``, 16 kHz if none; ``wire.codecs.bidirectional_format``),
  resampled to the stream's rate with soxr's anti-alias filter (``playback``), and mixed over
  the script's outbound track whatever ``stream_bidirectional_target_legs`` says (one leg is
  emulated). ``Sandbox.received_audio`` returns the application's audio as decoded.
  The queue holds at most 120 s (then error 100005). G722/OPUS/AMR-WB app audio gets error
  100002. In ``mp3`` mode app media is accepted and not played. Marks and ``clear`` work in
  both modes. Malformed frames → ``error`` 100003; bad base64 → 100004.
* **Webhooks.** Always POST (``webhook_url_method`` is validated, not honoured). One call's
  webhooks go out in order; a retried one holds back that call's later ones. Up to 3
  attempts (timeout 5 s each), backoff 0.5 s then 1 s. ``client_state`` set by any command
  is echoed in that call's later webhooks. ``streaming.started``/``stopped`` also carry
  ``stream_id``. ``call.dtmf.received`` accompanies ``dtmf`` frames. A WebSocket that ends
  without a ``stop`` (the application closed it, or an impairment dropped it) gets
  ``streaming.stopped``. ``call.transcription.stopped`` (the call's ids, ``connection_id`` and
  ``client_state``; the protocol reference §2.2, "Transcription stopped") follows a
  ``transcription_stop`` that stopped a transcription, and the end of a call being
  transcribed (before its ``call.hangup``); real Telnyx's SDK has no model for it, so nothing
  may depend on it.
* **Transcription.** Results follow the scenario's word timing (see ``transcription``); the
  engine and its config are validated but every engine behaves the same.
* **Calls end** when the scenario ends (the far end hangs up, ``normal_clearing``) or on
  ``hangup``. ``call_quality_stats`` are computed from what was sent (``quality_stats``).
  Dialled calls ring ``ring_s`` (0.2 s), then answer; incoming calls ring until answered.
  ``connection_id`` is required on dial, and any value is accepted; a list ``to`` rings
  (and plays the route of) its first number. Ended calls are kept, for ``ground_truth`` and
  90018 answers, until the sandbox stops.
* **Errors.** Unknown call 422 90015; ended 90018; not answered 90034; ``fork_stop`` with no
  fork 90031; transcription running 90054; bad enum 422 10032; missing field 422 10004;
  bad URL / ``udp:`` target 422 10003; out of range 422 10033; wrong JSON type or malformed
  body 400 10015; no/wrong bearer 401 10009; unknown path or unimplemented action 404 10005.
  The same ``command_id`` on the same call within 60 s of a successful command: 200, nothing
  done. Fork targets are IPv4 (host names are resolved to IPv4).
* **Impairments** (``Sandbox.impair``) are documented in ``impairments``; the clock's
  slotting and catch-up in ``media_clock``.
"""

from telnyx_nb.sandbox.control import SandboxProcessError
from telnyx_nb.sandbox.emulator import Sandbox
from telnyx_nb.sandbox.impairments import GilbertElliott, Impairment
from telnyx_nb.sandbox.scenarios import Scenario, library_names
from telnyx_nb.sandbox.shell import serve

__all__ = ["Sandbox", "SandboxProcessError", "Scenario", "GilbertElliott", "Impairment", "library_names", "serve"]
