"""The JSON shapes of the certificate API that are not a stored definition's own (``CertificateDefinition.to_wire``):
the synthetic entries of the server certificate and of well-known admins, Roost's additions to a listed entry,
and what the audit log records about certificates (reference ravendb-certificates.md, sections 1.1 and 3)."""

from __future__ import annotations

import base64
from typing import Any

from roost import clock
from roost.pki.datadir import ServerCertificate
from roost.security.identity import SERVER_CERTIFICATE_NAME, Identity
from roost.security.registry import CertificateDefinition, Registry
from roost.types import Clearance


def same_key_thumbprints(registry: Registry, definition: CertificateDefinition) -> list[str]:
    """Registered certificates outside ``definition``'s collection that have its public key."""
    own = {definition.thumbprint, *definition.collection_secondaries}
    return sorted(d.thumbprint for d in registry.by_pinning_hash(definition.pinning_hash) if d.thumbprint not in own)


def listed_entry(registry: Registry, definition: CertificateDefinition, *, metadata_only: bool) -> dict[str, Any]:
    wire = definition.to_wire(metadata_only=metadata_only, last_used=registry.last_used(definition.thumbprint))
    # Roost's addition: the certificates an edit, a disabling or a delete of this one also applies to.
    wire["SameKeyCertificates"] = same_key_thumbprints(registry, definition)
    if definition.collection_secondaries:
        # Roost's addition: who the other members of a .pfx collection are (RavenDB lists thumbprints only).
        members = []
        for thumbprint in definition.collection_secondaries:
            member = registry.get(thumbprint)
            members.append({"Thumbprint": thumbprint, "Subject": member.subject if member else None,
                            "NotAfter": clock.wire_date(member.not_after) if member else None})
        wire["CollectionMembers"] = members
    return wire


def whoami_entry(registry: Registry, caller: Identity) -> dict[str, Any] | None:
    if caller.definition is not None:
        return caller.definition.to_wire(last_used=registry.last_used(caller.definition.thumbprint))
    if caller.synthetic_name is not None and caller.thumbprint:
        entry: dict[str, Any] = {
            "Name": caller.synthetic_name,
            "Thumbprint": caller.thumbprint,
            "SecurityClearance": (caller.clearance or Clearance.CLUSTER_ADMIN).value,
            "Permissions": {},
            "CollectionPrimaryKey": "",
            "CollectionSecondaryKeys": [],
            "HasTwoFactor": False,
            "Disabled": False,
        }
        if caller.not_after and caller.not_before:  # the server's own certificate, a well-known admin's
            entry["NotAfter"] = clock.wire_date(caller.not_after)
            entry["NotBefore"] = clock.wire_date(caller.not_before)
        return entry
    return None


def server_entry(certificate: ServerCertificate | None, *, metadata_only: bool) -> dict[str, Any] | None:
    """The synthetic "Server Certificate" entry at the top of the list (RavenDB lists it the same way)."""
    if certificate is None:
        return None
    info = certificate.info
    entry: dict[str, Any] = {
        "Name": SERVER_CERTIFICATE_NAME,
        "Thumbprint": info.thumbprint,
        "SecurityClearance": Clearance.CLUSTER_NODE.value,
        "Permissions": {},
        "NotBefore": clock.wire_date(info.not_before),
        "NotAfter": clock.wire_date(info.not_after),
        "PublicKeyPinningHash": info.pinning_hash,
        "CollectionPrimaryKey": "",
        "CollectionSecondaryKeys": [],
        "Disabled": False,
        "HasTwoFactor": False,
        "LastUsedDate": None,
        "Subject": info.subject,
        "Generated": certificate.generated,
    }
    if not metadata_only:
        entry["Certificate"] = base64.b64encode(info.der).decode()
    return entry


def audited(definitions: list[CertificateDefinition]) -> list[dict[str, Any]]:
    """Which certificates, with which clearance and permissions: never a key or passphrase."""
    return [{"Name": d.name, "Thumbprint": d.thumbprint, "Clearance": d.clearance.value,
             "Permissions": {db: a.value for db, a in d.permissions.items()}} for d in definitions]
