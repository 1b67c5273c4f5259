"""The IP allowlist (``Security.AllowedIPs``): which peer addresses may talk to the server at all.

Checked twice, both O(1) per call after the first sight of an address:

* at ``accept()`` (``GatedSocket``), before asyncio wraps the connection in TLS: a refused peer's socket is closed
  at once, so it costs the server no handshake and learns nothing about the server certificate;
* on every request (``roost.http.middleware``), so that a connection opened before an address was removed gets a
  clear 403 on its next request instead of keeping its access for as long as it stays alive.

An empty list means everyone (the default), and that case is a single attribute test.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, cast

from roost.errors import BadRequestError, ConfigurationError, RoostError
from roost.security.audit import Event
from roost.tls import ListeningContext

if TYPE_CHECKING:
    from roost.security.audit import AuditLog
    from roost.security.identity import Identity
    from roost.storage.base import Storage

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# IPv4 addresses as a dual-stack socket shows them (RFC 4291, 2.5.5.2): ::ffff:a.b.c.d.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

# Peers seen since the last change: address string -> allowed. Bounded so that a scan from many addresses cannot
# grow it without limit; when full it is simply cleared (the next lookups repopulate it).
_CACHE_LIMIT = 65536

log = logging.getLogger("roost")


def parse_entries(entries: Iterable[object]) -> tuple[Network, ...]:
    """IPv4/IPv6 addresses and CIDR ranges. Raises BadRequestError naming the first bad entry."""
    networks: list[Network] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise BadRequestError(f"'{entry}' is not an IP address or CIDR range (e.g. 203.0.113.7, 10.0.0.0/8, ::1).")
        try:
            # strict=False: "10.1.2.3/8" means the range 10.0.0.0/8, as administrators usually write it.
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise BadRequestError(
                f"'{entry}' is not an IP address or CIDR range (e.g. 203.0.113.7, 10.0.0.0/8, ::1)."
            ) from None
        networks.append(_unmapped(network))
    return tuple(networks)


def _unmapped(network: Network) -> Network:
    """An IPv4-mapped entry (``::ffff:127.0.0.1``, ``::ffff:10.0.0.0/104``) as the IPv4 network it means.

    Peers are compared in their IPv4 form (``normalize``), so both sides meet in one form; left mapped, the entry
    would match nobody and could lock every client out.
    """
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        address = network.network_address.ipv4_mapped
        assert address is not None
        return ipaddress.IPv4Network((address, network.prefixlen - 96))
    return network


def normalize(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer address as the list sees it: an IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class AllowList:
    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.everyone = True
        self.entries: tuple[str, ...] = ()
        self._networks: tuple[Network, ...] = ()
        self._cache: dict[str, bool] = {}
        self.replace(entries)

    def replace(self, entries: Iterable[str]) -> None:
        """Swap the list in one step (validated first: a bad entry changes nothing)."""
        networks = parse_entries(entries)
        self._networks = networks
        self.entries = tuple(str(n) if n.num_addresses > 1 else str(n.network_address) for n in networks)
        self._cache = {}
        self.everyone = not networks

    def allows(self, address: str | None) -> bool:
        if self.everyone:
            return True
        if address is None:
            return False  # no peer address (a Unix socket): not an allowed IP
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        ip = normalize(address)
        allowed = ip is not None and any(ip in network for network in self._networks)
        if not allowed and isinstance(ip, ipaddress.IPv4Address):
            # A wide IPv6 entry (::/0, ::ffff:0:0/80) covers IPv4 peers in their mapped form too.
            mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
            allowed = any(mapped in network for network in self._networks)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache = {}
        self._cache[address] = allowed
        return allowed

    def would_allow(self, entries: Iterable[str], address: str | None) -> bool:
        return AllowList(entries).allows(address)


class GatedSocket(socket.socket):
    """A listening socket whose ``accept()`` drops peers outside the allowlist before asyncio sees them.

    asyncio's accept loop calls ``sock.accept()`` on exactly this object and starts TLS only on what it returns,
    so a refused peer gets its TCP connection closed before any handshake (no ServerHello, no certificate).
    The allowed path adds one attribute test (empty list) or one dict lookup.
    """

    allowlist: AllowList
    # Called before each accept() (roost.cluster.changes: another worker may have changed the allowlist).
    before_accept: Callable[[], None] | None = None

    def accept(self) -> tuple[socket.socket, object]:
        if self.before_accept is not None:
            self.before_accept()
        while True:
            conn, addr = super().accept()  # BlockingIOError when the backlog is empty: asyncio stops there
            if self.allowlist.allows(addr[0] if isinstance(addr, tuple) else None):
                return conn, addr
            conn.close()


class AcceptGate(asyncio.Protocol):
    """The allowlist at accept() for an event loop that accepts in C (uvloop never calls ``GatedSocket.accept``).

    The listener accepts plain TCP into this protocol. A refused peer is aborted in ``connection_made``, before a
    byte is written, so it gets no ServerHello, as with ``GatedSocket``. An allowed one has TLS started on its
    connection (``loop.start_tls``, the same listening context: same sni_callback, same options) and the
    application's protocol receives the TLS transport once the handshake is done, as ``create_server(ssl=...)``
    would give it.
    """

    def __init__(self, allowlist: AllowList, protocol_factory: Callable[[], asyncio.BaseProtocol],
                 context: ListeningContext | None) -> None:
        self._allowlist = allowlist
        self._factory = protocol_factory
        self._context = context
        self._task: asyncio.Task[None] | None = None
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, but has its methods.
        tcp = cast(asyncio.Transport, transport)
        peer = tcp.get_extra_info("peername")
        if not self._allowlist.allows(peer[0] if isinstance(peer, tuple) else None):
            tcp.abort()
            return
        if self._context is None:
            inner = self._factory()
            tcp.set_protocol(inner)
            inner.connection_made(tcp)
            return
        tcp.pause_reading()
        self._task = asyncio.get_running_loop().create_task(self._start_tls(tcp, self._context))

    def data_received(self, data: bytes) -> None:
        # uvloop may already have read the ClientHello when connection_made paused reading: kept for the TLS protocol.
        self._early.append(data)

    async def _start_tls(self, tcp: asyncio.Transport, context: ListeningContext) -> None:
        loop = asyncio.get_running_loop()
        inner = self._factory()
        handshake = loop.create_task(loop.start_tls(tcp, inner, context, server_side=True))
        # start_tls swaps the transport's protocol for its TLS protocol in its first step; what was read before that
        # is handed to the TLS protocol right after its connection_made (call_soon keeps that order).
        while tcp.get_protocol() is self and not handshake.done():
            await asyncio.sleep(0)
        if self._early and not handshake.done():
            loop.call_soon(_feed, tcp.get_protocol(), b"".join(self._early))
            self._early = []
        try:
            tls = await handshake
        except Exception:  # a failed or abandoned handshake: create_server(ssl=...) drops those silently too
            tcp.abort()
            return
        if tls is None:
            tcp.abort()
            return
        inner.connection_made(tls)

    def connection_lost(self, exc: Exception | None) -> None:
        # Before TLS started only (start_tls moves the connection to its own protocol): the handshake task sees
        # the closed transport and gives up.
        return None


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Bytes read before start_tls, delivered to its protocol as the transport would have delivered them."""
    if isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)
        return
    buffered = cast(asyncio.BufferedProtocol, protocol)  # uvloop's SSLProtocol: get_buffer/buffer_updated
    view = memoryview(data)
    while view:
        buffer = memoryview(buffered.get_buffer(len(view)))
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        buffered.buffer_updated(n)
        view = view[n:]


