"""RavenDB's Changes API: ``/databases/{db}/changes`` over a WebSocket, as the clients' ``store.changes()`` uses it
(``watch-docs``, ``watch-doc``, ``watch-collection``, ``watch-prefix`` and their ``unwatch-`` twins), and
``GET /info/tcp``, where the Python client reads the server certificate it then pins for the WebSocket.

The handshake is an ordinary request: the connection's certificate is identified and authorized (Read on the
database) by the security middleware, and a cross-site upgrade is refused there (cross-site WebSocket hijacking).
Revocation bites on an open stream: whenever the certificate registry changed (on this worker, or on another worker
or node: ``Registry.refresh`` catches up as for a request), and at least every ``RECHECK_SECONDS``, the
certificate is judged again as a new request would be, before any further notification is sent; a refusal closes
the stream with RavenDB's error message first.

Messages are RavenDB's: each WebSocket text message is one JSON array of one object (the Python client strips the
brackets), ``{"Type": "Confirm", "CommandId": n}`` for each command, ``{"Type": "DocumentChange", "Value": {...}}``
for each change, ``{"Type": "Error", "Exception": "..."}`` before the server closes a stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from roost import clock
from roost.documents.changes import DocumentChange, Subscription
from roost.errors import AuthorizationError, BadRequestError, DatabaseDoesNotExistError, RoostError
from roost.http.body import json_response
from roost.http.middleware import SERVICES, peer_address, peer_thumbprint
from roost.http.routing import RouteTable
from roost.security import authz
from roost.security.twofactor import COOKIE_NAME
from roost.services import Services
from roost.types import Level

routes = RouteTable()

RECHECK_SECONDS = 1.0  # an idle stream is judged again at least this often (a revocation elsewhere bites by then)
MAX_COMMAND = 16 * 1024  # a client command is a few names
MAX_WATCHES = 1024  # ids, prefixes and collections one stream may watch
# WebSocket close code 1008 (policy violation): RavenDB's clients report the reason it carries.
_POLICY_VIOLATION = 1008


@dataclass
class _Watches:
    """What one stream asked for (RavenDB compares ids, prefixes and collections case-insensitively)."""

    all_documents: bool = False
    ids: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)
    collections: set[str] = field(default_factory=set)

    def count(self) -> int:
        return len(self.ids) + len(self.prefixes) + len(self.collections)

    def wants(self, change: DocumentChange) -> bool:
        if self.all_documents:
            return True
        key = change.id.casefold()
        if key in self.ids:
            return True
        if change.collection is not None and change.collection.casefold() in self.collections:
            return True
        return any(key.startswith(prefix) for prefix in self.prefixes)

    def apply(self, command: str, param: Any) -> None:
        if command in ("watch-docs", "unwatch-docs"):
            self.all_documents = command == "watch-docs"
            return
        targets = {"doc": self.ids, "prefix": self.prefixes, "collection": self.collections}
        action, _, what = command.partition("-")
        if action not in ("watch", "unwatch") or what not in targets:
            raise BadRequestError(f"The changes command '{command[:60]}' is not supported by Roost; use "
                                  "watch-docs, watch-doc, watch-prefix or watch-collection (and unwatch-).")
        if not isinstance(param, str) or not param or len(param) > 2048:
            raise BadRequestError(f"The changes command '{command}' needs Param, a non-empty string.")
        chosen = targets[what]
        if action == "watch":
            if self.count() >= MAX_WATCHES:
                raise BadRequestError(f"One changes stream watches at most {MAX_WATCHES} ids, prefixes and "
                                      "collections; open another stream.")
            chosen.add(param.casefold())
        else:
            chosen.discard(param.casefold())


def _message(payload: dict[str, Any]) -> str:
    return json.dumps([payload], separators=(",", ":"))


async def _refusal(request: web.Request, services: Services, db: str) -> RoostError | None:
    """Why this stream's certificate may no longer read ``db`` (as the middleware would judge a new request)."""
    if not await services.documents.exists(db):
        return DatabaseDoesNotExistError(db)
    if not services.allowlist.allows(peer_address(request)):
        return AuthorizationError(f"The address {peer_address(request)} is no longer allowed to connect to this "
                                  "server (Security.AllowedIPs).", reason="AddressNotAllowed")
    if services.tls is None:
        return None
    if services.registry.stale:  # another worker or node changed certificates: catch up first (fail closed)
        await services.registry.refresh()
    now = clock.now()
    der, thumbprint = peer_thumbprint(request)
    identity = services.identifier.identify(der, now, thumbprint)
    definition = identity.definition
    if definition is not None and definition.two_factor_key and identity.status.authenticated:
        identity = await services.two_factor.gate(identity, request.cookies.get(COOKIE_NAME), now)
    return authz.refusal(Level.DATABASE_READ, identity, db)


