"""Polling for conditions that other threads (receiver, sandbox, peer) make true."""

import time


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` every 20 ms; return its first truthy value, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
