"""Fixtures shared by the sandbox tests: an independent peer and a sandbox whose calls last 30 s of silence.

The shared ``sb`` runs the sandbox in its own process (the default of ``Sandbox``). Tests marked
``both_modes`` also run against a sandbox on a thread of this process (``process=False``);
``TELNYX_NB_SANDBOX_MODES=process,thread`` runs every test that uses ``sb`` in both modes.
"""

import os

import pytest

import telnyx_nb.defaults

# TELNYX_NB_TEST_CAPTURE=process|thread runs every Receiver of the suite in that capture mode.
if os.environ.get("TELNYX_NB_TEST_CAPTURE"):
    telnyx_nb.defaults.RECEIVER_PROCESS = os.environ["TELNYX_NB_TEST_CAPTURE"] == "process"

from telnyx_nb.sandbox import Sandbox, Scenario

from sandbox_peer import Peer

MODES = tuple(os.environ.get("TELNYX_NB_SANDBOX_MODES", "process").split(","))
if not MODES or not set(MODES) <= {"process", "thread"}:
    raise ValueError(f"TELNYX_NB_SANDBOX_MODES is a comma-separated subset of process,thread; got {MODES}")


def pytest_configure(config):
    config.addinivalue_line("markers", "both_modes: run with the sandbox in its own process and on a thread")


def pytest_generate_tests(metafunc):
    if "sandbox_mode" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_modes") is not None
        modes = ("process", "thread") if both else MODES
        metafunc.parametrize("sandbox_mode", modes, indirect=True, scope="module")


@pytest.fixture(scope="module")
def sandbox_mode(request):
    return request.param


@pytest.fixture(scope="module")
def peer():
    with Peer() as p:
        yield p


@pytest.fixture(scope="module")
def sb(peer, sandbox_mode):  # depends on peer so that the peer outlives it
    with Sandbox(ring_s=0.05, scenario=Scenario.silence(30.0), webhook_backoff_s=0.05,
                 process=sandbox_mode == "process") as s:
        yield s


@pytest.fixture(scope="module")
def client(sb):
    return sb.client()
