"""Webhooks (issue 18, docs/certificates.md): certificate events and expiry notices POSTed to a URL an operator
configures, signed with HMAC-SHA256, retried with back-off.

What is sent is what the audit log records for the certificate events (names, thumbprints, clearances, never a
key, a passphrase or a 2FA key: ``AuditLog`` refuses those), plus ``certificate.expiring`` once a day for each
certificate that expires within ``certificate_expiry_notice_days``. Each delivery is one JSON object::

    {"Id": "<delivery id>", "Event": "certificate.deleted", "Time": "...", "Node": "A", "Data": {...}}

with ``X-Roost-Event``, ``X-Roost-Delivery``, ``X-Roost-Timestamp`` (Unix seconds) and ``X-Roost-Signature:
sha256=<hex>`` = HMAC-SHA256(secret, "<timestamp>.<body>"), so a receiver checks both the body and its freshness.
A delivery answered with anything but 2xx (or not answered within 10 s) is retried after 1, 2, 4, ... 64 s, then
dropped with a log line; the queue holds at most 1,000 deliveries (the oldest go first when it is full).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp

from roost import clock
from roost.security.audit import Event

log = logging.getLogger("roost.webhooks")

# The audit events a webhook receives: what happens to certificates (not every request's refusal).
EVENTS = frozenset({
    Event.CERTIFICATE_GENERATED, Event.CERTIFICATE_UPLOADED, Event.CERTIFICATE_EDITED, Event.CERTIFICATE_DELETED,
    Event.CERTIFICATE_PURGED, Event.CERTIFICATE_RETIRED, Event.CERTIFICATE_IMPLICITLY_TRUSTED,
    Event.SERVER_CERTIFICATE_REPLACED, Event.SERVER_CERTIFICATE_RENEWED,
})
EXPIRING = "certificate.expiring"
QUEUE_LIMIT = 1000
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
TIMEOUT_SECONDS = 10.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``<timestamp>.<body>`` with the shared secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Webhooks:
    """One URL, one secret, one delivery task per process."""

    def __init__(self, url: str, secret: str, node: str = "A", *,
                 delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self._url = url
        self._secret = secret
        self._node = node
        self._delays = delays
        self._queue: deque[tuple[str, str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._notified: dict[str, dt.date] = {}  # thumbprint -> the day its expiry notice went out

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._deliver_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def on_audit_entry(self, entry: dict[str, Any]) -> None:
        """AuditLog.on_entry: the certificate events, from any thread (backups record from worker threads)."""
        if entry.get("Event") not in EVENTS or self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self.send, str(entry["Event"]), entry)

    def notify_expiring(self, notifications: dict[str, Any]) -> int:
        """``certificate.expiring`` for each item of GET /admin/notifications not announced yet today."""
        today = clock.now().date()
        sent = 0
        for item in notifications.get("Notifications", []):
            key = str(item.get("Thumbprint"))
            if self._notified.get(key) == today:
                continue
            self._notified[key] = today
            self.send(EXPIRING, item)
            sent += 1
        return sent

    def send(self, event: str, data: dict[str, Any]) -> None:
        delivery = secrets.token_hex(8)
        body = json.dumps({"Id": delivery, "Event": event, "Time": clock.wire_date(clock.now()), "Node": self._node,
                           "Data": data}, default=str, ensure_ascii=False).encode()
        if len(self._queue) >= QUEUE_LIMIT:
            dropped = self._queue.popleft()
            log.warning("Webhook queue full: dropped delivery %s (%s)", dropped[0], dropped[1])
        self._queue.append((delivery, event, body))
        self._wake.set()

    async def _deliver_forever(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                delivery, event, body = self._queue.popleft()
                await self._deliver(session, delivery, event, body)

    async def _deliver(self, session: aiohttp.ClientSession, delivery: str, event: str, body: bytes) -> None:
        for attempt, delay in enumerate((0.0, *self._delays)):
            if delay:
                await asyncio.sleep(delay)
            timestamp = str(int(clock.now().timestamp()))
            headers = {"Content-Type": "application/json", "X-Roost-Event": event, "X-Roost-Delivery": delivery,
                       "X-Roost-Timestamp": timestamp, "X-Roost-Signature": signature(self._secret, timestamp, body),
                       "User-Agent": "Roost-Webhooks"}
            try:
                async with session.post(self._url, data=body, headers=headers, allow_redirects=False) as response:
                    if 200 <= response.status < 300:
                        return
                    problem = f"answered {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"failed: {type(exc).__name__}"
            log.warning("Webhook delivery %s (%s) %s (attempt %d of %d)", delivery, event, problem, attempt + 1,
                        len(self._delays) + 1)
        log.error("Webhook delivery %s (%s) dropped after %d attempts", delivery, event, len(self._delays) + 1)


def schedule_expiry_notices(webhooks: Webhooks, notifications: Callable[[], dict[str, Any]]) -> asyncio.Task[None]:
    """At start and hourly: expiry notices (each certificate at most once a day)."""

    async def run() -> None:
        while True:
            try:
                webhooks.notify_expiring(notifications())
            except Exception:
                log.exception("Could not compute the expiry notices for the webhook")
            await asyncio.sleep(3600.0)

    return asyncio.get_running_loop().create_task(run())
