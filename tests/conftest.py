"""Fixtures shared by the sandbox tests: an independent peer and a sandbox whose calls last 30 s of silence."""

import pytest

from telnyx_nb.sandbox import Sandbox, Scenario

from sandbox_peer import Peer


@pytest.fixture(scope="module")
def peer():
    with Peer() as p:
        yield p


@pytest.fixture(scope="module")
def sb(peer):  # depends on peer so that the peer outlives it
    with Sandbox(ring_s=0.05, scenario=Scenario.silence(30.0), webhook_backoff_s=0.05) as s:
        yield s


@pytest.fixture(scope="module")
def client(sb):
    return sb.client()
