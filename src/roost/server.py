"""The composition root: builds every part from the settings, starts the HTTPS listener, stops cleanly."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import web

from roost import clock
from roost.documents.store import DocumentStore
from roost.errors import ConfigurationError
from roost.pki import datadir
from roost.pki.authority import CertificateAuthority
from roost.pki.inspect import CertificateInfo, load_certificates
from roost.security.certificates import CertificateService
from roost.security.identity import Identifier
from roost.security.registry import CertificateDefinition, Registry
from roost.settings import Settings
from roost.storage import open_storage
from roost.storage.base import Storage
from roost.tls import ServerTLS
from roost.types import Clearance, Thumbprint

log = logging.getLogger("roost")


@dataclass
class Server:
    settings: Settings
    storage: Storage
    registry: Registry
    identifier: Identifier
    documents: DocumentStore
    certificates: CertificateService = field(init=False)
    authority: CertificateAuthority | None = None
    server_certificate: datadir.ServerCertificate | None = None
    tls: ServerTLS | None = None
    initial_client: datadir.InitialClient | None = None
    url: str = ""
    port: int = 0
    warnings: list[str] = field(default_factory=list)
    on_certificates_deleted: list[Callable[[list[str]], Awaitable[None]]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _temp_dir: Path | None = None
    _pool: ProcessPoolExecutor | None = None

    @classmethod
    async def create(cls, settings: Settings) -> Server:
        temp_dir = None
        if settings.run_in_memory:
            temp_dir = Path(tempfile.mkdtemp(prefix="roost-in-memory-"))
            settings = replace(settings, data_dir=temp_dir)
        datadir.ensure_directory(settings.data_dir)
        storage = await open_storage(settings.storage_url, settings.data_dir)
        registry = Registry(storage)
        await registry.load()
        identifier = Identifier(registry)
        documents = DocumentStore(storage, registry)
        await documents.load()
        server = cls(settings, storage, registry, identifier, documents)
        server._temp_dir = temp_dir
        server.certificates = CertificateService(server)
        if settings.secured:
            await server._prepare_certificates()
        return server

    async def _prepare_certificates(self) -> None:
        settings = self.settings
        certs_dir = settings.certificates_dir
        datadir.ensure_directory(certs_dir)
        certs_dir.chmod(0o700)
        self.authority = datadir.load_or_create_authority(certs_dir)
        if settings.certificate_path is not None:
            self.server_certificate = datadir.supplied_server_certificate(
                certs_dir, settings.certificate_path, settings.certificate_password
            )
        else:
            self.server_certificate = datadir.generated_server_certificate(certs_dir, self.authority)
        server_infos = [self.server_certificate.info, *self._previous_server_certificates()]
        self.identifier.set_server_certificates(server_infos)
        well_known, anchors_from_files = self._well_known_admins()
        self.identifier.set_well_known_admins(well_known)
        anchors = [self.authority.certificate_der()]
        anchors += [i.der for i in server_infos]
        anchors += [i.der for i in self.server_certificate.chain]
        anchors += anchors_from_files
        for path in settings.trusted_issuers:
            anchors += [i.der for i in load_certificates(path.read_bytes())]
        anchors += [d.certificate_der for d in self.registry.all() if d.source != "generated"]
        anchors += await self._stored_trust_anchors()
        self.tls = ServerTLS(self.server_certificate.cert_path, self.server_certificate.key_path, anchors,
                             self.server_certificate.key_password)
        self.initial_client = datadir.existing_initial_client(certs_dir)

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
                for info in load_certificates(path.read_bytes()):
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
        registered = {d.certificate_der for d in self.registry.all()}
        extra = [d for d in ders if d not in registered]
        if extra:
            stored = await self.storage.get_setting("tls.trust_anchors") or []
            encoded = [base64.b64encode(d).decode() for d in extra]
            await self.storage.put_setting("tls.trust_anchors", sorted(set(stored) | set(encoded)))

    async def forget_certificate(self, thumbprints: list[str]) -> None:
        """Hook for everything that keeps per-certificate state (2FA sessions, ...) when certificates go away."""
        for hook in self.on_certificates_deleted:
            await hook(thumbprints)

    @property
    def process_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            self._pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("forkserver"))
        return self._pool

    async def start(self) -> str:
        from roost.http.app import build_app

        app = build_app(self)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host = self.settings.host
        if host == "localhost":
            host = "127.0.0.1"  # one socket: "localhost" may resolve to two addresses on two ports
        site = web.TCPSite(
            self._runner, host, self.settings.port,
            ssl_context=self.tls.listening_context if self.tls else None, backlog=1024,
        )
        try:
            await site.start()
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}."
            ) from exc
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = self.settings.url_for_port(self.port)
        await self.ensure_initial_client(self.url)
        self.registry.start_flusher()
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.registry.stop()
        await self.storage.close()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def now(self) -> dt.datetime:
        return clock.now()

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
