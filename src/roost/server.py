"""The composition root: builds every part from the settings, starts the HTTPS listener, stops cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import web

from roost import clock
from roost.backups.schedule import Schedules
from roost.backups.service import BackupService
from roost.documents.store import DocumentStore
from roost.errors import ConfigurationError, RoostError
from roost.pki import datadir
from roost.pki.authority import CertificateAuthority
from roost.security import server_certificate, trust
from roost.security.allowlist import AllowList, listening_socket
from roost.security.audit import FILE_NAME as AUDIT_FILE_NAME
from roost.security.audit import HEAD_SETTING as AUDIT_HEAD_KEY
from roost.security.audit import AuditLog
from roost.security.certificates import CertificateService
from roost.security.identity import AuthStatus, Identifier, Identity
from roost.security.implicit import DeletedThumbprints, ImplicitTrust
from roost.security.registry import Registry
from roost.security.server_certificate import ServerCertificates
from roost.security.trust import TrustAnchors
from roost.security.twofactor import TwoFactor
from roost.settings import Settings
from roost.storage import open_storage
from roost.storage.base import Storage
from roost.tls import ServerTLS
from roost.types import Clearance

log = logging.getLogger("roost")
ALLOWED_IPS_KEY = "security.allowed_ips"

RENEWAL_CHECK_SECONDS = 3600.0
RENEWAL_SCHEDULE = Identity(AuthStatus.CLUSTER_ADMIN, display_name="the renewal schedule")


@dataclass
class Server:
    settings: Settings
    storage: Storage
    registry: Registry
    identifier: Identifier
    documents: DocumentStore
    certificates: CertificateService = field(init=False)
    server_certificates: ServerCertificates = field(init=False)
    two_factor: TwoFactor = field(init=False)
    audit: AuditLog = field(init=False)  # server.audit.record(event, actor=..., **fields): see security/audit.py
    allowlist: AllowList = field(default_factory=AllowList)
    backups: BackupService = field(init=False)
    backup_schedules: Schedules = field(init=False)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # stop hooks (schedules, ...)
    trust_anchors: TrustAnchors | None = None  # None on an unsecured server
    initial_client: datadir.InitialClient | None = None
    url: str = ""
    port: int = 0
    warnings: list[str] = field(default_factory=list)
    on_certificates_deleted: list[Callable[[list[str]], Awaitable[None]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _temp_dir: Path | None = None
    _pool: ProcessPoolExecutor | None = None
    _renewal: asyncio.Task[None] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    async def create(cls, settings: Settings) -> Server:
        temp_dir = None
        if settings.run_in_memory:
            temp_dir = Path(tempfile.mkdtemp(prefix="roost-in-memory-"))
            settings = replace(settings, data_dir=temp_dir)
        if settings.test_clock_offset_seconds:
            clock.set_offset(settings.test_clock_offset_seconds)  # before anything reads the time
        datadir.ensure_directory(settings.data_dir)
        storage = await open_storage(settings.storage_url, settings.data_dir)
        registry = Registry(storage)
        await registry.watch()  # before loading, so that no change made by another node is missed
        await registry.load()
        identifier = Identifier(registry)
        documents = DocumentStore(storage, registry)
        await documents.load()
        server = cls(settings, storage, registry, identifier, documents)
        server._temp_dir = temp_dir
        server._loop = asyncio.get_running_loop()
        server.audit = AuditLog(settings.data_dir / AUDIT_FILE_NAME)
        server.audit.on_append.append(server._keep_audit_head)
        await server._build_certificate_services()
        server.two_factor = TwoFactor(storage, registry, clock.now,
                                      default_minutes=settings.two_factor_default_minutes,
                                      max_minutes=settings.two_factor_max_minutes)
        await server.two_factor.load()
        server.on_certificates_deleted.append(server.two_factor.forget)
        if settings.test_clock_offset_seconds:
            server.warnings.append(f"test_clock_offset_seconds is set: the server's clock is "
                                   f"{settings.test_clock_offset_seconds} s off. Use it only in tests.")
        server.backups = BackupService(server)
        server.backup_schedules = Schedules(server)
        await server.backup_schedules.load()
        server.background.append(server.backup_schedules.stop)
        await server._load_allowlist()
        return server

    def _keep_audit_head(self, seq: int, digest: str) -> None:
        """The newest audit Seq and hash also live in storage, so that cutting the end off the log is noticed."""
        loop = self._loop

        def store() -> None:
            asyncio.ensure_future(self.storage.put_setting(AUDIT_HEAD_KEY, [seq, digest]))

        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(store)

    async def _load_allowlist(self) -> None:
        """Security.AllowedIPs from the settings, unless changed at run time (then storage holds the list)."""
        stored = await self.storage.get_setting(ALLOWED_IPS_KEY)
        try:
            self.allowlist.replace(stored if stored is not None else self.settings.allowed_ips)
        except RoostError as exc:
            raise ConfigurationError(f"Security.AllowedIPs: {exc.message}") from None

    async def set_allowed_ips(self, entries: list[str]) -> None:
        """Validate, store (so it survives a restart), then apply: new connections at once, open ones on their
        next request (the middleware checks every request)."""
        check = AllowList(entries)
        await self.storage.put_setting(ALLOWED_IPS_KEY, list(check.entries))
        self.allowlist.replace(check.entries)

    async def _build_certificate_services(self) -> None:
        """The server certificate and the trust anchors (secured servers only), then the certificate service."""
        settings = self.settings
        lock = asyncio.Lock()  # one registry write at a time, whichever service writes
        self.server_certificates = ServerCertificates(settings, self.registry, self.identifier, self.audit, lock)
        if settings.secured:
            authority = server_certificate.load_authority(settings)
            current, configured = server_certificate.choose(settings, authority, self.warnings)
            self.trust_anchors = await trust.prepare(settings, self.storage, self.registry, self.identifier,
                                                     authority, current, self.warnings)
            self.server_certificates = ServerCertificates(
                settings, self.registry, self.identifier, self.audit, lock, authority=authority, current=current,
                configured_thumbprint=configured, tls=self.trust_anchors.tls)
            self.initial_client = datadir.existing_initial_client(settings.certificates_dir)
        anchors = self.trust_anchors
        deleted = DeletedThumbprints(self.storage)
        implicit = ImplicitTrust(self.registry, self.identifier, deleted, self.audit, lock,
                                 anchors=(lambda: anchors.tls.anchors) if anchors is not None else None,
                                 well_known_issuer_hashes=settings.well_known_issuer_hashes)
        self.certificates = CertificateService(
            self.registry, self.identifier, anchors, self.authority, self.audit, lambda: self.process_pool,
            server_certificates=self.server_certificates, implicit=implicit, deleted=deleted, lock=lock,
            url=lambda: self.url, on_deleted=self.forget_certificate)

    @property
    def authority(self) -> CertificateAuthority | None:
        return self.server_certificates.authority

    @property
    def server_certificate(self) -> datadir.ServerCertificate | None:
        return self.server_certificates.current

    @property
    def tls(self) -> ServerTLS | None:
        return self.trust_anchors.tls if self.trust_anchors is not None else None

    async def ensure_initial_client(self, url: str) -> None:
        """First start: the initial client certificate (ClusterAdmin by default), registered and written out."""
        if self.initial_client is None:
            self.initial_client = await self.certificates.create_initial_client(
                self.settings.certificates_dir, self.settings.initial_client_clearance, url)

    async def forget_certificate(self, thumbprints: list[str]) -> None:
        """Hook for everything that keeps per-certificate state (2FA sessions, ...) when certificates go away."""
        for hook in self.on_certificates_deleted:
            await hook(thumbprints)

    @property
    def process_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            # Workers at the lowest CPU priority: on a small machine an RSA-4096 generation must never take the
            # core away from the event loop (bench/ figure 2: p99 of a GET during 8 generations).
            self._pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("forkserver"),
                                             initializer=os.nice, initargs=(19,))
        return self._pool

    async def start(self) -> str:
        from roost.http.app import build_app
        from roost.http.timeouts import TimedAppRunner

        app = build_app(self)
        self._runner = TimedAppRunner(app, self.settings, access_log=None, handle_signals=False)
        await self._runner.setup()
        host = self.settings.host
        if host == "localhost":
            host = "127.0.0.1"  # one socket: "localhost" may resolve to two addresses on two ports
        try:
            # Our own listening socket so that the IP allowlist runs at accept(), before any TLS handshake.
            sock = listening_socket(host, self.settings.port, self.allowlist)
            site = web.SockSite(self._runner, sock, ssl_context=self.tls.listening_context if self.tls else None,
                                backlog=1024)
            await site.start()
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}."
            ) from exc
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = self.settings.url_for_port(self.port)
        # For the CLI on this machine: `roost ... --data-dir DIR` finds the server without --url.
        if not self.settings.run_in_memory:
            (self.settings.data_dir / "server.url").write_text(self.url + "\n")
        await self.ensure_initial_client(self.url)
        self.registry.start_flusher()
        self._renewal = asyncio.get_running_loop().create_task(self._renew_generated_certificate())
        self.backup_schedules.start()
        return self.url

    async def _renew_generated_certificate(self) -> None:
        """Hourly: renew Roost's generated server certificate once it is within 30 days of expiring (as RavenDB's
        refresh cycle does for Let's Encrypt), with the same no-restart swap as ``refresh``."""
        while True:
            await asyncio.sleep(RENEWAL_CHECK_SECONDS)
            try:
                await self.server_certificates.renew_if_due(RENEWAL_SCHEDULE)
            except Exception:
                log.exception("Could not renew the generated server certificate; will try again in an hour")

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        for hook in self.background:
            await hook()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.registry.stop()
        await self.storage.close()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    @property
    def server_thumbprint(self) -> str | None:
        return self.server_certificates.thumbprint

    @property
    def ca_path(self) -> Path | None:
        return self.settings.certificates_dir / "ca.crt" if self.authority else None


async def run(settings: Settings, ignored: list[str], *, echo: object = print) -> None:
    """``roost serve``: start, print where to connect, serve until SIGINT/SIGTERM."""
    out = echo if callable(echo) else print
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = await Server.create(settings)
    try:
        url = await server.start()
        if ignored:
            out(f"Warning: ignoring settings that mean nothing to Roost: {', '.join(ignored)}")
        if not settings.secured:
            banner = "!" * 78
            out(banner)
            out("WARNING: Roost is running UNSECURED over plain HTTP. Every request is treated as ClusterAdmin.")
            out("Use this only for local development on a loopback address.")
            out(banner)
        for warning in server.warnings:
            out(f"Warning: {warning}")
        out(f"Server available on: {url}")
        out(f"Studio: {url}/studio/")
        if server.initial_client is not None:
            pem = server.initial_client.pem_path.resolve()
            ca = server.ca_path.resolve() if server.ca_path else None
            out(f"Admin client certificate: {server.initial_client.zip_path.resolve()} (PEM: {pem})")
            out(f"Try it: curl --cert {pem} --cacert {ca} {url}/certificates/whoami")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await server.stop()


__all__ = ["Clearance", "Server", "run"]
