"""The composition root: builds every part from the settings, starts the HTTPS listener, stops cleanly."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
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
from roost.pki.inspect import CertificateInfo, load_certificates, thumbprint_of
from roost.security.allowlist import AllowList, listening_socket
from roost.security.audit import FILE_NAME as AUDIT_FILE_NAME
from roost.security.audit import HEAD_SETTING as AUDIT_HEAD_KEY
from roost.security.audit import AuditLog
from roost.security.certificates import CertificateService
from roost.security.identity import AuthStatus, Identifier, Identity
from roost.security.registry import CertificateDefinition, Registry
from roost.security.twofactor import TwoFactor
from roost.settings import Settings
from roost.storage import open_storage
from roost.storage.base import Storage
from roost.tls import ServerTLS
from roost.types import Clearance, Thumbprint

log = logging.getLogger("roost")
ALLOWED_IPS_KEY = "security.allowed_ips"

RENEW_GENERATED_BEFORE = dt.timedelta(days=30)
RENEWAL_CHECK_SECONDS = 3600.0
RENEWAL_SCHEDULE = Identity(AuthStatus.CLUSTER_ADMIN, display_name="the renewal schedule")
SERVER_CERTIFICATE_NAME = "Server Certificate"
OLD_SERVER_CERTIFICATE_NAME = "Old Server Certificate - can delete"


def _certificates_from_file(path: Path, setting: str) -> list[CertificateInfo]:
    try:
        return load_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"{setting}: cannot read '{path}': {exc.strerror}.") from exc
    except RoostError as exc:
        raise ConfigurationError(f"{setting}: '{path}' holds no certificate Roost can read ({exc.message}).") from exc


@dataclass
class Server:
    settings: Settings
    storage: Storage
    registry: Registry
    identifier: Identifier
    documents: DocumentStore
    certificates: CertificateService = field(init=False)
    two_factor: TwoFactor = field(init=False)
    audit: AuditLog = field(init=False)  # server.audit.record(event, actor=..., **fields): see security/audit.py
    allowlist: AllowList = field(default_factory=AllowList)
    backups: BackupService = field(init=False)
    backup_schedules: Schedules = field(init=False)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # stop hooks (schedules, ...)
    authority: CertificateAuthority | None = None
    server_certificate: datadir.ServerCertificate | None = None
    tls: ServerTLS | None = None
    initial_client: datadir.InitialClient | None = None
    url: str = ""
    port: int = 0
    configured_thumbprint: str = ""  # the certificate the settings name, or Roost's generated one
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
        server.certificates = CertificateService(server)
        server.two_factor = TwoFactor(storage, registry, clock.now,
                                      default_minutes=settings.two_factor_default_minutes,
                                      max_minutes=settings.two_factor_max_minutes)
        await server.two_factor.load()
        server.on_certificates_deleted.append(server.two_factor.forget)
        if settings.test_clock_offset_seconds:
            clock.set_offset(settings.test_clock_offset_seconds)
            server.warnings.append(f"test_clock_offset_seconds is set: the server's clock is "
                                   f"{settings.test_clock_offset_seconds} s off. Use it only in tests.")
        server.audit = AuditLog(settings.data_dir / AUDIT_FILE_NAME)
        server.audit.on_append.append(server._keep_audit_head)
        server.backups = BackupService(server)
        server.backup_schedules = Schedules(server)
        await server.backup_schedules.load()
        server.background.append(server.backup_schedules.stop)
        await server._load_allowlist()
        if settings.secured:
            await server._prepare_certificates()
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

    async def _prepare_certificates(self) -> None:
        settings = self.settings
        certs_dir = settings.certificates_dir
        datadir.ensure_directory(certs_dir)
        certs_dir.chmod(0o700)
        if settings.ca_dir is not None:
            # A cluster's shared CA (docs/storage.md): its key stays in files, never in the shared database.
            datadir.ensure_directory(settings.ca_dir)
            settings.ca_dir.chmod(0o700)
            self.authority = datadir.load_or_create_authority(settings.ca_dir)
            datadir.publish_authority_certificate(certs_dir, self.authority)
        else:
            self.authority = datadir.load_or_create_authority(certs_dir)
        if settings.certificate_path is not None:
            configured = datadir.supplied_server_certificate(
                certs_dir, settings.certificate_path, settings.certificate_password
            )
        else:
            configured = datadir.generated_server_certificate(certs_dir, self.authority)
            if configured.info.not_after - clock.now() < RENEW_GENERATED_BEFORE:
                # RavenDB's most common lock-out is an expired server certificate; Roost's own one never expires.
                old = configured.info
                configured = datadir.generated_server_certificate(certs_dir, self.authority, renew=True)
                self.warnings.append(
                    f"The generated server certificate {old.thumbprint} expires on {old.not_after:%Y-%m-%d}; "
                    f"renewed it: now {configured.info.thumbprint}. Servers that trusted the old one through its "
                    "export need the new export (roost certs export)."
                )
        self.configured_thumbprint = configured.info.thumbprint
        self.server_certificate = self._installed_replacement(configured) or configured
        server_infos = [self.server_certificate.info, *self._previous_server_certificates()]
        self.identifier.set_server_certificates(server_infos)
        well_known, anchors_from_files = self._well_known_admins()
        self.identifier.set_well_known_admins(well_known)
        anchors = [self.authority.certificate_der()]
        anchors += [i.der for i in server_infos]
        anchors += [i.der for i in self.server_certificate.chain]
        anchors += anchors_from_files
        for path in settings.trusted_issuers:
            anchors += [i.der for i in _certificates_from_file(path, "Security.TrustedIssuers")]
        anchors += [d.certificate_der for d in self.registry.all() if d.source != "generated"]
        anchors += await self._stored_trust_anchors()
        self.tls = ServerTLS(self.server_certificate.cert_path, self.server_certificate.key_path, anchors,
                             self.server_certificate.key_password)
        self.warnings += self._unreachable_well_known_admins(well_known)
        self.registry.on_external_change.append(self._trust_external)
        self.initial_client = datadir.existing_initial_client(certs_dir)

    def _installed_replacement(self, configured: datadir.ServerCertificate) -> datadir.ServerCertificate | None:
        """The certificate replace-cluster-cert installed, unless the settings changed since or it expired."""
        replacement = datadir.installed_replacement(self.settings.certificates_dir)
        if replacement is None:
            return None
        info = replacement.certificate.info
        if replacement.configured_thumbprint != configured.info.thumbprint:
            self.warnings.append(
                f"The server certificate {info.thumbprint} installed with replace-cluster-cert is not used: the "
                f"configured certificate changed since (now {configured.info.thumbprint}), and the settings win."
            )
            return None
        if info.not_after < clock.now():
            self.warnings.append(
                f"The server certificate {info.thumbprint} installed with replace-cluster-cert expired on "
                f"{info.not_after:%Y-%m-%d}; serving the configured certificate {configured.info.thumbprint}. "
                "Replace it again (roost server-cert replace)."
            )
            return None
        return replacement.certificate

    def _unreachable_well_known_admins(self, well_known: set[str]) -> list[str]:
        """Well-known admin thumbprints whose certificate Roost has never seen cannot be checked for a trusted
        issuer; the handshake refuses them unless an anchor covers them (ARCHITECTURE.md, TLS)."""
        assert self.tls is not None
        seen = {thumbprint_of(der) for der in self.tls.anchors}
        seen |= {d.thumbprint for d in self.registry.all()}
        warnings = []
        for thumbprint in sorted(well_known - seen):
            warnings.append(
                f"Security.WellKnownCertificates.Admin: Roost cannot tell whether the certificate {thumbprint} "
                "will pass the TLS handshake, because it knows only its thumbprint. It is accepted only if it was "
                "issued by Roost's CA or by an issuer listed in Security.TrustedIssuers; otherwise its connections "
                "fail before any HTTP answer. Fix: give the path of the certificate file instead of the "
                "thumbprint, or add its issuer's certificate file to Security.TrustedIssuers."
            )
        return warnings

    async def _trust_external(self, definitions: list[CertificateDefinition]) -> None:
        """Another node registered these: anchor uploaded ones (and stored chain issuers) in TLS here too."""
        if self.tls is not None:
            anchors = [d.certificate_der for d in definitions if d.source != "generated"]
            self.tls.add_anchors(anchors + await self._stored_trust_anchors())

    def _previous_server_certificates(self) -> list[CertificateInfo]:
        """Server certificates this data directory used before (replaced or renewed): still ClusterNode."""
        retired = self.settings.certificates_dir / "retired"
        infos: list[CertificateInfo] = []
        if retired.is_dir():
            for path in sorted(retired.glob("*.crt")):
                infos.append(load_certificates(path.read_bytes())[0])
        return infos

    async def _stored_trust_anchors(self) -> list[bytes]:
        stored = await self.storage.get_setting("tls.trust_anchors") or []
        return [base64.b64decode(a) for a in stored]

    def _well_known_admins(self) -> tuple[set[str], list[bytes]]:
        thumbprints: set[str] = set()
        anchors: list[bytes] = []
        for entry in self.settings.well_known_admins:
            path = Path(entry)
            if path.is_file():
                for info in _certificates_from_file(path, "Security.WellKnownCertificates.Admin"):
                    thumbprints.add(info.thumbprint)
                    anchors.append(info.der)
            else:
                thumbprints.add(entry.upper())
        return thumbprints, anchors

    async def ensure_initial_client(self, url: str) -> None:
        """First start: the initial client certificate (ClusterAdmin by default), registered and written out."""
        if self.authority is None or self.initial_client is not None:
            return
        certs_dir = self.settings.certificates_dir
        client = datadir.create_initial_client(certs_dir, self.authority, url)
        info = client.info
        await self.registry.put([
            CertificateDefinition(
                name=datadir.INITIAL_CLIENT_NAME,
                thumbprint=Thumbprint(info.thumbprint),
                clearance=self.settings.initial_client_clearance,
                permissions={},
                not_before=info.not_before,
                not_after=info.not_after,
                pinning_hash=info.pinning_hash,
                certificate_der=info.der,
                subject=info.subject,
                source="generated",
            )
        ])
        self.initial_client = client

    async def trust(self, ders: list[bytes]) -> None:
        """Make certificates pass the TLS handshake from now on (added as anchors; see ARCHITECTURE.md, TLS).

        Chain certificates that came inside an uploaded .pfx are kept in storage, so they are anchors again after a
        restart; registered leaves are re-anchored from the registry.
        """
        if self.tls is None:
            return
        self.tls.add_anchors(ders)
        # O(1) per certificate: this runs on every upload, whatever the size of the registry.
        extra = [d for d in ders if self.registry.get(thumbprint_of(d)) is None]
        if extra:
            stored = await self.storage.get_setting("tls.trust_anchors") or []
            encoded = [base64.b64encode(d).decode() for d in extra]
            await self.storage.put_setting("tls.trust_anchors", sorted(set(stored) | set(encoded)))

    async def forget_certificate(self, thumbprints: list[str]) -> None:
        """Hook for everything that keeps per-certificate state (2FA sessions, ...) when certificates go away."""
        for hook in self.on_certificates_deleted:
            await hook(thumbprints)

    async def install_server_certificate(self, new: datadir.ServerCertificate) -> datadir.ServerCertificate:
        """Serve ``new`` from now on, without a restart (replace-cluster-cert and refresh).

        Open connections keep the certificate they negotiated; new ones get ``new``. Both certificates stay
        trusted as ClusterNode, registered under their own thumbprints (RavenDB registers both under the new
        one, overwriting the old entry: reference section 7), so that nodes and clients still presenting the old
        one keep working until an administrator deletes "Old Server Certificate - can delete".
        """
        assert self.tls is not None and self.server_certificate is not None
        old = self.server_certificate
        self.tls.replace_certificate(new.cert_path, new.key_path, new.key_password)
        self.tls.add_anchors([i.der for i in new.chain])
        entries = []
        for info, name in ((old.info, OLD_SERVER_CERTIFICATE_NAME), (new.info, SERVER_CERTIFICATE_NAME)):
            entries.append(CertificateDefinition(
                name=name, thumbprint=Thumbprint(info.thumbprint), clearance=Clearance.CLUSTER_NODE,
                permissions={}, not_before=info.not_before, not_after=info.not_after,
                pinning_hash=info.pinning_hash, certificate_der=info.der, subject=info.subject, source="server",
            ))
        await self.registry.put(entries)
        self.server_certificate = new
        self.identifier.set_server_certificates([new.info, *self._previous_server_certificates()])
        log.info("Server certificate replaced: %s -> %s", old.info.thumbprint, new.info.thumbprint)
        return old

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
            current = self.server_certificate
            if current is None or not current.generated:
                continue
            if current.info.not_after - clock.now() >= RENEW_GENERATED_BEFORE:
                continue
            try:
                await self.certificates.refresh_server_certificate(RENEWAL_SCHEDULE)
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
        return self.server_certificate.info.thumbprint if self.server_certificate else None

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
