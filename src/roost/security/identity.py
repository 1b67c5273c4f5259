"""Peer certificate -> Identity: who is calling, and in which state (RavenDB's AuthenticateConnectionCertificate).

Runs on every request, not once per connection: that is what makes a deletion, a disabling or an expiry bite
on an open keep-alive connection and on a resumed TLS session (resumption skips certificate verification).
The cost is one SHA-1 of ~500 bytes and a dict lookup.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from roost.pki.inspect import CertificateInfo, describe_der, thumbprint_of
from roost.security.registry import CertificateDefinition, Registry
from roost.types import Access, Clearance, Thumbprint

# The names RavenDB gives the certificates that are trusted without a registration.
SERVER_CERTIFICATE_NAME = "Server Certificate"
WELL_KNOWN_NAME = "Well Known Admin Certificate"


class AuthStatus(enum.StrEnum):
    """RavenDB's AuthenticationStatus values (reference section 1.2), plus Disabled."""

    NONE = "None"  # unsecured server: nobody is asked for a certificate
    NO_CERTIFICATE = "NoCertificateProvided"
    EXPIRED = "Expired"
    NOT_YET_VALID = "NotYetValid"
    UNKNOWN = "UnfamiliarCertificate"
    UNFAMILIAR_ISSUER = "UnfamiliarIssuer"
    DISABLED = "Disabled"
    CLUSTER_ADMIN = "ClusterAdmin"
    OPERATOR = "Operator"
    ALLOWED = "Allowed"
    TWO_FACTOR_REQUIRED = "TwoFactorAuthNotProvided"
    TWO_FACTOR_INVALID_LIMIT = "TwoFactorAuthFromInvalidLimit"

    @property
    def authenticated(self) -> bool:
        return self in (AuthStatus.CLUSTER_ADMIN, AuthStatus.OPERATOR, AuthStatus.ALLOWED)


@dataclass(frozen=True, slots=True)
class Identity:
    status: AuthStatus
    thumbprint: Thumbprint | None = None
    display_name: str = ""
    clearance: Clearance | None = None
    definition: CertificateDefinition | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    synthetic_name: str | None = None  # "Server Certificate" / "Well Known Admin Certificate"

    def access_to(self, database: str) -> Access | None:
        if self.status in (AuthStatus.CLUSTER_ADMIN, AuthStatus.OPERATOR, AuthStatus.NONE):
            return Access.ADMIN
        if self.status is AuthStatus.ALLOWED and self.definition is not None:
            return self.definition.access_to(database)
        return None

    @property
    def effective_clearance(self) -> Clearance | None:
        if self.status is AuthStatus.NONE:
            return Clearance.CLUSTER_ADMIN
        return self.clearance if self.status.authenticated else None


UNSECURED = Identity(AuthStatus.NONE, clearance=Clearance.CLUSTER_ADMIN, display_name="unsecured client")
NO_CERTIFICATE = Identity(AuthStatus.NO_CERTIFICATE)


thumbprint_of_der = thumbprint_of  # RavenDB's thumbprint: SHA-1 of the DER, upper-case hex (one definition, pki)