def listening_socket(host: str, port: int, allowlist: AllowList, backlog: int = 1024) -> GatedSocket:
    """Bind and listen as asyncio's create_server would (SO_REUSEADDR, IPv6-only for an IPv6 address)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = GatedSocket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    sock.allowlist = allowlist
    return sock


def adopt_listening_socket(fd: int, allowlist: AllowList) -> GatedSocket:
    """A listening socket inherited from a parent process (``roost serve --workers``): the same gate at accept()."""
    sock = GatedSocket(fileno=fd)
    sock.setblocking(False)
    sock.allowlist = allowlist
    return sock


class AllowedAddresses:
    """The live allowlist and where it is kept: loaded at start (storage wins over the settings once an
    administrator changed the list at run time), changed by ``replace`` (stored first, so a change survives a
    restart; then applied: new connections at once, open ones on their next request) and audited."""

    SETTING = "security.allowed_ips"

    def __init__(self, storage: Storage, allowlist: AllowList, audit: AuditLog) -> None:
        self._storage = storage
        self._audit = audit
        self.allowlist = allowlist

    async def load(self, configured: Iterable[str]) -> None:
        stored = await self._storage.get_setting(self.SETTING)
        try:
            self.allowlist.replace(stored if stored is not None else configured)
        except RoostError as exc:
            raise ConfigurationError(f"Security.AllowedIPs: {exc.message}") from None

    TOPIC = "allowlist"
    _TOPIC_LIMIT = 7000  # a longer list is announced without its entries, and read from storage

    def _topic(self, entries: list[str]) -> str:
        encoded = json.dumps(entries)
        return f"{self.TOPIC}:{encoded}" if len(encoded) <= self._TOPIC_LIMIT else self.TOPIC

    def heard(self, topic: str) -> None:
        """A cluster topic (on the notification callback): another node changed the list, or changes may have been
        missed ("*"). A list carried in the notification applies before the next request or connection."""
        if topic.startswith(self.TOPIC + ":"):
            try:
                self.allowlist.replace(json.loads(topic[len(self.TOPIC) + 1:]))
            except (RoostError, ValueError, TypeError):
                log.warning("Ignored an allowlist notification that does not parse; reading the list from storage")
                asyncio.get_running_loop().create_task(self._reload())
        elif topic in (self.TOPIC, "*"):
            asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            stored = await self._storage.get_setting(self.SETTING)
            if stored is not None:
                self.allowlist.replace(stored)
        except Exception:
            log.exception("Could not read the allowlist from storage")

    async def replace(self, entries: list[str], *, actor: Identity, address: str | None, forced: bool) -> None:
        check = AllowList(entries)  # validated before anything changes
        before = list(self.allowlist.entries)
        await self._storage.put_setting(self.SETTING, list(check.entries))
        self.allowlist.replace(check.entries)
        # Every node of a cluster applies it before this returns (roost.cluster.nodes: cluster topics).
        await self._storage.notify_cluster(self._topic(list(check.entries)))
        self._audit.record(Event.ALLOWLIST_CHANGED, actor=actor, Before=before, After=list(check.entries),
                           Forced=forced, Address=address)
