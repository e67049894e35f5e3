"""The settings a notebook needs to drive real Telnyx instead of the sandbox, from the environment.

Every tutorial notebook runs offline against the sandbox unless ``TELNYX_API_KEY`` is set; with
it set, it needs more (a public URL for the receiver, the public key, a connection id, numbers),
and a notebook should say which are missing rather than fail on the first one it reads.
"""

from __future__ import annotations

import os

from telnyx_nb.errors import TelnyxNbError

__all__ = ["real_telnyx_env", "SETTINGS"]

#: What each setting is, for the message that names the missing ones.
SETTINGS = {
    "TELNYX_API_KEY": "your API key (Mission Control → Keys & Credentials → API Keys)",
    "TELNYX_PUBLIC_KEY": "the public key that verifies webhooks (Keys & Credentials → Public Key)",
    "TELNYX_CONNECTION_ID": "the id of your Call Control application",
    "PUBLIC_URL": "the https URL of a tunnel to this machine's RECEIVER_PORT (default 8765)",
    "TO_NUMBER": "the number to call, in E.164 (+15551234567)",
    "FROM_NUMBER": "one of your Telnyx numbers, in E.164",
    "FORK_HOST": "an address Telnyx can reach over UDP, for forked RTP",
}


def real_telnyx_env(*required: str) -> dict[str, str] | None:
    """None when ``TELNYX_API_KEY`` is not set (use the sandbox); else ``{name: value}`` for
    ``TELNYX_API_KEY`` and each of ``required`` (environment variable names, e.g. "PUBLIC_URL"),
    plus ``RECEIVER_PORT`` (default "8765") when set or not.

    Raises ``TelnyxNbError`` naming every required variable that is empty or unset, what each is,
    and that unsetting ``TELNYX_API_KEY`` runs the notebook offline on the sandbox instead.
    Values are never printed.
    """
    if not os.environ.get("TELNYX_API_KEY"):
        return None
    missing = [name for name in required if not os.environ.get(name)]
    if missing:
        lines = "\n".join(f"  {name}: {SETTINGS.get(name, 'see the README, With real Telnyx')}" for name in missing)
        hint = (" (here it comes from `telnyx-nb sandbox --detach`: TELNYX_SANDBOX_PID is set)"
                if os.environ.get("TELNYX_SANDBOX_PID") else "")
        raise TelnyxNbError(f"TELNYX_API_KEY is set{hint}, so this notebook drives real Telnyx, and it also needs:\n"
                            f"{lines}\nSet them before starting Jupyter, or unset TELNYX_API_KEY to run offline on "
                            "the sandbox.")
    names = ("TELNYX_API_KEY", *required)
    return {**{name: os.environ[name] for name in names}, "RECEIVER_PORT": os.environ.get("RECEIVER_PORT", "8765")}
