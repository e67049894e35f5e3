"""Polling for conditions that other threads (receiver, sandbox, peer) make true, and test timeouts.

Every timeout in the tests is scaled by one factor, read from the environment variable
``TELNYX_NB_TEST_TIMEOUT_FACTOR`` (default 1), as ``websockets`` does with
``WEBSOCKETS_TESTS_TIMEOUT_FACTOR``: on a slow or busy machine (CI, a 2-core box shared with
benchmarks, a debugger) run ``TELNYX_NB_TEST_TIMEOUT_FACTOR=5 pytest`` instead of editing numbers.

- ``wait_until`` / ``await_until`` poll a condition and scale their own ``timeout``: pass the
  nominal number of seconds, never ``timeout(...)`` (that would scale twice).
- ``timeout(seconds)`` scales a bound handed to anything else: ``ws.receive(timeout=timeout(5))``,
  ``future.result(timeout(5))``, ``event.wait(timeout(5))``, ``urlopen(..., timeout=timeout(5))``.

Tests never sleep to wait for something: they poll the condition itself, with a bound. A wait
only ever fails when the bound is hit, so a larger factor never changes a passing test.
"""

from __future__ import annotations

import asyncio
import os
import time

__all__ = ["TIMEOUT_FACTOR", "POLL_S", "timeout", "wait_until", "await_until"]

TIMEOUT_FACTOR = float(os.environ.get("TELNYX_NB_TEST_TIMEOUT_FACTOR", "1"))
if not TIMEOUT_FACTOR > 0:
    raise ValueError(f"TELNYX_NB_TEST_TIMEOUT_FACTOR must be > 0, got {TIMEOUT_FACTOR}")
#: Polling interval of wait_until/await_until (not scaled: it is a resolution, not a bound).
POLL_S = 0.02


def timeout(seconds: float) -> float:
    """A test bound of ``seconds``, scaled by ``TELNYX_NB_TEST_TIMEOUT_FACTOR``."""
    return seconds * TIMEOUT_FACTOR


_scaled = timeout  # wait_until's parameter is called ``timeout`` too


def _polls(predicate, timeout: float, what: str):
    """Yield between polls until ``predicate()`` is truthy (returned as StopIteration.value)."""
    bound = _scaled(timeout)
    deadline = time.monotonic() + bound
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {bound:g} s waiting for {what}")
        yield


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` every 20 ms; return its first truthy value, or fail after ``timeout`` s (scaled)."""
    polls = _polls(predicate, timeout, what)
    try:
        while True:
            next(polls)
            time.sleep(POLL_S)
    except StopIteration as done:
        return done.value


async def await_until(predicate, timeout: float = 10.0, what: str = "condition"):
    """``wait_until`` for coroutines: polls without blocking the running loop."""
    polls = _polls(predicate, timeout, what)
    try:
        while True:
            next(polls)
            await asyncio.sleep(POLL_S)
    except StopIteration as done:
        return done.value