class Identifier:
    """Turns the DER of a peer certificate into an Identity. Holds no per-connection state."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._server: dict[str, CertificateInfo] = {}  # every server certificate this server has used
        self._nodes: dict[str, CertificateInfo] = {}  # the other nodes' server certificates (roost.cluster.nodes)
        self._well_known: set[str] = set()
        self._parsed: dict[str, CertificateInfo] = {}  # validity of well-known certificates seen so far
        self._valid: dict[str, Identity] = {}  # thumbprint -> Identity of a valid, enabled definition

    def set_server_certificates(self, infos: list[CertificateInfo]) -> None:
        self._server = {i.thumbprint: i for i in infos}

    def set_cluster_nodes(self, infos: list[CertificateInfo]) -> None:
        """The server certificates of the cluster's registered nodes: ClusterNode here too, until removed."""
        self._nodes = {i.thumbprint: i for i in infos}

    def add_cluster_node(self, info: CertificateInfo) -> None:
        self._nodes = {**self._nodes, info.thumbprint: info}

    def forget_cluster_node(self, thumbprint: str) -> None:
        """A node was removed (``roost cluster remove-node``): its certificate is refused from the next request."""
        self._nodes = {t: i for t, i in self._nodes.items() if t != thumbprint}

    @property
    def server_thumbprints(self) -> set[str]:
        """This server's certificates and the other nodes': none of them can be registered over by the API."""
        return set(self._server) | set(self._nodes)

    def set_well_known_admins(self, thumbprints: set[str]) -> None:
        self._well_known = {t.upper() for t in thumbprints}

    @property
    def well_known_admins(self) -> set[str]:
        return set(self._well_known)

    def seen_well_known(self, thumbprint: str) -> CertificateInfo | None:
        """The certificate of a well-known admin that has connected since the start, if it has."""
        return self._parsed.get(thumbprint)

    def identify(self, der: bytes | None, now: dt.datetime, thumbprint: Thumbprint | None = None) -> Identity:
        """``thumbprint`` may be passed when the caller already knows it (cached per TLS connection)."""
        if not der:
            return NO_CERTIFICATE
        thumbprint = thumbprint or thumbprint_of_der(der)
        # The setting wins over any registration: an entry under a well-known thumbprint (refused by the API, but
        # perhaps stored before that) never demotes or locks out the admin.
        if thumbprint in self._well_known:
            info = self._parsed.get(thumbprint) or describe_der(der)
            self._parsed[thumbprint] = info
            return self._synthetic(info, WELL_KNOWN_NAME, now)
        definition = self.registry.get(thumbprint)
        if definition is not None:
            return self._registered(definition, now)
        server = self._server.get(thumbprint) or self._nodes.get(thumbprint)
        if server is not None:
            return self._synthetic(server, SERVER_CERTIFICATE_NAME, now)
        info = describe_der(der)
        name = f"{info.subject} (Thumbprint: {thumbprint})"
        validity = _validity(info.not_before, info.not_after, now)
        if validity is not None:
            return Identity(validity, thumbprint, name, not_before=info.not_before, not_after=info.not_after)
        known_key = bool(self.registry.by_pinning_hash(info.pinning_hash))
        status = AuthStatus.UNFAMILIAR_ISSUER if known_key else AuthStatus.UNKNOWN
        return Identity(status, thumbprint, name, not_before=info.not_before, not_after=info.not_after)

    def _registered(self, definition: CertificateDefinition, now: dt.datetime) -> Identity:
        validity = _validity(definition.not_before, definition.not_after, now)
        if validity is None and definition.disabled:
            validity = AuthStatus.DISABLED
        if validity is not None:
            return Identity(validity, definition.thumbprint, definition.display_name,
                            not_before=definition.not_before, not_after=definition.not_after, definition=definition)
        # Definitions are immutable and replaced on every change, so the Identity of a valid one can be reused
        # until the definition object changes; validity and "disabled" were checked above, on this request.
        cached = self._valid.get(definition.thumbprint)
        if cached is not None and cached.definition is definition:
            return cached
        clearance = definition.clearance
        if clearance.is_cluster_admin:
            status = AuthStatus.CLUSTER_ADMIN
        elif clearance is Clearance.OPERATOR:
            status = AuthStatus.OPERATOR
        else:
            status = AuthStatus.ALLOWED
        identity = Identity(status, definition.thumbprint, definition.display_name, clearance, definition,
                            definition.not_before, definition.not_after)
        if len(self._valid) > 100_000:  # bounded: entries of deleted certificates go with the next clear
            self._valid.clear()
        self._valid[definition.thumbprint] = identity
        return identity

    def _synthetic(self, info: CertificateInfo, label: str, now: dt.datetime) -> Identity:
        name = f"{info.subject} (Thumbprint: {info.thumbprint})"
        validity = _validity(info.not_before, info.not_after, now)
        if validity is not None:
            return Identity(validity, info.thumbprint, name, not_before=info.not_before, not_after=info.not_after)
        clearance = Clearance.CLUSTER_NODE if label == SERVER_CERTIFICATE_NAME else Clearance.CLUSTER_ADMIN
        return Identity(AuthStatus.CLUSTER_ADMIN, info.thumbprint, name, clearance, None, info.not_before,
                        info.not_after, synthetic_name=label)


def _validity(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime) -> AuthStatus | None:
    if not_after < now:
        return AuthStatus.EXPIRED
    if not_before > now:
        return AuthStatus.NOT_YET_VALID
    return None
