"""The composition root: builds every part from the settings, starts the HTTPS listener, stops cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from roost import clock
from roost.backups.schedule import Schedules
from roost.backups.service import BackupService
from roost.cluster.changes import Following, ServerCertificateFollower, follow_local_changes, follow_schedules
from roost.cluster.nodes import ClusterNodes, tentative_tag
from roost.cluster.replacement import CertificateReplacement
from roost.documents.store import DocumentStore
from roost.errors import ConfigurationError
from roost.pki import datadir
from roost.security import proxy, server_certificate, trust
from roost.security.allowlist import AcceptGate, AllowedAddresses, AllowList, adopt_listening_socket, listening_socket
from roost.security.audit import FILE_NAME as AUDIT_FILE_NAME
from roost.security.audit import AuditLog, head_key
from roost.security.certificate_source import CertificateSource
from roost.security.certificates import CertificateService
from roost.security.identity import AuthStatus, Identifier, Identity
from roost.security.implicit import DeletedThumbprints, ImplicitTrust
from roost.security.registry import Registry
from roost.security.server_certificate import ServerCertificates
from roost.security.trust import TrustAnchors
from roost.security.twofactor import TwoFactor
from roost.services import Address, Databases, Services
from roost.settings import Settings
from roost.storage import open_storage
from roost.storage.base import Storage
from roost.storage.sqlite import SqliteStorage
from roost.tls import use_small_read_buffers
from roost.types import Clearance
from roost.webhooks import Webhooks, schedule_expiry_notices

log = logging.getLogger("roost")

RENEWAL_CHECK_SECONDS = 3600.0
RENEWAL_SCHEDULE = Identity(AuthStatus.CLUSTER_ADMIN, display_name="the renewal schedule")


class Server:
    """Builds the services from the settings, listens, and stops them again. The HTTP app sees ``services`` only."""

    def __init__(self, services: Services, *, warnings: list[str], initial_client: datadir.InitialClient | None,
                 pool: KeyPool, temp_dir: Path | None, following: Following | None = None,
                 webhooks: Webhooks | None = None) -> None:
        self.services = services
        self._following = following
        self._schedule_follower: asyncio.Task[None] | None = None
        self.warnings = warnings
        self.initial_client = initial_client
        self._pool = pool
        self._temp_dir = temp_dir
        self._runner: web.AppRunner | None = None
        self._renewal: asyncio.Task[None] | None = None
        self._webhooks = webhooks
        self._certificate_source: CertificateSource | None = None
        self._expiry_notices: asyncio.Task[None] | None = None

    @classmethod
    async def create(cls, settings: Settings) -> Server:
        temp_dir = None
        if settings.run_in_memory:
            temp_dir = Path(tempfile.mkdtemp(prefix="roost-in-memory-"))
            settings = replace(settings, data_dir=temp_dir)
        if settings.test_clock_offset_seconds:
            clock.set_offset(settings.test_clock_offset_seconds)  # before anything reads the time
        warnings: list[str] = []
        if settings.test_clock_offset_seconds:
            warnings.append(f"test_clock_offset_seconds is set: the server's clock is "
                            f"{settings.test_clock_offset_seconds} s off. Use it only in tests.")
        datadir.ensure_directory(settings.data_dir)
        storage = await open_storage(settings.storage_url, settings.data_dir)
        registry = Registry(storage)
        await registry.watch()  # before loading, so that no change made by another node is missed
        await registry.load()
        identifier = Identifier(registry)
        documents = DocumentStore(storage)
        await storage.watch_databases(documents.forget)  # before loading, as for the registry
        await documents.load()
        # The tag this node will claim when it listens (the setting, the one it had before, or the first free one),
        # known now so that its audit chain and head are named by it from the first entry.
        tag = settings.node_tag or await tentative_tag(storage, settings.data_dir)
        audit = AuditLog(settings.data_dir / AUDIT_FILE_NAME, tag)
        audit.on_append.append(_audit_head_keeper(storage, asyncio.get_running_loop(), lambda: head_key(audit.node)))
        two_factor = TwoFactor(storage, registry, clock.now, audit=audit,
                               default_minutes=settings.two_factor_default_minutes,
                               max_minutes=settings.two_factor_max_minutes)
        await two_factor.load()
        pool = KeyPool()
        address = Address()

        lock = asyncio.Lock()  # one registry write at a time, whichever service writes
        server_certificates = ServerCertificates(settings, registry, identifier, audit, lock)
        anchors: TrustAnchors | None = None
        initial_client = None
        if settings.secured:
            authority = server_certificate.load_authority(settings)
            current, configured = server_certificate.choose(settings, authority, warnings)
            anchors = await trust.prepare(settings, storage, registry, identifier, authority, current, warnings)
            server_certificates = ServerCertificates(
                settings, registry, identifier, audit, lock, authority=authority, current=current,
                configured_thumbprint=configured, tls=anchors.tls)
            initial_client = datadir.existing_initial_client(settings.certificates_dir)
        deleted = DeletedThumbprints(storage)
        tls_anchors = anchors
        implicit = ImplicitTrust(registry, identifier, deleted, audit, lock,
                                 anchors=(lambda: tls_anchors.tls.anchors) if tls_anchors is not None else None,
                                 well_known_issuer_hashes=settings.well_known_issuer_hashes)
        certificates = CertificateService(
            registry, identifier, anchors, server_certificates.authority, audit, pool.get,
            server_certificates=server_certificates, implicit=implicit, deleted=deleted, lock=lock,
            url=lambda: address.url, on_deleted=two_factor.forget, leases=storage)

        cluster = ClusterNodes(storage, identifier, deleted, audit, settings.data_dir, wanted_tag=settings.node_tag,
                               tentative_tag=tag,
                               tls=lambda: tls_anchors.tls if tls_anchors is not None else None,
                               shared=not isinstance(storage, SqliteStorage))
        await cluster.watch()
        server_certificates.on_installed.append(cluster.change_certificate)
        replacement = CertificateReplacement(storage, cluster, server_certificates, audit)
        cluster.on_change.append(replacement.heard)
        allowed_addresses = AllowedAddresses(storage, AllowList(), audit)
        cluster.on_change.append(allowed_addresses.heard)  # before loading, so that no change is missed
        await allowed_addresses.load(settings.allowed_ips)
        # Workers sharing an SQLite file follow each other's changes (roost.cluster.changes).
        follower = (ServerCertificateFollower(settings, server_certificates, identifier, lock)
                    if settings.secured and not CertificateSource.configured(settings) else None)
        following = follow_local_changes(storage, registry, documents, allowed_addresses, settings.allowed_ips,
                                         follower)
        backups = BackupService(storage, documents, audit, settings.data_dir)
        webhooks = None
        if settings.webhook_url and settings.webhook_secret:
            webhooks = Webhooks(settings.webhook_url, settings.webhook_secret, tag)
            audit.on_entry.append(webhooks.on_audit_entry)
        schedules = Schedules(storage, backups, audit, settings.data_dir)
        await schedules.load()
        services = Services(
            settings=settings, storage=storage, registry=registry, identifier=identifier, documents=documents,
            databases=Databases(documents, registry, audit), audit=audit, certificates=certificates,
            server_certificates=server_certificates, two_factor=two_factor, allowed_addresses=allowed_addresses,
            backups=backups, backup_schedules=schedules, trust_anchors=anchors, cluster=cluster,
            replacement=replacement, address=address)
        return cls(services, warnings=warnings, initial_client=initial_client, pool=pool, temp_dir=temp_dir,
                   following=following, webhooks=webhooks)

    async def start(self, listen_fd: int | None = None, *, proxy_fd: int | None = None, schedules: bool = True) -> str:
        """Listen (on ``listen_fd``, a worker's inherited socket, when given; and on the trusted proxy's Unix socket,
        ``proxy_fd`` when inherited) and start the background tasks; of several workers only one runs the scheduled
        ones (backups, the renewal), so that they run once."""
        from roost.http.app import build_app
        from roost.http.timeouts import TimedAppRunner

        services = self.services
        settings = services.settings
        app = build_app(services)
        self._runner = TimedAppRunner(app, settings, access_log=None, handle_signals=False)
        await self._runner.setup()
        host = settings.host
        if host == "localhost":
            host = "127.0.0.1"  # one socket: "localhost" may resolve to two addresses on two ports
        try:
            # Our own listening socket so that the IP allowlist runs at accept(), before any TLS handshake.
            if listen_fd is None:
                sock = listening_socket(host, settings.port, services.allowlist)
            else:
                sock = adopt_listening_socket(listen_fd, services.allowlist)
            if self._following is not None and listen_fd is not None:  # a worker: the others may change them
                sock.before_accept = self._following.before_accept
            context = services.tls.listening_context if services.tls else None
            use_small_read_buffers()  # asyncio's 256 KiB per TLS connection: see roost.tls
            site = _GatedSite(self._runner, sock, ssl_context=context, backlog=1024)
            await site.start()
        except OSError as exc:
            raise ConfigurationError(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror}.") from exc
        if settings.trusted_proxy_socket is not None:  # plain HTTP from a proxy that terminated TLS (security/proxy.py)
            unix = (socket.socket(fileno=proxy_fd) if proxy_fd is not None
                    else proxy.bind_socket(settings.trusted_proxy_socket, settings.trusted_proxy_socket_mode))
            await web.SockSite(self._runner, unix, backlog=1024).start()
        server = site._server
        assert server is not None
        services.address.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        services.address.url = settings.url_for_port(services.address.port)
        # For the CLI on this machine: `roost ... --data-dir DIR` finds the server without --url.
        if not settings.run_in_memory:
            (settings.data_dir / "server.url").write_text(services.address.url + "\n")
        if self.initial_client is None:  # first start: the initial client certificate, registered and written out
            self.initial_client = await services.certificates.create_initial_client(
                settings.certificates_dir, settings.initial_client_clearance, services.address.url)
        # In the cluster's shared storage: tag, URL, server certificate, heartbeat (roost.cluster.nodes).
        current = services.server_certificates.current
        await services.cluster.register(services.address.url, current.info if current else None)
        services.registry.start_flusher()
        if CertificateSource.configured(settings) and services.server_certificates.tls is not None:
            # Every process follows the file (or Load.Exec) itself: a new certificate without a restart.
            self._certificate_source = CertificateSource(settings, services.server_certificates.adopt)
            self._certificate_source.start()
        if self._webhooks is not None:
            self._webhooks.start()
            if schedules:  # one process of several workers announces expiries
                notice_days = settings.certificate_expiry_notice_days
                self._expiry_notices = schedule_expiry_notices(
                    self._webhooks, lambda: services.certificates.notifications(RENEWAL_SCHEDULE, notice_days))
        if schedules:  # one process per node: a replacement of the server certificate under way goes on here
            services.replacement.start_polling()
        if schedules:
            self._renewal = asyncio.get_running_loop().create_task(self._renew_generated_certificate())
            services.backup_schedules.start()
            if listen_fd is not None:  # a worker: the others may change the schedules
                self._schedule_follower = asyncio.get_running_loop().create_task(
                    follow_schedules(services.backup_schedules))
        return services.address.url

    async def _renew_generated_certificate(self) -> None:
        """At start and hourly: renew Roost's generated server certificate once it is within 30 days of expiring (as
        RavenDB's refresh cycle does for Let's Encrypt), with the same no-restart swap as ``refresh``; and retire
        renewed client certificates left unused (Settings.renewed_certificate_retire_days)."""
        services = self.services
        while True:
            try:
                await services.server_certificates.renew_if_due(RENEWAL_SCHEDULE)
            except Exception:
                log.exception("Could not renew the generated server certificate; will try again in an hour")
            try:
                await services.certificates.retire_renewed(RENEWAL_SCHEDULE,
                                                           services.settings.renewed_certificate_retire_days)
            except Exception:
                log.exception("Could not retire renewed certificates; will try again in an hour")
            await asyncio.sleep(RENEWAL_CHECK_SECONDS)

    async def stop(self) -> None:
        for task in (self._renewal, self._schedule_follower, self._expiry_notices):
            if task is not None:
                task.cancel()
        if self._webhooks is not None:
            await self._webhooks.stop()
        if self._certificate_source is not None:
            await self._certificate_source.stop()
        await self.services.backup_schedules.stop()
        await self.services.replacement.stop()
        await self.services.cluster.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.services.registry.stop()
        await self.services.storage.close()
        self._pool.shutdown()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop ``Server.EventLoop`` names (settings.EVENT_LOOPS)."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ConfigurationError("Server.EventLoop=uvloop needs the uvloop package: pip install uvloop.") from None
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


class _GatedSite(web.SockSite):
    """The listener, with the IP allowlist before any TLS handshake on either event loop.

    asyncio's accept loop calls ``GatedSocket.accept()``, which drops refused peers. uvloop accepts in libuv and
    never calls it, so there the listener accepts plain TCP into an ``AcceptGate``, which checks the peer and only
    then starts TLS on the connection (``loop.start_tls``), handing aiohttp's handler the TLS transport.
    """

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(loop, asyncio.BaseEventLoop):  # the standard library's loop: GatedSocket.accept() runs
            await super().start()
            return
        await web.BaseSite.start(self)  # registers the site with its runner, as SockSite.start does first
        server = self._runner.server
        assert server is not None
        sock = self._sock
        allowlist = sock.allowlist  # type: ignore[attr-defined]
        context = self._ssl_context
        self._server = await loop.create_server(lambda: AcceptGate(allowlist, server, context), sock=sock,
                                                backlog=self._backlog)


class KeyPool:
    """The worker processes that make RSA keys, started on first use (EC keys, the default, need none)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            # Workers at the lowest CPU priority: on a small machine an RSA-4096 generation must never take the
            # core away from the event loop (bench/ figure 2: p99 of a GET during 8 generations).
            self._pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("forkserver"),
                                             initializer=os.nice, initargs=(19,))
        return self._pool

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _audit_head_keeper(storage: Storage, loop: asyncio.AbstractEventLoop,
                       key_of: Callable[[], str]) -> Callable[[int, str], None]:
    """The newest audit Seq and hash also live in storage (under this node's key), so that cutting the end off the
    log is noticed. Writes are serialized and each writes the newest head known when it runs, so a slower write
    of an older head can never land last (appends come from the event loop and from backup threads), and none
    lowers a head that another worker process of this node has moved further."""
    newest = [(0, "")]
    guard = threading.Lock()
    writes = asyncio.Lock()

    async def write() -> None:
        async with writes:
            with guard:
                seq, digest = newest[0]
            key = key_of()  # the node's tag can change once, when the claim at start finds the tentative one taken
            stored = await storage.get_setting(key)
            if isinstance(stored, list) and stored and isinstance(stored[0], int) and stored[0] >= seq:
                return  # another worker process of this node (one chain, one head) already noted a later entry
            await storage.put_setting(key, [seq, digest])

    def keep(seq: int, digest: str) -> None:
        with guard:
            if seq > newest[0][0]:
                newest[0] = (seq, digest)
        if not loop.is_closed():
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(write()))

    return keep