@routes.get("/databases/{db}/changes", level=Level.DATABASE_READ)
async def changes(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    db = request.match_info["db"]
    await services.documents.ensure_exists(db)
    socket = web.WebSocketResponse(max_msg_size=MAX_COMMAND, autoping=True, heartbeat=30.0)
    if not socket.can_prepare(request).ok:
        raise BadRequestError("/databases/{db}/changes is a WebSocket: connect with wss:// (store.changes() in "
                              "the RavenDB clients).")
    subscription = services.documents.changes.subscribe(db)
    try:
        await socket.prepare(request)
        watches = _Watches()
        reader = asyncio.create_task(_read_commands(socket, watches, subscription))
        try:
            await _send_changes(request, services, db, socket, watches, subscription, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    finally:
        services.documents.changes.unsubscribe(subscription)
    if not socket.closed:
        await socket.close()
    return socket


async def _read_commands(socket: web.WebSocketResponse, watches: _Watches, subscription: Subscription) -> None:
    """The client's commands; each is confirmed (the client waits for it) or answered with an Error."""
    async for message in socket:
        if message.type is not WSMsgType.TEXT:
            if message.type is WSMsgType.BINARY:
                await socket.send_str(_message({"Type": "Error", "Exception": "Commands are JSON text messages."}))
            continue
        try:
            command = json.loads(message.data)
        except ValueError:
            await socket.send_str(_message({"Type": "Error", "Exception": "A changes command must be JSON."}))
            continue
        command_id = command.get("CommandId") if isinstance(command, dict) else None
        try:
            if not isinstance(command, dict) or not isinstance(command.get("Command"), str):
                raise BadRequestError("A changes command is a JSON object with CommandId, Command and Param.")
            watches.apply(command["Command"], command.get("Param"))
        except BadRequestError as exc:
            await socket.send_str(_message({"Type": "Error", "Exception": exc.message, "CommandId": command_id}))
            continue
        await socket.send_str(_message({"Type": "Confirm", "CommandId": command_id}))
    subscription.wake.set()  # the client closed: the sender ends too


async def _send_changes(request: web.Request, services: Services, db: str, socket: web.WebSocketResponse,
                        watches: _Watches, subscription: Subscription, reader: asyncio.Task[None]) -> None:
    registry = services.registry
    generation = registry.generation
    loop = asyncio.get_running_loop()
    next_check = loop.time() + RECHECK_SECONDS
    queue = subscription.queue
    address = peer_address(request)
    while not reader.done() and not socket.closed:
        change: DocumentChange | None = None
        getter = asyncio.ensure_future(queue.get())
        waker = asyncio.ensure_future(subscription.wake.wait())
        done, _ = await asyncio.wait({getter, waker, reader}, timeout=max(0.0, next_check - loop.time()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            change = getter.result()
        else:
            getter.cancel()
        waker.cancel()
        subscription.wake.clear()
        if subscription.overflowed:
            await _close(socket, "This changes stream fell more than 10,000 changes behind and was closed; "
                                 "reconnect and read the documents again.")
            return
        # Before anything is sent: the certificate still reads this database (revocation bites here), and the
        # address is still allowed (one attribute test while everyone is).
        if (registry.generation != generation or registry.stale or loop.time() >= next_check or change is None
                or not services.allowlist.allows(address)):
            generation = registry.generation
            next_check = loop.time() + RECHECK_SECONDS
            try:
                refusal = await _refusal(request, services, db)
            except RoostError as exc:  # the registry cannot catch up: fail closed
                refusal = exc
            if refusal is not None:
                await _close(socket, refusal.message)
                return
        if change is not None and watches.wants(change):
            await socket.send_str(_message({"Type": "DocumentChange", "Value": change.to_wire()}))


async def _close(socket: web.WebSocketResponse, reason: str) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await socket.send_str(_message({"Type": "Error", "Exception": reason}))
    # The close frame's reason is at most 123 bytes: the full message went in the Error above.
    await socket.close(code=_POLICY_VIOLATION, message=reason.encode()[:120])


@routes.get("/info/tcp", level=Level.VALID_USER)
async def tcp_info(request: web.Request) -> web.StreamResponse:
    """RavenDB's TCP endpoint description. Roost has no TCP protocol (subscriptions): the clients read only
    ``Certificate`` here, to pin the server certificate for the Changes API's WebSocket."""
    services = request.app[SERVICES]
    current = services.server_certificate
    return json_response({
        "Url": services.url, "Port": 0, "NodeTag": "A", "Urls": [services.url],
        "Certificate": base64.b64encode(current.info.der).decode() if current is not None else None,
    })
