"""The certificate this server presents: chosen at start-up, replaced (replace-cluster-cert), renewed (refresh,
and by itself within 30 days of expiry), always without a restart (reference ravendb-certificates.md, section 7).

Every certificate the server presented stays trusted as ClusterNode, registered under its own thumbprint, until an
administrator deletes "Old Server Certificate - can delete"; the one it presents now is out of the certificate
API's reach (security/rules.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from roost import clock
from roost.errors import BadRequestError, ConfigurationError
from roost.pki import datadir
from roost.pki.authority import CertificateAuthority
from roost.pki.inspect import CertificateInfo, load_certificates
from roost.security.audit import AuditLog, Event
from roost.security.identity import SERVER_CERTIFICATE_NAME, Identifier, Identity
from roost.security.registry import CertificateDefinition, Registry
from roost.security.requests import ReplaceRequest
from roost.security.trust import retired_server_certificates
from roost.settings import Settings
from roost.tls import ServerTLS
from roost.types import Clearance, Thumbprint

log = logging.getLogger("roost")
log = logging.getLogger("roost.certificates")  # operators' log; the audit trail is AuditLog

OLD_SERVER_CERTIFICATE_NAME = "Old Server Certificate - can delete"


def renewal_window(settings: Settings) -> dt.timedelta:
    return dt.timedelta(days=settings.server_certificate_renew_days)


def load_authority(settings: Settings) -> CertificateAuthority:
    certs_dir = settings.certificates_dir
    datadir.ensure_directory(certs_dir)
    certs_dir.chmod(0o700)
    if settings.ca_dir is not None:
        # A cluster's shared CA (docs/storage.md): its key stays in files, never in the shared database.
        datadir.ensure_directory(settings.ca_dir)
        settings.ca_dir.chmod(0o700)
        authority = datadir.load_or_create_authority(settings.ca_dir)
        datadir.publish_authority_certificate(certs_dir, authority)
        return authority
    return datadir.load_or_create_authority(certs_dir)


def choose(settings: Settings, authority: CertificateAuthority,
           warnings: list[str]) -> tuple[datadir.ServerCertificate, str]:
    """The certificate to present at start-up, and the thumbprint of the configured one (the settings' file, or
    Roost's generated certificate), which a replacement is tied to."""
    certs_dir = settings.certificates_dir
    if settings.certificate_path is not None or settings.certificate_exec is not None:
        configured = _supplied(settings, certs_dir)
    else:
        configured = datadir.generated_server_certificate(certs_dir, authority)
        if configured.info.not_after - clock.now() < renewal_window(settings):
            # RavenDB's most common lock-out is an expired server certificate; Roost's own one never expires.
            old = configured.info
            configured = datadir.generated_server_certificate(certs_dir, authority, renew=True)
            warnings.append(
                f"The generated server certificate {old.thumbprint} expires on {old.not_after:%Y-%m-%d}; "
                f"renewed it: now {configured.info.thumbprint}. Servers that trusted the old one through its "
                "export need the new export (roost certs export)."
            )
    return _installed_replacement(settings, configured, warnings) or configured, configured.info.thumbprint


def _supplied(settings: Settings, certs_dir: Path) -> datadir.ServerCertificate:
    """The certificate the settings supply (a file, a tls.crt/tls.key directory, or Load.Exec), checked; when it
    does not pass, the one screen of text that says how to recover (an expired certificate must never leave
    everyone wondering)."""
    from roost.security.certificate_source import load_exec

    source = (f"Security.Certificate.Path={settings.certificate_path}" if settings.certificate_path is not None
              else f"Security.Certificate.Load.Exec={settings.certificate_exec}")
    try:
        if settings.certificate_exec is not None:
            return load_exec(settings, certs_dir)
        assert settings.certificate_path is not None
        return datadir.supplied_server_certificate(certs_dir, settings.certificate_path, settings.certificate_password)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"Roost cannot serve with the server certificate that {source} supplies:\n  {exc.message}\n"
            "To recover, any one of:\n"
            "  1. Put a valid certificate there (a .pfx with its key, or tls.crt and tls.key), issued for this "
            "server's host names, and start again; clients that trust its issuer connect as before.\n"
            "  2. Start without that setting: Roost then serves its own generated certificate (clients must trust "
            f"Roost's CA, {settings.certificates_dir / datadir.CA_CERTIFICATE_FILE}).\n"
            "  3. If the certificate expired, renew it with its issuer (for Let's Encrypt or cert-manager: run the "
            "renewal, then start Roost); Roost re-reads the file while it runs, so no restart is needed after that.\n"
            "Client certificates and their permissions are untouched by this; nothing was changed."
        ) from None


