"""Who passes the TLS handshake, and who is trusted without a registration.

stdlib ``ssl`` only hands the application a client certificate that verifies against some anchor (see the
anchors paragraph of ARCHITECTURE.md), so Roost's CA, the server certificates, the chains of uploads, the files
of ``Security.TrustedIssuers`` and ``Security.WellKnownCertificates.Admin`` and every uploaded leaf are anchors.
The server certificates (current and retired) are ClusterNode and the well-known admins ClusterAdmin without a
registration: both are told to the ``Identifier`` here.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from roost import clock
from roost.errors import ConfigurationError, RoostError
from roost.pki.authority import CertificateAuthority
from roost.pki.datadir import ServerCertificate
from roost.pki.inspect import CertificateInfo, describe_der, load_certificates, thumbprint_of
from roost.security.identity import Identifier
from roost.security.registry import CertificateDefinition, Registry
from roost.settings import Settings
from roost.storage.base import Storage
from roost.tls import ServerTLS

ANCHORS_KEY = "tls.trust_anchors"


def certificates_from_file(path: Path, setting: str) -> list[CertificateInfo]:
    try:
        return load_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"{setting}: cannot read '{path}': {exc.strerror}.") from exc
    except RoostError as exc:
        raise ConfigurationError(f"{setting}: '{path}' holds no certificate Roost can read ({exc.message}).") from exc


def well_known_admins(entries: Iterable[str]) -> tuple[set[str], list[bytes]]:
    """Security.WellKnownCertificates.Admin: thumbprints, and the certificates of the entries given as files."""
    thumbprints: set[str] = set()
    anchors: list[bytes] = []
    for entry in entries:
        path = Path(entry)
        if path.is_file():
            for info in certificates_from_file(path, "Security.WellKnownCertificates.Admin"):
                thumbprints.add(info.thumbprint)
                anchors.append(info.der)
        else:
            thumbprints.add(entry.upper())
    return thumbprints, anchors


def retired_server_certificates(certs_dir: Path) -> list[CertificateInfo]:
    """Server certificates this data directory used before (replaced or renewed): still ClusterNode."""
    retired = certs_dir / "retired"
    infos: list[CertificateInfo] = []
    if retired.is_dir():
        for path in sorted(retired.glob("*.crt")):
            infos.append(load_certificates(path.read_bytes())[0])
    return infos


class TrustAnchors:
    """The anchors of the running TLS layer, and the chain certificates kept in storage for the next start."""

    def __init__(self, tls: ServerTLS, storage: Storage, registry: Registry) -> None:
        self.tls = tls
        self._storage = storage
        self._registry = registry

    async def stored(self) -> list[bytes]:
        return [base64.b64decode(a) for a in await self._storage.get_setting(ANCHORS_KEY) or []]

    async def add(self, ders: list[bytes]) -> None:
        """Make certificates pass the TLS handshake from now on.

        Chain certificates that came inside an uploaded .pfx are kept in storage, so they are anchors again after a
        restart; registered leaves are re-anchored from the registry.
        """
        self.tls.add_anchors(ders)
        # O(1) per certificate: this runs on every upload, whatever the size of the registry.
        extra = [d for d in ders if self._registry.get(thumbprint_of(d)) is None]
        if extra:
            stored = await self._storage.get_setting(ANCHORS_KEY) or []
            encoded = [base64.b64encode(d).decode() for d in extra]
            await self._storage.put_setting(ANCHORS_KEY, sorted(set(stored) | set(encoded)))

    async def follow_external(self, definitions: list[CertificateDefinition]) -> None:
        """Another node registered these: anchor uploaded ones (and stored chain issuers) in TLS here too."""
        anchors = [d.certificate_der for d in definitions if d.source != "generated"]
        self.tls.add_anchors(anchors + await self.stored())

    def unreachable_well_known_admins(self, well_known: set[str]) -> list[str]:
        """Well-known admin thumbprints whose certificate Roost has never seen cannot be checked for a trusted
        issuer; the handshake refuses them unless an anchor covers them (ARCHITECTURE.md, TLS)."""
        seen = {thumbprint_of(der) for der in self.tls.anchors}
        seen |= {d.thumbprint for d in self._registry.all()}
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


def _well_known_entry(thumbprint: str, info: CertificateInfo | None, now: dt.datetime) -> dict[str, Any]:
    if info is None:
        return {"Thumbprint": thumbprint,
                "Unverified": "Known by its thumbprint only (it has not connected since the server started): it "
                              "connects only if it was issued by Roost's CA or by an issuer in "
                              "Security.TrustedIssuers. Configure the certificate file instead to be sure."}
    entry: dict[str, Any] = {"Thumbprint": thumbprint, "Subject": info.subject,
                             "NotBefore": clock.wire_date(info.not_before), "NotAfter": clock.wire_date(info.not_after)}
    if info.not_after < now:
        entry["Unusable"] = f"it expired on {info.not_after:%Y-%m-%d}."
    elif info.not_before > now:
        entry["Unusable"] = f"it is not valid before {info.not_before:%Y-%m-%d}."
    elif not info.client_auth:
        entry["Unusable"] = "its Extended Key Usage does not allow client authentication."
    return entry


def well_known_details(identifier: Identifier, anchors: Iterable[bytes], now: dt.datetime) -> list[dict[str, Any]]:
    """What Roost knows of each well-known admin (WellKnownAdminCertDetails beside RavenDB's list of thumbprints):
    subject and validity when it has the certificate (a configured file, or a connection since the start), and why
    an entry can never pass TLS or cannot be verified."""
    well_known = sorted(identifier.well_known_admins)
    if not well_known:
        return []
    unseen = {t for t in well_known if identifier.seen_well_known(t) is None}
    files: dict[str, bytes] = {thumbprint_of(der): der for der in anchors} if unseen else {}
    return [_well_known_entry(t, identifier.seen_well_known(t) or (describe_der(files[t]) if t in files else None),
                              now) for t in well_known]


async def prepare(settings: Settings, storage: Storage, registry: Registry, identifier: Identifier,
                  authority: CertificateAuthority, server_certificate: ServerCertificate,
                  warnings: list[str]) -> TrustAnchors:
    """Tell the identifier who is trusted without a registration and build the TLS layer with every anchor."""
    server_infos = [server_certificate.info, *retired_server_certificates(settings.certificates_dir)]
    identifier.set_server_certificates(server_infos)
    well_known, anchors_from_files = well_known_admins(settings.well_known_admins)
    identifier.set_well_known_admins(well_known)
    anchors = [authority.certificate_der()]
    anchors += [i.der for i in server_infos]
    anchors += [i.der for i in server_certificate.chain]
    anchors += anchors_from_files
    for path in settings.trusted_issuers:
        anchors += [i.der for i in certificates_from_file(path, "Security.TrustedIssuers")]
    anchors += [d.certificate_der for d in registry.all() if d.source != "generated"]
    anchors += [base64.b64decode(a) for a in await storage.get_setting(ANCHORS_KEY) or []]
    tls = ServerTLS(server_certificate.cert_path, server_certificate.key_path, anchors,
                    server_certificate.key_password)
    trust = TrustAnchors(tls, storage, registry)
    warnings += trust.unreachable_well_known_admins(well_known)
    registry.on_external_change.append(trust.follow_external)
    return trust
