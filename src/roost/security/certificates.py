"""Certificate lifecycle: generate, upload, list, edit, delete, purge, export. RavenDB's rules (reference 2.1)
with its gaps closed: an Operator never creates, raises to, edits or deletes ClusterAdmin/ClusterNode entries,
purge respects clearance, no passphrase is ever stored, nobody deletes the certificate they are connected with.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import unicodedata
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from roost import clock
from roost.documents.names import database_name
from roost.errors import BadRequestError, NotFoundError
from roost.pki import datadir, packages
from roost.pki.authority import KEY_TYPES, KeyType
from roost.pki.inspect import (
    CertificateInfo,
    decode_certificate_field,
    describe_der,
    find_issuer,
    load_certificates,
)
from roost.pki.issuance import PackageRequest, issue_package, needs_worker
from roost.security import rules
from roost.security.identity import SERVER_CERTIFICATE_NAME, Identity
from roost.security.registry import CertificateDefinition, Registry, parse_clearance
from roost.types import Access, Clearance, Thumbprint

if TYPE_CHECKING:
    from roost.server import Server

audit = logging.getLogger("roost.audit")

# The name becomes the certificate's Common Name, which X.509 limits to 64 characters (RFC 5280, ub-common-name).
MAX_NAME = 64
# Thumbprints an administrator deleted: implicit trust never registers them again (an explicit upload may).
DELETED_KEY = "security.deleted_thumbprints"
# Keys RavenDB's clients may send that Roost accepts and ignores (SSO is out of scope).
_IGNORED_KEYS = {"Usage", "SsoIdentifiers", "SsoServerPublicKeyPinningHashes", "AllowAnySsoServer",
                 "CollectionPrimaryKey", "CollectionSecondaryKeys", "PublicKeyPinningHash", "LastUsedDate",
                 "NotBefore", "HasTwoFactor", "TwoFactorAuthenticationValidityPeriod"}


def check_fields(body: Any, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestError(f"The {what} must be a JSON object.")
    unknown = sorted(k for k in body if k not in allowed and k not in _IGNORED_KEYS)
    if unknown:
        raise BadRequestError(
            f"Unknown field(s) in the {what}: {', '.join(unknown)}. Allowed: {', '.join(sorted(allowed))}."
        )
    return body


def optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"{key} must be a string.")
    return value


def validate_name(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRequestError("Name is a required field in the certificate definition")
    if not isinstance(value, str):
        raise BadRequestError("Name must be a string.")
    name = value.strip()
    if len(name) > MAX_NAME:
        raise BadRequestError(f"Name is longer than {MAX_NAME} characters ({len(name)}): use at most {MAX_NAME}.")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise BadRequestError("Name contains control characters.")
    if "/" in name or "\\" in name or name in (".", ".."):
        # The name becomes the file names inside the .zip: no path separators, no traversal.
        raise BadRequestError(f"Name '{name}' contains a path separator ('/' or '\\\\').")
    return name


def validate_permissions(value: Any) -> dict[str, Access]:
    if value is None:
        raise BadRequestError("Permissions is a required field in the certificate definition")
    if not isinstance(value, dict):
        raise BadRequestError("Permissions must be a JSON object of database name -> access level.")
    permissions: dict[str, Access] = {}
    folded: dict[str, str] = {}
    for db, access in value.items():
        if not isinstance(db, str) or not db.strip():
            raise BadRequestError("Error in permissions in the certificate definition, database name is empty")
        try:
            database_name(db)
        except BadRequestError as exc:
            raise BadRequestError(f"Error in permissions in the certificate definition: {exc.message}") from None
        # Lookups fold case (as RavenDB's): two spellings of one database would leave one access level unused.
        if (earlier := folded.setdefault(db.casefold(), db)) != db:
            raise BadRequestError(
                f"Error in permissions in the certificate definition: '{earlier}' and '{db}' name the same database "
                "(names are case-insensitive). Give each database once."
            )
        try:
            permissions[db] = Access(access)
        except ValueError:
            raise BadRequestError(
                f"Error in permissions in the certificate definition, invalid access {access} for database {db}. "
                "Use Admin, ReadWrite or Read."
            ) from None
    return permissions


def validate_not_after(value: Any, months: Any, now: dt.datetime) -> dt.datetime | None:
    if value not in (None, ""):
        if not isinstance(value, str):
            raise BadRequestError("NotAfter must be a date string such as 2030-01-01T00:00:00.0000000Z.")
        try:
            not_after = clock.parse_wire_date(value)
        except ValueError:
            raise BadRequestError(f"NotAfter '{value}' is not a date such as 2030-01-01T00:00:00Z.") from None
        if not_after.date() <= now.date():
            raise BadRequestError("The certificate expiration date must be in the future.")
        return not_after
    if months not in (None, ""):
        if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 1200:
            raise BadRequestError("ExpirationMonths must be a whole number of months between 1 and 1200.")
        return now + dt.timedelta(days=round(months * 30.4375))
    return None


def validate_two_factor_key(value: Any) -> str | None:
    if value in (None, ""):
        return None
    import base64
    import binascii

    if not isinstance(value, str):
        raise BadRequestError("TwoFactorAuthenticationKey must be a base32 string.")
    text = value.strip().replace(" ", "").upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise BadRequestError("TwoFactorAuthenticationKey is not valid base32.") from None
    if len(raw) < 10:
        raise BadRequestError("TwoFactorAuthenticationKey is too short: use at least 80 bits (16 base32 characters).")
    return text.rstrip("=")


@dataclass(frozen=True)
class GenerateRequest:
    name: str
    clearance: Clearance
    permissions: dict[str, Access]
    password: str | None
    not_after: dt.datetime | None
    key_type: KeyType
    two_factor_key: str | None

    @classmethod
    def parse(cls, body: Any, now: dt.datetime) -> GenerateRequest:
        body = check_fields(body, {"Name", "SecurityClearance", "Password", "Permissions", "NotAfter", "KeyType",
                                   "ExpirationMonths", "TwoFactorAuthenticationKey"}, "certificate definition")
        password = optional_string(body, "Password")
        key_type = body.get("KeyType") or "EC-P256"
        if key_type not in KEY_TYPES:
            raise BadRequestError(f"Unknown KeyType '{key_type}'. Use one of: {', '.join(KEY_TYPES)}.")
        return cls(
            name=validate_name(body.get("Name")),
            clearance=parse_clearance(body.get("SecurityClearance")),
            permissions=validate_permissions(body.get("Permissions")),
            password=password or None,
            not_after=validate_not_after(body.get("NotAfter"), body.get("ExpirationMonths"), now),
            key_type=key_type,
            two_factor_key=validate_two_factor_key(body.get("TwoFactorAuthenticationKey")),
        )


class CertificateService:
    def __init__(self, server: Server) -> None:
        self._server = server
        self._lock = asyncio.Lock()  # one registry write at a time: check-then-write stays consistent
        # (thumbprint, registry generation) pairs implicit trust refused: not re-examined until the registry changes.
        self._implicit_refused: set[tuple[str, int]] = set()

    @property
    def registry(self) -> Registry:
        return self._server.registry

    # Rules (security/rules.py) --------------------------------------------------------------------------------

    def _target(self, thumbprint: str, clearance: Clearance, source: str = "") -> rules.Target:
        identifier = self._server.identifier
        return rules.target_of(thumbprint, clearance, source=source, well_known=identifier.well_known_admins,
                               server_thumbprints=identifier.server_thumbprints)

    def _ensure_each(self, caller: Identity, verb: rules.Verb, named: CertificateDefinition,
                     affected: list[CertificateDefinition]) -> None:
        """The rules hold for every certificate an operation reaches: the named one, its collection, its same-key
        siblings."""
        for d in [named, *(d for d in affected if d.thumbprint != named.thumbprint)]:
            rules.ensure(caller, verb, self._target(d.thumbprint, d.clearance, d.source), name=d.name,
                         thumbprint=d.thumbprint, clearance=d.clearance,
                         together_with=named.name if d is not named else "")

    def _audit(self, event: str, caller: Identity, definitions: list[CertificateDefinition], **extra: Any) -> None:
        """Who did it, to which certificates, with which clearance and permissions (never a key or passphrase)."""
        self._server.audit.record(event, actor=caller, Certificates=[
            {"Name": d.name, "Thumbprint": d.thumbprint, "Clearance": d.clearance.value,
             "Permissions": {db: a.value for db, a in d.permissions.items()}} for d in definitions
        ], **extra)

    # Generate -------------------------------------------------------------------------------------------------

    async def generate(self, caller: Identity, body: Any) -> tuple[str, bytes, CertificateDefinition]:
        server = self._server
        request = GenerateRequest.parse(body, clock.now())
        rules.ensure(caller, rules.Verb.CREATE, rules.target_of_clearance(request.clearance), name=request.name,
                     clearance=request.clearance)
        authority = server.authority
        if authority is None:
            raise BadRequestError(
                f"Cannot generate the client certificate '{request.name}' because the server certificate is not "
                "loaded. Start Roost with an https:// ServerUrl."
            )
        package_request = PackageRequest(
            request.name, request.key_type, request.password, request.not_after, server.url,
            authority.certificate_pem(), authority.private_key_pem(),
        )
        if needs_worker(package_request):
            loop = asyncio.get_running_loop()
            issued = await loop.run_in_executor(server.process_pool, issue_package, package_request)
        else:
            issued = issue_package(package_request, authority)
        definition = self._definition(issued.info, request.name, request.clearance, request.permissions,
                                      two_factor_key=request.two_factor_key, source="generated")
        async with self._lock:
            await self.registry.put([definition])
        self._audit("certificate.generated", caller, [definition])
        return f"{request.name}.zip", issued.zip_bytes, definition

    def _definition(self, info: CertificateInfo, name: str, clearance: Clearance, permissions: dict[str, Access],
                    *, two_factor_key: str | None, source: str, primary: str = "",
                    secondaries: tuple[str, ...] = ()) -> CertificateDefinition:
        return CertificateDefinition(
            name=name, thumbprint=Thumbprint(info.thumbprint), clearance=clearance, permissions=permissions,
            not_before=info.not_before, not_after=info.not_after, pinning_hash=info.pinning_hash,
            certificate_der=info.der, subject=info.subject, collection_primary=primary,
            collection_secondaries=secondaries, two_factor_key=two_factor_key, source=source,
        )

    # Upload ---------------------------------------------------------------------------------------------------

    async def upload(self, caller: Identity, body: Any) -> list[CertificateDefinition]:
        body = check_fields(body, {"Name", "Certificate", "Password", "SecurityClearance", "Permissions",
                                   "NotAfter", "TwoFactorAuthenticationKey"}, "certificate definition")
        name = validate_name(body.get("Name"))
        clearance = parse_clearance(body.get("SecurityClearance"))
        permissions = validate_permissions(body.get("Permissions"))
        validate_not_after(body.get("NotAfter"), None, clock.now())
        two_factor_key = validate_two_factor_key(body.get("TwoFactorAuthenticationKey"))
        rules.ensure(caller, rules.Verb.UPLOAD, rules.target_of_clearance(clearance), name=name, clearance=clearance)
        raw = body.get("Certificate")
        if not raw or not isinstance(raw, str):
            raise BadRequestError("Certificate is a mandatory property when saving an existing certificate")
        password = optional_string(body, "Password")
        infos = load_certificates(decode_certificate_field(raw), password or None)
        server_thumbprints = self._server.identifier.server_thumbprints
        for info in infos:
            if info.thumbprint in server_thumbprints:
                raise BadRequestError(
                    f"You are trying to import the same server certificate ({info.thumbprint}) as the one which is "
                    "already loaded. This is not supported."
                )
            # A registration would shadow the setting or demote a server certificate: refused, whoever calls.
            registered = self.registry.get(info.thumbprint)
            target = self._target(info.thumbprint, clearance, registered.source if registered else "")
            if target in (rules.Target.WELL_KNOWN_ADMIN, rules.Target.OLD_SERVER_CERTIFICATE):
                rules.ensure(caller, rules.Verb.UPLOAD, target, name=name, thumbprint=info.thumbprint)
        # Reference section 5: certificates that issue others in the blob are chain/CA certificates: anchors, not
        # registrations.
        issuers = {i.issuer for i in infos if not i.self_issued}
        members = [i for i in infos if i.subject not in issuers and not i.is_ca]
        chain = [i for i in infos if i not in members]
        if not members:
            raise BadRequestError("The provided file holds only CA certificates; nothing to register.")
        not_client = [m for m in members if not m.client_auth]
        if not_client:
            raise BadRequestError(
                f"The certificate '{not_client[0].subject}' is not valid for client authentication: its Extended Key "
                "Usage does not include clientAuth (1.3.6.1.5.5.7.3.2)."
            )
        primary = members[0]
        secondaries = tuple(m.thumbprint for m in members[1:])
        definitions = [self._definition(primary, name, clearance, permissions, two_factor_key=two_factor_key,
                                        source="uploaded", secondaries=secondaries)]
        definitions += [self._definition(m, name, clearance, permissions, two_factor_key=two_factor_key,
                                         source="uploaded", primary=primary.thumbprint) for m in members[1:]]
        async with self._lock:
            for definition in definitions:
                if (existing := self.registry.get(definition.thumbprint)) is not None:  # overwritten: its rules too
                    rules.ensure(caller, rules.Verb.UPLOAD, self._target(existing.thumbprint, existing.clearance,
                                                                         existing.source),
                                 name=existing.name, thumbprint=existing.thumbprint, clearance=existing.clearance)
            # Registered first, so that trust() keeps only the chain certificates as extra stored anchors: the
            # members are re-anchored from the registry at start-up, and stop being anchors once deleted.
            # Registering a thumbprint again takes it out of any earlier collection, so that an edit or a delete
            # of that collection never reaches it (and no collection is left without its primary).
            detached = self.registry.detached({d.thumbprint for d in definitions})
            await self.registry.put(detached + definitions)
            await self._forget_deleted([d.thumbprint for d in definitions])
            await self._server.trust([m.der for m in members] + [c.der for c in chain])
        self._audit("certificate.uploaded", caller, definitions)
        return definitions

    # Edit -----------------------------------------------------------------------------------------------------

    async def edit(self, caller: Identity, body: Any, *, delete_two_factor: bool = False) -> CertificateDefinition:
        body = check_fields(body, {"Thumbprint", "Name", "SecurityClearance", "Permissions", "Disabled", "NotAfter",
                                   "TwoFactorAuthenticationKey", "Certificate", "Password"}, "certificate definition")
        thumbprint = body.get("Thumbprint")
        if not isinstance(thumbprint, str) or not thumbprint.strip():
            raise BadRequestError("Thumbprint is a required field in the certificate definition")
        name = validate_name(body.get("Name"))
        clearance = parse_clearance(body.get("SecurityClearance"))
        permissions = validate_permissions(body.get("Permissions"))
        disabled = body.get("Disabled", False)
        if not isinstance(disabled, bool):
            raise BadRequestError("Disabled must be true or false.")
        new_key = validate_two_factor_key(body.get("TwoFactorAuthenticationKey"))
        verb = rules.Verb.DISABLE if disabled else rules.Verb.EDIT
        self._ensure_not_synthetic(caller, verb, thumbprint)
        async with self._lock:
            existing = self.registry.get(thumbprint.strip())
            if existing is None:
                raise NotFoundError(
                    f"Cannot edit permissions for certificate with thumbprint '{thumbprint}'. It doesn't exist in the "
                    "cluster."
                )
            existing = self.registry.primary_of(existing)
            members = self._with_same_key(existing)
            self._ensure_each(caller, verb, existing, members)
            rules.ensure(caller, rules.Verb.EDIT, rules.target_of_clearance(clearance), name=existing.name,
                         clearance=clearance, raising=True)
            if disabled:
                rules.ensure_not_own(caller, rules.Verb.DISABLE, existing.name, (m.thumbprint for m in members))
            # An edit keeps an existing 2FA key unless asked to delete it (RavenDB test
            # EditCertificateDoesntOverrideTwoFactorConfig); a new key replaces it.
            two_factor_key = None if delete_two_factor else (new_key or existing.two_factor_key)
            updated = [replace(m, name=name, clearance=clearance, permissions=permissions, disabled=disabled,
                               two_factor_key=two_factor_key) for m in members]
            await self.registry.put(updated)
        self._audit("certificate.edited", caller, updated[:1], Disabled=disabled, TwoFactorRemoved=delete_two_factor)
        return updated[0]

    def _ensure_not_synthetic(self, caller: Identity, verb: rules.Verb, thumbprint: str) -> None:
        """Well-known admins and the server's own certificates, registered or not, are out of the API's reach."""
        tp = thumbprint.strip().upper()
        target = self._target(tp, Clearance.VALID_USER)
        if target in (rules.Target.WELL_KNOWN_ADMIN, rules.Target.SERVER_CERTIFICATE):
            rules.ensure(caller, verb, target, name=tp, thumbprint=tp)

    def _with_same_key(self, primary: CertificateDefinition) -> list[CertificateDefinition]:
        """``primary``'s collection and every registered certificate with the same public key (and their
        collections): one key is one identity, so an edit, a disabling or a delete applies to all of them."""
        found: dict[str, CertificateDefinition] = {}
        for member in self.registry.members_of(primary):
            for sibling in (member, *self.registry.by_pinning_hash(member.pinning_hash)):
                for d in self.registry.members_of(self.registry.primary_of(sibling)):
                    found.setdefault(d.thumbprint, d)
        return list(found.values())

    def same_key_thumbprints(self, definition: CertificateDefinition) -> list[str]:
        """Registered certificates outside ``definition``'s collection that have its public key."""
        own = {definition.thumbprint, *definition.collection_secondaries}
        return sorted(d.thumbprint for d in self.registry.by_pinning_hash(definition.pinning_hash)
                      if d.thumbprint not in own)

    async def _deleted(self) -> set[str]:
        return set(await self._server.storage.get_setting(DELETED_KEY) or [])

    async def _remember_deleted(self, thumbprints: list[str]) -> None:
        # Kept in shared storage, so that every node of a cluster honours it, also after a restart.
        deleted = await self._deleted()
        if not deleted.issuperset(thumbprints):
            await self._server.storage.put_setting(DELETED_KEY, sorted(deleted | set(thumbprints)))

    async def _forget_deleted(self, thumbprints: list[str]) -> None:
        deleted = await self._deleted()
        if not deleted.isdisjoint(thumbprints):
            await self._server.storage.put_setting(DELETED_KEY, sorted(deleted - set(thumbprints)))

    # Delete and purge -----------------------------------------------------------------------------------------

    async def delete(self, caller: Identity, thumbprint: Any) -> CertificateDefinition:
        if not isinstance(thumbprint, str) or not thumbprint.strip():
            raise BadRequestError("The query parameter 'thumbprint' is required.")
        self._ensure_not_synthetic(caller, rules.Verb.DELETE, thumbprint)
        async with self._lock:
            definition = self.registry.get(thumbprint.strip())
            if definition is None:
                raise NotFoundError(f"There is no certificate with thumbprint '{thumbprint}' on this server.")
            primary = self.registry.primary_of(definition)
            rules.ensure_primary(definition.name, definition.thumbprint, primary.thumbprint)
            affected = self._with_same_key(definition)
            members: list[str] = [d.thumbprint for d in affected]
            rules.ensure_not_own(caller, rules.Verb.DELETE, definition.name, members)
            self._ensure_each(caller, rules.Verb.DELETE, definition, affected)
            await self._remember_deleted(members)
            await self.registry.delete(members)
            await self._server.forget_certificate(members)
        self._audit("certificate.deleted", caller, affected)
        return definition

    async def purge(self, caller: Identity) -> list[CertificateDefinition]:
        """Delete expired certificates the caller may delete (RavenDB's purge ignores clearance; Roost does not)."""
        now = clock.now()
        actor = rules.actor_of(caller)
        async with self._lock:
            expired = [
                d for d in self.registry.all()
                if self.registry.primary_of(d) is d and d.not_after < now
                and rules.allowed(actor, rules.Verb.PURGE, self._target(d.thumbprint, d.clearance, d.source))
                and caller.thumbprint not in (d.thumbprint, *d.collection_secondaries)
            ]
            thumbprints: list[str] = [m.thumbprint for d in expired for m in self.registry.members_of(d)]
            if thumbprints:
                await self._remember_deleted(thumbprints)
                await self.registry.delete(thumbprints)
                await self._server.forget_certificate(thumbprints)
        if expired:
            self._audit("certificate.purged", caller, expired)
        return expired

    # Server certificate (reference section 7) ----------------------------------------------------------------

    async def replace_server_certificate(self, caller: Identity, body: Any) -> tuple[str, str]:
        """replace-cluster-cert: install a new server .pfx now. A single node confirms at once, so
        ``replaceImmediately`` changes nothing here; it is accepted for RavenDB's clients."""
        server = self._server
        body = check_fields(body, {"Certificate", "Password", "Name"}, "request")
        raw = body.get("Certificate")
        if not raw or not isinstance(raw, str):
            raise BadRequestError("Certificate is a mandatory property: the base64 of the new server .pfx.")
        password = optional_string(body, "Password")
        try:
            pfx = base64.b64decode(raw.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestError(
                "Unable to load the provided certificate: the Certificate property is not base64."
            ) from None
        if server.server_certificate is None or server.tls is None:
            raise BadRequestError("This server runs without TLS; there is no server certificate to replace.")
        async with self._lock:
            current = server.server_certificate
            # Checked before anything is written: bad input changes nothing.
            offered = load_certificates(pfx, password or None)[0]
            if offered.thumbprint == current.info.thumbprint:
                raise BadRequestError(
                    f"The provided certificate ({offered.thumbprint}) is already this server's certificate."
                )
            new = await asyncio.to_thread(datadir.install_replacement, server.settings.certificates_dir, pfx,
                                          password or None, configured_thumbprint=server.configured_thumbprint,
                                          now=clock.now())
            old = await server.install_server_certificate(new)
        audit.info("Server certificate replaced by %s: %s -> %s", caller.display_name, old.info.thumbprint,
                   new.info.thumbprint)
        server.audit.record("server-certificate.replaced", actor=caller, Old=old.info.thumbprint,
                            New=new.info.thumbprint, Subject=new.info.subject)
        return old.info.thumbprint, new.info.thumbprint

    async def refresh_server_certificate(self, caller: Identity) -> tuple[str, str]:
        """refresh: a new certificate for Roost's generated server certificate, from the internal CA, now."""
        server = self._server
        current = server.server_certificate
        if current is None or server.authority is None:
            raise BadRequestError("This server runs without TLS; there is no server certificate to renew.")
        if not current.generated:
            raise BadRequestError(
                f"The server certificate '{current.info.subject}' ({current.info.thumbprint}) was not generated by "
                "Roost, so Roost cannot renew it. Renew it with its issuer and install it with replace-cluster-cert "
                "(roost server-cert replace)."
            )
        async with self._lock:
            certs_dir = server.settings.certificates_dir
            new = await asyncio.to_thread(datadir.generated_server_certificate, certs_dir, server.authority,
                                          renew=True)
            datadir.forget_replacement(certs_dir)
            server.configured_thumbprint = new.info.thumbprint
            old = await server.install_server_certificate(new)
        audit.info("Server certificate renewed by %s: %s -> %s", caller.display_name, old.info.thumbprint,
                   new.info.thumbprint)
        server.audit.record("server-certificate.renewed", actor=caller, Old=old.info.thumbprint,
                            New=new.info.thumbprint, Subject=new.info.subject)
        return old.info.thumbprint, new.info.thumbprint

    # Implicit trust by public-key pinning hash (reference section 9) -------------------------------------------

    async def implicit_trust(self, der: bytes, identity: Identity) -> Identity:
        """An unregistered certificate with a registered certificate's key: register it if its issuer is known.

        Runs only for status UnfamiliarIssuer (never on the path of a registered certificate). The issuer is
        known when its pinning hash is in Security.WellKnownIssuerHashes.Admin, or when it has the same pinning
        hash as the issuer of the registered certificate (the same CA, perhaps with a renewed certificate).
        """
        server = self._server
        thumbprint = identity.thumbprint
        if thumbprint is None or server.tls is None:
            return identity
        refused_key = (thumbprint, self.registry.generation)
        if refused_key in self._implicit_refused:
            return identity
        info = describe_der(der)
        anchors = [*server.tls.anchors]
        issuer = find_issuer(der, anchors)
        known = [d for d in self.registry.by_pinning_hash(info.pinning_hash) if not d.disabled]
        hashes = set(server.settings.well_known_issuer_hashes)
        match: CertificateDefinition | None = None
        for candidate in sorted(known, key=lambda d: d.not_after, reverse=True):
            if issuer is None:
                break
            if issuer.pinning_hash in hashes:
                match = candidate
                break
            previous_issuer = find_issuer(candidate.certificate_der, anchors)
            if previous_issuer is not None and previous_issuer.pinning_hash == issuer.pinning_hash:
                match = candidate
                break
        if match is None:
            if len(self._implicit_refused) > 10_000:
                self._implicit_refused.clear()
            self._implicit_refused.add(refused_key)
            audit.warning(
                "Refused %s: it has the public key of a registered certificate but its issuer %s is unknown. To "
                "trust it, add %s to Security.WellKnownIssuerHashes.Admin.", identity.display_name,
                issuer.subject if issuer else "(not found)", issuer.pinning_hash if issuer else "its issuer's hash",
            )
            return identity
        if thumbprint in await self._deleted():
            self._implicit_refused.add(refused_key)
            audit.warning(
                "Refused %s: it has the public key of a registered certificate, but an administrator deleted it. "
                "Upload it to register it again.", identity.display_name,
            )
            return identity
        match = self.registry.primary_of(match)
        definition = self._definition(info, match.name, match.clearance, dict(match.permissions),
                                      two_factor_key=match.two_factor_key, source="implicit")
        async with self._lock:
            if self.registry.get(thumbprint) is None:
                await self.registry.put([definition])
        audit.warning(
            "Registered %s automatically with the name, clearance and permissions of %s ('%s'): same public key "
            "pinning hash, known issuer %s.", identity.display_name, match.thumbprint, match.name,
            issuer.subject if issuer else "",
        )
        self._audit("certificate.implicitly-trusted", identity, [definition], SameKeyAs=match.thumbprint,
                    Issuer=issuer.subject if issuer else "")
        return server.identifier.identify(der, clock.now())

    # Read -----------------------------------------------------------------------------------------------------

    def whoami(self, caller: Identity) -> dict[str, Any] | None:
        if caller.definition is not None:
            return caller.definition.to_wire(last_used=self.registry.last_used(caller.definition.thumbprint))
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
            if caller.synthetic_name == SERVER_CERTIFICATE_NAME and caller.not_after and caller.not_before:
                entry["NotAfter"] = clock.wire_date(caller.not_after)
                entry["NotBefore"] = clock.wire_date(caller.not_before)
            return entry
        return None

    def server_entry(self, *, metadata_only: bool) -> dict[str, Any] | None:
        certificate = self._server.server_certificate
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
            import base64

            entry["Certificate"] = base64.b64encode(info.der).decode()
        return entry

    def export_server_certificates(self) -> bytes:
        """Every server certificate in use (this node's and the ClusterNode entries): no keys, no password."""
        ders: list[bytes] = []
        if self._server.server_certificate is not None:
            ders.append(self._server.server_certificate.info.der)
        ders += [d.certificate_der for d in self.registry.all() if d.clearance is Clearance.CLUSTER_NODE]
        unique = list(dict.fromkeys(ders))
        return packages.der_certificates_pfx(unique) if unique else b""

    def _wire(self, definition: CertificateDefinition, metadata_only: bool) -> dict[str, Any]:
        wire = definition.to_wire(metadata_only=metadata_only, last_used=self.registry.last_used(definition.thumbprint))
        # Roost's addition: the certificates an edit, a disabling or a delete of this one also applies to.
        wire["SameKeyCertificates"] = self.same_key_thumbprints(definition)
        return wire

    def list(self, *, start: int, page_size: int, thumbprint: str | None, name: str | None, metadata_only: bool,
             secondary: bool, text: str | None = None, clearance: str | None = None, state: str | None = None,
             sort: str = "name") -> dict[str, Any]:
        """GET /admin/certificates (reference section 3, row 3) plus Roost's filters for the Studio."""
        registry = self.registry
        server = self._server
        result: dict[str, Any] = {
            "LoadedServerCert": server.server_thumbprint,
            "WellKnownAdminCerts": sorted(server.identifier.well_known_admins),
        }
        if thumbprint:
            definition = registry.get(thumbprint.strip())
            if definition is None:
                entry = self.server_entry(metadata_only=metadata_only)
                if entry is not None and entry["Thumbprint"] == thumbprint.strip().upper():
                    return {**result, "Results": [entry], "TotalResults": 1}
                raise NotFoundError(f"There is no certificate with thumbprint '{thumbprint}' on this server.")
            definition = registry.primary_of(definition)
            return {**result, "Results": [self._wire(definition, metadata_only)], "TotalResults": 1}
        now = clock.now()
        soon = now + dt.timedelta(days=30)
        wanted_clearance = parse_clearance(clearance) if clearance else None
        if state not in (None, "", "valid", "expiring", "expired"):
            raise BadRequestError("state must be one of: valid, expiring, expired.")
        needle = text.casefold() if text else None
        if sort not in ("name", "expiry", None, ""):
            raise BadRequestError("sort must be 'name' or 'expiry'.")
        index = registry.by_expiry if sort == "expiry" else registry.by_name

        def keep(d: CertificateDefinition) -> bool:
            if name is not None and d.name != name:
                return False
            if needle and needle not in d.name.casefold() and needle not in d.thumbprint.casefold():
                return False
            if wanted_clearance is not None and d.clearance is not wanted_clearance:
                return False
            if state == "expired" and not d.not_after < now:
                return False
            if state == "expiring" and not now <= d.not_after < soon:
                return False
            if state == "valid" and not d.not_after >= now:
                return False
            return True

        # The common cases are slices of an index kept sorted on write; only free-text, clearance and state
        # filters scan, and secondaries (listed on request only) are few.
        candidates: list[CertificateDefinition] = (
            registry.with_name(name) if name is not None and sort != "expiry" else index.items()
        )
        if secondary:
            secondaries = [d for d in registry.all() if d.collection_primary]
            key = (lambda d: (d.not_after, d.thumbprint)) if sort == "expiry" else (
                lambda d: (d.name.casefold(), d.thumbprint))
            candidates = sorted([*candidates, *secondaries], key=key)
        filtering = name is not None or needle or wanted_clearance is not None or bool(state)
        filtered = [d for d in candidates if keep(d)] if filtering else candidates
        page = filtered[start : start + page_size]
        results = [self._wire(d, metadata_only) for d in page]
        # After a replacement the server certificate is also a registered ClusterNode entry: list it once.
        include_server = start == 0 and (name is None or name == SERVER_CERTIFICATE_NAME) and not (
            needle or wanted_clearance or state) and registry.get(server.server_thumbprint or "") is None
        if include_server and (entry := self.server_entry(metadata_only=metadata_only)) is not None:
            results.insert(0, entry)
        return {**result, "Results": results, "TotalResults": len(filtered)}