def _installed_replacement(settings: Settings, configured: datadir.ServerCertificate,
                           warnings: list[str]) -> datadir.ServerCertificate | None:
    """The certificate replace-cluster-cert installed, unless the settings changed since or it expired."""
    replacement = datadir.installed_replacement(settings.certificates_dir)
    if replacement is None:
        return None
    info = replacement.certificate.info
    if replacement.configured_thumbprint != configured.info.thumbprint:
        warnings.append(
            f"The server certificate {info.thumbprint} installed with replace-cluster-cert is not used: the "
            f"configured certificate changed since (now {configured.info.thumbprint}), and the settings win."
        )
        return None
    if info.not_after < clock.now():
        warnings.append(
            f"The server certificate {info.thumbprint} installed with replace-cluster-cert expired on "
            f"{info.not_after:%Y-%m-%d}; serving the configured certificate {configured.info.thumbprint}. "
            "Replace it again (roost server-cert replace)."
        )
        return None
    return replacement.certificate


class ServerCertificates:
    """The one home of the server certificate: what is presented now, and every way of changing it."""

    def __init__(self, settings: Settings, registry: Registry, identifier: Identifier, audit_log: AuditLog,
                 lock: asyncio.Lock, *, authority: CertificateAuthority | None = None,
                 current: datadir.ServerCertificate | None = None, configured_thumbprint: str = "",
                 tls: ServerTLS | None = None) -> None:
        self._settings = settings
        self._registry = registry
        self._identifier = identifier
        self._audit = audit_log
        self._lock = lock  # the certificate service's: registry writes never interleave
        self.authority = authority
        self.current = current
        self.tls = tls
        # The certificate the settings name, or Roost's generated one; a replacement is tied to it.
        self._configured_thumbprint = configured_thumbprint
        # Told of every certificate installed (the cluster's entry of this node: roost.cluster.nodes).
        self.on_installed: list[Callable[[CertificateInfo], Awaitable[None]]] = []

    @property
    def thumbprint(self) -> str | None:
        return self.current.info.thumbprint if self.current else None

    async def install(self, new: datadir.ServerCertificate) -> datadir.ServerCertificate:
        """Serve ``new`` from now on, without a restart (replace-cluster-cert and refresh).

        Open connections keep the certificate they negotiated; new ones get ``new``. Both certificates stay
        trusted as ClusterNode, registered under their own thumbprints (RavenDB registers both under the new
        one, overwriting the old entry: reference section 7), so that nodes and clients still presenting the old
        one keep working until an administrator deletes "Old Server Certificate - can delete".
        """
        assert self.tls is not None and self.current is not None
        old = self.current
        self.tls.replace_certificate(new.cert_path, new.key_path, new.key_password)
        self.tls.add_anchors([i.der for i in new.chain])
        entries = []
        for info, name in ((old.info, OLD_SERVER_CERTIFICATE_NAME), (new.info, SERVER_CERTIFICATE_NAME)):
            entries.append(CertificateDefinition(
                name=name, thumbprint=Thumbprint(info.thumbprint), clearance=Clearance.CLUSTER_NODE,
                permissions={}, not_before=info.not_before, not_after=info.not_after,
                pinning_hash=info.pinning_hash, certificate_der=info.der, subject=info.subject, source="server",
            ))
        await self._registry.put(entries)
        self.current = new
        self._identifier.set_server_certificates(
            [new.info, *retired_server_certificates(self._settings.certificates_dir)])
        log.info("Server certificate replaced: %s -> %s", old.info.thumbprint, new.info.thumbprint)
        for installed in self.on_installed:
            await installed(new.info)
        return old

    def offered(self, body: Any, secret: str) -> tuple[bytes, CertificateInfo]:
        """replace-cluster-cert's body checked (bad input changes nothing) and sealed under ``secret`` for the
        nodes of the cluster to install (roost.cluster.replacement)."""
        request = ReplaceRequest.parse(body)
        if self.current is None or self.tls is None:
            raise BadRequestError("This server runs without TLS; there is no server certificate to replace.")
        offered = load_certificates(request.pfx, request.password)[0]  # its messages name what is wrong
        if offered.thumbprint == self.current.info.thumbprint:
            raise BadRequestError(
                f"The provided certificate ({offered.thumbprint}) is already this server's certificate."
            )
        sealed, _ = datadir.sealed_server_pfx(request.pfx, request.password, secret, now=clock.now())
        return sealed, offered

    async def install_pfx(self, caller: Identity, pfx: bytes, password: str | None) -> tuple[str, str]:
        """Serve the server .pfx ``pfx`` from now on (and after a restart); returns the old and new thumbprints."""
        if self.current is None or self.tls is None:
            raise BadRequestError("This server runs without TLS; there is no server certificate to replace.")
        async with self._lock:
            new = await asyncio.to_thread(datadir.install_replacement, self._settings.certificates_dir,
                                          pfx, password, configured_thumbprint=self._configured_thumbprint,
                                          now=clock.now())
            old = await self.install(new)
        return self._swapped(caller, Event.SERVER_CERTIFICATE_REPLACED, old, new)

    async def refresh(self, caller: Identity) -> tuple[str, str]:
        """refresh: a new certificate for Roost's generated server certificate, from the internal CA, now."""
        current = self.current
        if current is None or self.authority is None:
            raise BadRequestError("This server runs without TLS; there is no server certificate to renew.")
        if not current.generated:
            raise BadRequestError(
                f"The server certificate '{current.info.subject}' ({current.info.thumbprint}) was not generated by "
                "Roost, so Roost cannot renew it. Renew it with its issuer and install it with replace-cluster-cert "
                "(roost server-cert replace)."
            )
        async with self._lock:
            certs_dir = self._settings.certificates_dir
            new = await asyncio.to_thread(datadir.generated_server_certificate, certs_dir, self.authority,
                                          renew=True)
            datadir.forget_replacement(certs_dir)
            self._configured_thumbprint = new.info.thumbprint
            old = await self.install(new)
        return self._swapped(caller, Event.SERVER_CERTIFICATE_RENEWED, old, new)

    async def adopt(self, new: datadir.ServerCertificate, caller: Identity) -> bool:
        """The configured source (roost.security.certificate_source) supplies ``new``: present it from now on, as
        the configured certificate (a replacement installed over the API gives way, as at a start). False when it
        is the one presented already."""
        if self.current is None or self.tls is None or new.info.thumbprint == self.current.info.thumbprint:
            return False
        async with self._lock:
            datadir.forget_replacement(self._settings.certificates_dir)
            self._configured_thumbprint = new.info.thumbprint
            old = await self.install(new)
        self._swapped(caller, Event.SERVER_CERTIFICATE_REPLACED, old, new)
        return True

    def _swapped(self, caller: Identity, event: Event, old: datadir.ServerCertificate,
                 new: datadir.ServerCertificate) -> tuple[str, str]:
        """Log and audit an installed replacement or renewal; (old thumbprint, new thumbprint)."""
        what = "replaced" if event is Event.SERVER_CERTIFICATE_REPLACED else "renewed"
        log.info("Server certificate %s by %s: %s -> %s", what, caller.display_name, old.info.thumbprint,
                 new.info.thumbprint)
        self._audit.record(event, actor=caller, Old=old.info.thumbprint, New=new.info.thumbprint,
                           Subject=new.info.subject)
        return old.info.thumbprint, new.info.thumbprint

    async def renew_if_due(self, caller: Identity) -> bool:
        """Renew Roost's generated certificate once it is within the renewal window (Settings.
        server_certificate_renew_days, default 30) of expiring, as RavenDB's refresh cycle does for Let's Encrypt;
        a certificate Roost did not generate is its owner's to renew."""
        current = self.current
        if current is None or not current.generated:
            return False
        if current.info.not_after - clock.now() >= renewal_window(self._settings):
            return False
        await self.refresh(caller)
        return True
