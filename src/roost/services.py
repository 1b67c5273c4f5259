"""Services: every part the HTTP app uses, built once by ``roost.server`` and handed over as one frozen value.

The HTTP app gets it through one AppKey (``roost.http.middleware.SERVICES``); nothing reaches back into the server
that built it (tests/test_contracts.py holds that: ``roost.http``, ``roost.security``, ``roost.backups`` and
``roost.documents`` never import ``roost.server``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from roost.backups.schedule import Schedules
from roost.backups.service import BackupService
from roost.cluster.nodes import ClusterNodes
from roost.cluster.replacement import CertificateReplacement
from roost.documents.operations import Operations
from roost.documents.store import DocumentStore
from roost.pki.authority import CertificateAuthority
from roost.pki.datadir import CA_CERTIFICATE_FILE, ServerCertificate
from roost.security.allowlist import AllowedAddresses, AllowList
from roost.security.audit import AuditLog, Event
from roost.security.certificates import CertificateService
from roost.security.identity import Identifier, Identity
from roost.security.registry import Registry
from roost.security.server_certificate import ServerCertificates
from roost.security.trust import TrustAnchors
from roost.security.twofactor import TwoFactor
from roost.settings import Settings
from roost.storage.base import DatabaseRow, Storage
from roost.tls import ServerTLS


class Databases:
    """Creating and deleting databases: the document store and the certificate registry together, audited.

    Above both packages (``documents/`` and ``security/`` do not import each other): deleting a database removes it
    from every certificate's permissions in the same storage transaction (RavenDB PR #13351).
    """

    def __init__(self, documents: DocumentStore, registry: Registry, audit: AuditLog) -> None:
        self._documents = documents
        self._registry = registry
        self._audit = audit

    async def create(self, name: str, *, actor: Identity | None) -> DatabaseRow:
        row = await self._documents.create_database(name)
        self._audit.record(Event.DATABASE_CREATED, actor=actor, Database=row.name)
        return row

    async def delete(self, name: str, *, actor: Identity | None) -> bool:
        updates = self._registry.without_database(name)
        deleted = await self._documents.delete_database(name, [d.to_storage() for d in updates])
        if deleted:
            self._registry.apply_external(updates)
            self._audit.record(Event.DATABASE_DELETED, actor=actor, Database=name)
        return deleted


@dataclass
class Address:
    """Where the server listens: known once it does (``--port 0`` picks a free port)."""

    url: str = ""
    port: int = 0


@dataclass(frozen=True)
class Services:
    settings: Settings
    storage: Storage
    registry: Registry
    identifier: Identifier
    documents: DocumentStore
    databases: Databases
    audit: AuditLog  # services.audit.record(event, actor=..., **fields): see security/audit.py
    certificates: CertificateService
    server_certificates: ServerCertificates
    two_factor: TwoFactor
    allowed_addresses: AllowedAddresses
    backups: BackupService
    backup_schedules: Schedules
    trust_anchors: TrustAnchors | None  # None on an unsecured server
    cluster: ClusterNodes  # this node's tag and entry, and every node of the cluster (roost.cluster.nodes)
    replacement: CertificateReplacement  # replace-cluster-cert across the nodes (roost.cluster.replacement)
    address: Address = field(default_factory=Address)
    operations: Operations = field(default_factory=Operations)  # running bulk inserts, per process

    @property
    def allowlist(self) -> AllowList:
        return self.allowed_addresses.allowlist

    @property
    def tls(self) -> ServerTLS | None:
        return self.trust_anchors.tls if self.trust_anchors is not None else None

    @property
    def authority(self) -> CertificateAuthority | None:
        return self.server_certificates.authority

    @property
    def server_certificate(self) -> ServerCertificate | None:
        return self.server_certificates.current

    @property
    def url(self) -> str:
        return self.address.url

    @property
    def port(self) -> int:
        return self.address.port

    @property
    def ca_path(self) -> Path | None:
        return self.settings.certificates_dir / CA_CERTIFICATE_FILE if self.authority else None
