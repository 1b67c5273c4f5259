"""Slow clients (slowloris): how long a connection may take to send a request head, and stay idle.

aiohttp bounds idle keep-alive time (``keepalive_timeout``, also armed when a connection opens) but not the time
a client takes to send a head it has begun: one header byte every few seconds held a connection, its buffer and
a file descriptor open for as long as the client liked. Here a head that has begun must be complete within
``Settings.http_header_timeout_seconds``; otherwise the client gets a 408 and the connection is closed. The body
is bounded where it is read (``roost.http.body``, ``http_body_timeout_seconds``), and what follows a refused body
is drained for at most ``LINGER_SECONDS``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from roost.settings import Settings

# After a refused body (408, 413) aiohttp reads and drops what the client is still sending, so that the client,
# busy writing, does not lose the answer to a reset; 10 s by default, which a trickling client would fill.
LINGER_SECONDS = 2.0

_TIMED_OUT_TEXT = b"The request head did not arrive in time (http_header_timeout_seconds).\n"
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
              b"Content-Length: %d\r\nConnection: close\r\nServer: Roost\r\n\r\n" % len(_TIMED_OUT_TEXT)
              + _TIMED_OUT_TEXT)


class _LingeringClose:
    """A connection's transport once its request could not be parsed (a bad header, say).

    aiohttp answers 400 and closes at once. A client still sending (a body after the bad head) then meets a closed
    socket with unread bytes in it, and the kernel's reset can reach the client before the 400 does: to the client
    the connection dropped without an answer. So the close waits up to LINGER_SECONDS while what still arrives is
    read and dropped (the handler ignores it), as aiohttp does itself after a refused body.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._closing = False

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._loop.call_later(LINGER_SECONDS, self._transport.close)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HeadTimedHandler(RequestHandler):
    """aiohttp's connection handler plus a deadline for a request head, started by the head's first byte, and a
    lingering close after a request that could not be parsed."""

    __slots__ = ("_head_deadline", "_head_timer", "_parse_failed")

    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._parse_failed = False

    def data_received(self, data: bytes) -> None:
        if self._parse_failed:
            return  # the rest of a request already answered with 400: read and dropped until the close
        super().data_received(data)
        messages = self._messages
        if messages and isinstance(messages[-1][0], _ErrInfo) and self.transport is not None:
            self._parse_failed = True
            self.transport = _LingeringClose(self.transport, self._loop)  # type: ignore[assignment]
        # Waiting for a head (no handler running: ``_waiter`` is set) and none complete yet: the clock runs from the
        # first byte. A complete head, or bytes of a body a handler is reading, stop it.
        waiting_for_head = self._waiter is not None and not self._waiter.done() and not self._messages
        if not waiting_for_head:
            self._stop_head_timer()
        elif self._head_timer is None:
            self._head_timer = self._loop.call_later(self._head_deadline, self._head_too_slow)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or self._messages:
            return
        transport.write(_TIMED_OUT)  # an answer, not a silent drop: the client learns why
        self.force_close()
        transport.close()


class _TimedServer(web.Server):
    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = head_timeout

    def __call__(self) -> RequestHandler:
        return _HeadTimedHandler(self, loop=self._loop, head_timeout=self._head_timeout, **self._kwargs)


class TimedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections have the head deadline and Roost's keep-alive time."""

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=settings.http_keepalive_timeout_seconds,
                         lingering_time=min(LINGER_SECONDS, settings.http_body_timeout_seconds), **kwargs)
        self._head_timeout = settings.http_header_timeout_seconds

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        # The same handler, request factory and options aiohttp chose; only the connection class differs.
        return _TimedServer(made.request_handler, request_factory=made.request_factory,
                            handler_cancellation=made.handler_cancellation, loop=made._loop,
                            head_timeout=self._head_timeout, **made._kwargs)
