"""Implicit trust by public-key pinning hash (reference ravendb-certificates.md, section 9), and the deleted
thumbprints that it never brings back.

An unregistered certificate with a registered certificate's public key is registered automatically, with that
certificate's name, clearance, permissions and 2FA key, when its issuer is known. A deletion wins: a thumbprint an
administrator deleted or purged is remembered in storage (so on every node, and across restarts) and is never
registered implicitly again; an explicit upload may register it, and then it is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from roost import clock
from roost.pki.inspect import describe_der, find_issuer
from roost.security.audit import AuditLog, Event
from roost.security.identity import Identifier, Identity
from roost.security.registry import CertificateDefinition, Registry
from roost.security.wire import audited
from roost.storage.base import Storage

log = logging.getLogger("roost.certificates")  # operators' log; the audit trail is AuditLog

DELETED_KEY = "security.deleted_thumbprints"


class DeletedThumbprints:
    """The thumbprints an administrator deleted, in shared storage."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def all(self) -> set[str]:
        return set(await self._storage.get_setting(DELETED_KEY) or [])

    async def remember(self, thumbprints: Iterable[str]) -> None:
        wanted = set(thumbprints)
        deleted = await self.all()
        if not deleted.issuperset(wanted):
            await self._storage.put_setting(DELETED_KEY, sorted(deleted | wanted))

    async def forget(self, thumbprints: Iterable[str]) -> None:
        wanted = set(thumbprints)
        deleted = await self.all()
        if not deleted.isdisjoint(wanted):
            await self._storage.put_setting(DELETED_KEY, sorted(deleted - wanted))


class ImplicitTrust:
    def __init__(self, registry: Registry, identifier: Identifier, deleted: DeletedThumbprints, audit_log: AuditLog,
                 lock: asyncio.Lock, *, anchors: Callable[[], Sequence[bytes]] | None,
                 well_known_issuer_hashes: Iterable[str]) -> None:
        self._registry = registry
        self._identifier = identifier
        self._deleted = deleted
        self._audit = audit_log
        self._lock = lock  # the certificate service's: registry writes never interleave
        self._anchors = anchors  # the TLS layer's anchors; None on an unsecured server
        self._hashes = set(well_known_issuer_hashes)
        # (thumbprint, registry generation) pairs refused: not re-examined until the registry changes.
        self._refused: set[tuple[str, int]] = set()

    def _refuse(self, key: tuple[str, int]) -> None:
        if len(self._refused) > 10_000:
            self._refused.clear()
        self._refused.add(key)

    async def admit(self, der: bytes, identity: Identity) -> Identity:
        """An unregistered certificate with a registered certificate's key: register it if its issuer is known.

        Runs only for status UnfamiliarIssuer (never on the path of a registered certificate). The issuer is
        known when its pinning hash is in Security.WellKnownIssuerHashes.Admin, or when it has the same pinning
        hash as the issuer of the registered certificate (the same CA, perhaps with a renewed certificate).
        """
        thumbprint = identity.thumbprint
        if thumbprint is None or self._anchors is None:
            return identity
        refused_key = (thumbprint, self._registry.generation)
        if refused_key in self._refused:
            return identity
        info = describe_der(der)
        anchors = [*self._anchors()]
        issuer = find_issuer(der, anchors)
        known = [d for d in self._registry.by_pinning_hash(info.pinning_hash) if not d.disabled]
        match: CertificateDefinition | None = None
        for candidate in sorted(known, key=lambda d: d.not_after, reverse=True):
            if issuer is None:
                break
            if issuer.pinning_hash in self._hashes:
                match = candidate
                break
            previous_issuer = find_issuer(candidate.certificate_der, anchors)
            if previous_issuer is not None and previous_issuer.pinning_hash == issuer.pinning_hash:
                match = candidate
                break
        if match is None:
            self._refuse(refused_key)
            log.warning(
                "Refused %s: it has the public key of a registered certificate but its issuer %s is unknown. To "
                "trust it, add %s to Security.WellKnownIssuerHashes.Admin.", identity.display_name,
                issuer.subject if issuer else "(not found)", issuer.pinning_hash if issuer else "its issuer's hash",
            )
            return identity
        if thumbprint in await self._deleted.all():
            self._refuse(refused_key)
            log.warning(
                "Refused %s: it has the public key of a registered certificate, but an administrator deleted it. "
                "Upload it to register it again.", identity.display_name,
            )
            return identity
        match = self._registry.primary_of(match)
        definition = CertificateDefinition.of(info, match.name, match.clearance, dict(match.permissions),
                                              two_factor_key=match.two_factor_key, source="implicit")
        async with self._lock:
            if self._registry.get(thumbprint) is None:
                await self._registry.put([definition])
        log.warning(
            "Registered %s automatically with the name, clearance and permissions of %s ('%s'): same public key "
            "pinning hash, known issuer %s.", identity.display_name, match.thumbprint, match.name,
            issuer.subject if issuer else "",
        )
        self._audit.record(Event.CERTIFICATE_IMPLICITLY_TRUSTED, actor=identity, Certificates=audited([definition]),
                           SameKeyAs=match.thumbprint, Issuer=issuer.subject if issuer else "")
        return self._identifier.identify(der, clock.now())
