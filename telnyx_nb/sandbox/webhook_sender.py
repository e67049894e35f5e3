"""Webhook delivery: Telnyx's signed envelope, POSTed asynchronously, retried with backoff.

Each webhook is built (``wire.webhooks``) when its cause happens — ``occurred_at`` is then —
and queued; nothing waits for delivery (not the REST response, not the media clock). Webhooks
of one call go out in order, one at a time: a webhook being retried holds back the call's
later ones. A non-2xx answer, a connection error or no answer within ``timeout_s`` is a
failed attempt; up to ``attempts`` attempts (``meta.attempt`` counts them, the signature is
fresh each time) with backoff ``backoff_s·2^(n-1)`` between them; then it is given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from telnyx_nb.wire import webhooks

__all__ = ["WebhookSender", "REORDER_WAIT_S"]

log = logging.getLogger(__name__)

#: How long a webhook picked for reordering waits for the call's next one before going alone.
REORDER_WAIT_S = 1.0


@dataclass
class _Item:
    url: str
    envelope: dict[str, Any]
    duplicate: bool = False
    hold: bool = False


@dataclass
class _CallQueue:
    items: deque[_Item] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class WebhookSender:
    """Queues per call and delivers; ``stats`` counts sent, delivered, failed, attempts."""

    def __init__(self, signer: webhooks.Signer, *, attempts: int = 3, backoff_s: float = 0.5,
                 timeout_s: float = 5.0) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self._signer = signer
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._queues: dict[str, _CallQueue] = {}
        self._workers: set[asyncio.Task] = set()
        self._closed = False
        self.stats: Counter[str] = Counter()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout, connector=aiohttp.TCPConnector(limit=64))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._workers):
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def drain(self) -> None:
        """Wait until every queued webhook has been delivered or given up."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)

    def send(self, key: str, url: str | None, event_type: str, payload: dict[str, Any], *,
             duplicate: bool = False, hold: bool = False) -> str | None:
        """Queue one webhook for call ``key``; returns its event id (None without a URL, or
        once the sender is closed)."""
        if not url or self._closed:
            return None
        envelope = webhooks.build_envelope(event_type, payload, delivered_to=url)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _CallQueue()
            task = asyncio.get_running_loop().create_task(self._work(key, queue))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)
        queue.items.append(_Item(url, envelope, duplicate, hold))
        queue.arrived.set()
        self.stats["queued"] += 1
        return envelope["data"]["id"]

    async def _work(self, key: str, queue: _CallQueue) -> None:
        try:
            while queue.items:
                item = queue.items.popleft()
                if item.hold:
                    if not queue.items:
                        queue.arrived.clear()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(queue.arrived.wait(), REORDER_WAIT_S)
                    if queue.items:
                        await self._deliver(queue.items.popleft())
                await self._deliver(item)
        finally:
            self._queues.pop(key, None)

    async def _deliver(self, item: _Item) -> None:
        for copy in range(2 if item.duplicate else 1):
            await self._attempts_for(item)
            if copy:
                self.stats["duplicated"] += 1

    async def _attempts_for(self, item: _Item) -> None:
        assert self._session is not None
        for attempt in range(1, self._attempts + 1):
            item.envelope["meta"]["attempt"] = attempt
            body = webhooks.encode_body(item.envelope)
            headers = {"Content-Type": "application/json", **self._signer.sign(body)}
            self.stats["attempts"] += 1
            try:
                async with self._session.post(item.url, data=body, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.stats["delivered"] += 1
                        return
                    reason = f"HTTP {response.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
        self.stats["failed"] += 1
        log.warning("webhook %s to %s given up after %d attempts (%s)",
                    item.envelope["data"]["event_type"], item.url, self._attempts, reason)