async def run(settings: Settings, ignored: list[str], *, echo: object = print, listen_fd: int | None = None,
              proxy_fd: int | None = None, ready: Callable[[str, list[str]], None] | None = None,
              schedules: bool = True) -> None:
    """``roost serve``: start, print where to connect, serve until SIGINT/SIGTERM. A worker of ``--workers``
    (``roost.cluster.workers``) listens on ``listen_fd`` and reports to ``ready`` instead of printing."""
    out = echo if callable(echo) else print
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = await Server.create(settings)
    try:
        url = await server.start(listen_fd, proxy_fd=proxy_fd, schedules=schedules)
        if ready is not None:
            ready(url, server.warnings)
            await _until_signalled()
            return
        for line in startup_lines(settings, url, ignored, server.warnings, server.initial_client):
            out(line)
        await _until_signalled()
    finally:
        await server.stop()


def startup_lines(settings: Settings, url: str, ignored: list[str], warnings: list[str],
                  initial_client: datadir.InitialClient | None, *, extra: list[str] | None = None) -> list[str]:
    """What `roost serve` prints once it listens (one process or the parent of several workers alike)."""
    lines = [f"Warning: ignoring settings that mean nothing to Roost: {', '.join(ignored)}"] if ignored else []
    if not settings.secured:
        banner = "!" * 78
        lines += [banner,
                  "WARNING: Roost is running UNSECURED over plain HTTP. Every request is treated as ClusterAdmin.",
                  "Use this only for local development on a loopback address.", banner]
    lines += [f"Warning: {warning}" for warning in warnings]
    lines += [*(extra or []), f"Server available on: {url}", f"Studio: {url}/studio/"]
    if settings.trusted_proxy_socket is not None:
        mode = settings.trusted_proxy_socket_mode
        lines.append(f"Trusted proxy socket: {settings.trusted_proxy_socket} (mode {mode:o}; client certificate in "
                     f"{settings.trusted_proxy_header})")
    if initial_client is not None:
        pem = initial_client.pem_path.resolve()
        ca = (settings.certificates_dir / datadir.CA_CERTIFICATE_FILE).resolve()
        lines += [f"Admin client certificate: {initial_client.zip_path.resolve()} (PEM: {pem})",
                  f"Try it: curl --cert {pem} --cacert {ca} {url}/certificates/whoami"]
    return lines


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


__all__ = ["Clearance", "Server", "run"]
