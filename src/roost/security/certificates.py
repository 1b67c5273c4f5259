"""Certificate lifecycle: generate, upload, list, edit, delete, purge, export.

Who may do what is security/rules.py; request bodies are parsed by security/requests.py; implicit trust and the
deleted thumbprints it honours are security/implicit.py; the server's own certificate is
security/server_certificate.py; the JSON shapes that are not a definition's own are security/wire.py. What is left
here is what happens to the registry: one write at a time (check, then write, under one lock), every operation
reaching the whole collection and the same-key certificates of what it names, no passphrase ever stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Any

from roost import clock
from roost.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenOperationError,
    NotFoundError,
    ServiceUnavailableError,
)
from roost.pki import csr, datadir, packages
from roost.pki.authority import BACKDATE, CertificateAuthority
from roost.pki.inspect import CertificateInfo, describe
from roost.pki.issuance import PackageRequest, issue_package, needs_worker
from roost.security import rules, wire
from roost.security.audit import AuditLog, Event
from roost.security.identity import SERVER_CERTIFICATE_NAME, Identifier, Identity
from roost.security.implicit import DeletedThumbprints, ImplicitTrust
from roost.security.registry import CertificateDefinition, Registry, parse_clearance
from roost.security.requests import (
    EditRequest,
    GenerateRequest,
    RenewRequest,
    RotateRequest,
    SignRequest,
    UploadRequest,
)
from roost.security.server_certificate import ServerCertificates
from roost.security.trust import TrustAnchors, well_known_details
from roost.storage.base import Storage
from roost.types import Clearance

# A successor's registration holds its lease for at most this long (it takes milliseconds); a second renewal of the
# same certificate waits this long for it before a 503.
SUCCESSOR_LEASE_SECONDS = 10.0
SUCCESSOR_WAIT_SECONDS = 12.0
UNUSED_PERIOD = dt.timedelta(days=90)  # the list's state=unused (the Studio's "Not used for 90 days")


class CertificateService:
    def __init__(self, registry: Registry, identifier: Identifier, trust: TrustAnchors | None,
                 authority: CertificateAuthority | None, audit: AuditLog, pool: Callable[[], Executor], *,
                 server_certificates: ServerCertificates, implicit: ImplicitTrust, deleted: DeletedThumbprints,
                 lock: asyncio.Lock, url: Callable[[], str],
                 on_deleted: Callable[[list[str]], Awaitable[None]], leases: Storage | None = None) -> None:
        self.registry = registry
        self._identifier = identifier
        self._trust = trust  # None on an unsecured server
        self._authority = authority
        self._audit_log = audit
        self._pool = pool  # created on first use: most generations never need a worker process
        self._server_certificates = server_certificates
        self._implicit = implicit
        self._deleted = deleted
        self._lock = lock  # one registry write at a time: check-then-write stays consistent
        self._url = url  # known once the server listens; written into generated packages
        self._on_deleted = on_deleted  # per-certificate state elsewhere (2FA sessions, ...) goes too
        # The shared storage's leases: what must happen once across worker processes and nodes (``_lock`` is this
        # process's only). None in unit tests of one process.
        self._leases = leases

    # Rules (security/rules.py) --------------------------------------------------------------------------------

    def _target(self, thumbprint: str, clearance: Clearance, source: str = "") -> rules.Target:
        return rules.target_of(thumbprint, clearance, source=source, well_known=self._identifier.well_known_admins,
                               server_thumbprints=self._identifier.server_thumbprints)

    def _ensure_each(self, caller: Identity, verb: rules.Verb, named: CertificateDefinition,
                     affected: list[CertificateDefinition]) -> None:
        """The rules hold for every certificate an operation reaches: the named one, its collection, its same-key
        siblings."""
        for d in [named, *(d for d in affected if d.thumbprint != named.thumbprint)]:
            rules.ensure(caller, verb, self._target(d.thumbprint, d.clearance, d.source), name=d.name,
                         thumbprint=d.thumbprint, clearance=d.clearance,
                         together_with=named.name if d is not named else "")

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

    def _audit(self, event: Event, caller: Identity, definitions: list[CertificateDefinition], **extra: Any) -> None:
        """Who did it, to which certificates, with which clearance and permissions (never a key or passphrase)."""
        self._audit_log.record(event, actor=caller, Certificates=wire.audited(definitions), **extra)

    # Generate -------------------------------------------------------------------------------------------------

    async def generate(self, caller: Identity, body: Any) -> tuple[str, bytes, CertificateDefinition]:
        request = GenerateRequest.parse(body, clock.now())
        rules.ensure(caller, rules.Verb.CREATE, rules.target_of_clearance(request.clearance), name=request.name,
                     clearance=request.clearance)
        authority = self._authority
        if authority is None:
            raise BadRequestError(
                f"Cannot generate the client certificate '{request.name}' because the server certificate is not "
                "loaded. Start Roost with an https:// ServerUrl."
            )
        package_request = PackageRequest(
            request.name, request.key_type, request.password, request.not_after, self._url(),
            authority.certificate_pem(), authority.private_key_pem(),
        )
        if needs_worker(package_request):
            loop = asyncio.get_running_loop()
            issued = await loop.run_in_executor(self._pool(), issue_package, package_request)
        else:
            issued = issue_package(package_request, authority)
        definition = CertificateDefinition.of(issued.info, request.name, request.clearance, request.permissions,
                                              two_factor_key=request.two_factor_key, source="generated")
        async with self._lock:
            await self.registry.put([definition])
        self._audit(Event.CERTIFICATE_GENERATED, caller, [definition])
        return f"{request.name}.zip", issued.zip_bytes, definition

    # Sign a request (the key stays with the client) and renew ---------------------------------------------------

    def _loaded_authority(self, name: str) -> CertificateAuthority:
        if self._authority is None:
            raise BadRequestError(
                f"Cannot issue the client certificate '{name}' because the server certificate is not loaded. Start "
                "Roost with an https:// ServerUrl."
            )
        return self._authority

    async def sign_request(self, caller: Identity, body: Any) -> CertificateDefinition:
        """POST /admin/certificates/csr: generate's rules and settings, for a key made by the client."""
        request = SignRequest.parse(body, clock.now())
        rules.ensure(caller, rules.Verb.CREATE, rules.target_of_clearance(request.clearance), name=request.name,
                     clearance=request.clearance)
        public_key = csr.public_key_of(request.certificate_request)
        authority = self._loaded_authority(request.name)
        info = describe(authority.issue_client_for(request.name, public_key, not_after=request.not_after))
        definition = CertificateDefinition.of(info, request.name, request.clearance, request.permissions,
                                              two_factor_key=request.two_factor_key, source="generated")
        async with self._lock:
            await self.registry.put([definition])
        self._audit(Event.CERTIFICATE_GENERATED, caller, [definition], FromRequest=True)
        return definition

    async def renew(self, caller: Identity, body: Any) -> CertificateDefinition:
        """POST /certificates/renew: the caller's successor, with its name, clearance, permissions, 2FA key and
        lifetime; the caller's own certificate stays registered until it expires (or is deleted)."""
        request = RenewRequest.parse(body)
        thumbprint = caller.thumbprint or ""
        own = caller.definition
        if own is None:  # a well-known admin or the server's own certificate: no registration to renew
            target = self._target(thumbprint, Clearance.VALID_USER)
            rules.ensure(caller, rules.Verb.RENEW, target, name=caller.synthetic_name or thumbprint,
                         thumbprint=thumbprint)
            raise ForbiddenOperationError("Only a registered client certificate can renew itself.")
        rules.ensure(caller, rules.Verb.RENEW, self._target(own.thumbprint, own.clearance, own.source),
                     name=own.name, thumbprint=own.thumbprint, clearance=own.clearance)
        public_key = csr.public_key_of(request.certificate_request)
        authority = self._loaded_authority(own.name)
        now = clock.now().replace(microsecond=0)
        # The same lifetime as the one renewed (generated certificates are backdated: that week is not lifetime),
        # so a renewal never lengthens what an administrator granted.
        lifetime = max(own.not_after - own.not_before - BACKDATE, dt.timedelta(days=1))
        info = describe(authority.issue_client_for(own.name, public_key, not_after=now + lifetime))
        successor, earlier = await self._put_successor(own, info, now)
        self._audit(Event.CERTIFICATE_GENERATED, caller, [successor], RenewalOf=own.thumbprint,
                    ReplacedUnusedSuccessors=earlier)
        return successor

    async def _put_successor(self, own: CertificateDefinition, info: CertificateInfo,
                             now: dt.datetime) -> tuple[CertificateDefinition, list[str]]:
        """Register ``info`` as the successor of ``own`` (renewal and rotation): its name, clearance, permissions and
        2FA key. One successor per certificate: a stolen certificate cannot mint a fan of long-lived successors, so
        one already in use is a 409; a successor never used (its files lost before the client wrote them, say) is
        replaced. Returns the successor and the thumbprints of the unused ones it replaced."""
        async with self._across_processes(f"successor.{own.thumbprint}"), self._lock:
            current = self.registry.get(own.thumbprint)
            if current is None or current.disabled:  # deleted or disabled while this request was on its way
                raise ForbiddenOperationError(f"Cannot renew the certificate '{own.name}': it is no longer active.")
            earlier = [d for d in self.registry.all() if d.renewal_of == own.thumbprint]
            used = [d for d in earlier if self.registry.last_used(d.thumbprint) is not None]
            if used:
                raise ConflictError(
                    f"The certificate '{own.name}' was already renewed: its successor {used[0].thumbprint} is in "
                    "use. Renew the successor instead (roost certs renew --cert <the successor's .pem>).")
            successor = replace(
                CertificateDefinition.of(info, current.name, current.clearance, dict(current.permissions),
                                         two_factor_key=current.two_factor_key, source="generated"),
                renewal_of=own.thumbprint, renewed_at=now)
            replaced: list[str] = [d.thumbprint for d in earlier]
            if replaced:
                await self._deleted.remember(replaced)
                await self.registry.delete(replaced)
                await self._on_deleted(replaced)
            await self.registry.put([successor])
        return successor, replaced

    @contextlib.asynccontextmanager
    async def _across_processes(self, name: str) -> AsyncIterator[None]:
        """One holder at a time of ``name`` across every worker and node (a lease in the shared storage), and the
        registry caught up with what the previous holder wrote before the body runs: renewals of one certificate
        racing on two processes would otherwise each see no successor and each register one, and two nodes'
        hourly retirement would retire (and audit) the same certificate twice."""
        if self._leases is None:
            yield
            return
        deadline = time.monotonic() + SUCCESSOR_WAIT_SECONDS
        while True:
            now = clock.now().timestamp()
            until = now + SUCCESSOR_LEASE_SECONDS
            if await self._leases.take_lease(name, now, until):
                break
            if time.monotonic() > deadline:
                raise ServiceUnavailableError("Another worker or node is changing the same renewal right now. Retry "
                                              "in a few seconds.", headers={"Retry-After": "5"})
            await asyncio.sleep(0.05)
        try:
            await self.registry.catch_up()
            yield
        finally:
            await self._leases.release_lease(name, until)

    async def rotate(self, caller: Identity, body: Any) -> tuple[str, bytes, CertificateDefinition]:
        """POST /admin/certificates/rotate: a successor of a registered certificate with the same name, clearance,
        permissions, 2FA key and lifetime, as a new package (key made here, as generate does). Both work; the old one
        is retired once unused (Settings.renewed_certificate_retire_days), like a renewal's predecessor."""
        request = RotateRequest.parse(body)
        self._ensure_not_synthetic(caller, rules.Verb.EDIT, request.thumbprint)
        old = self.registry.get(request.thumbprint)
        if old is None:
            raise NotFoundError(f"There is no certificate with thumbprint '{request.thumbprint}' on this server.")
        old = self.registry.primary_of(old)
        rules.ensure(caller, rules.Verb.EDIT, self._target(old.thumbprint, old.clearance, old.source), name=old.name,
                     thumbprint=old.thumbprint, clearance=old.clearance)
        rules.ensure(caller, rules.Verb.CREATE, rules.target_of_clearance(old.clearance), name=old.name,
                     clearance=old.clearance)
        authority = self._loaded_authority(old.name)
        now = clock.now().replace(microsecond=0)
        backdate = BACKDATE if old.source == "generated" else dt.timedelta(0)
        lifetime = max(old.not_after - old.not_before - backdate, dt.timedelta(days=1))
        package_request = PackageRequest(old.name, request.key_type, request.password, now + lifetime, self._url(),
                                         authority.certificate_pem(), authority.private_key_pem())
        if needs_worker(package_request):
            issued = await asyncio.get_running_loop().run_in_executor(self._pool(), issue_package, package_request)
        else:
            issued = issue_package(package_request, authority)
        successor, earlier = await self._put_successor(old, issued.info, now)
        self._audit(Event.CERTIFICATE_GENERATED, caller, [successor], RenewalOf=old.thumbprint, Rotation=True,
                    ReplacedUnusedSuccessors=earlier)
        return f"{old.name}.zip", issued.zip_bytes, successor

    async def retire_renewed(self, caller: Identity, unused_days: int) -> list[CertificateDefinition]:
        """Delete each renewed certificate that has not been used for ``unused_days`` since its successor was
        issued (its successor active and registered): both work during the overlap, then the old one goes. 0 keeps
        renewed certificates until they expire."""
        if unused_days <= 0:
            return []
        now = clock.now()
        limit = dt.timedelta(days=unused_days)
        # One process at a time across workers and nodes (each runs this hourly): a later run finds nothing left.
        async with self._across_processes("renewed.retire"), self._lock:
            successors = {d.renewal_of: d for d in self.registry.all() if d.renewal_of and d.renewed_at
                          and not d.disabled}
            retired = []
            for thumbprint, successor in successors.items():
                old = self.registry.get(thumbprint)
                if old is None or old.collection_primary or old.collection_secondaries:
                    continue
                assert successor.renewed_at is not None
                last_used = self.registry.last_used(thumbprint)
                quiet_since = max(successor.renewed_at, last_used) if last_used else successor.renewed_at
                if now - quiet_since >= limit:
                    retired.append(old)
            if retired:
                thumbprints: list[str] = [d.thumbprint for d in retired]
                await self._deleted.remember(thumbprints)
                await self.registry.delete(thumbprints)
                await self._on_deleted(thumbprints)
        for old in retired:
            self._audit(Event.CERTIFICATE_RETIRED, caller, [old], Successor=successors[old.thumbprint].thumbprint,
                        UnusedDays=unused_days)
        return retired

    async def create_initial_client(self, certs_dir: Path, clearance: Clearance,
                                    url: str) -> datadir.InitialClient | None:
        """First start: the initial client certificate, written to ``certs_dir`` and registered (no caller: the
        server makes it for whoever holds its data directory)."""
        if self._authority is None:
            return None
        client = datadir.create_initial_client(certs_dir, self._authority, url)
        definition = CertificateDefinition.of(client.info, datadir.INITIAL_CLIENT_NAME, clearance, {},
                                              two_factor_key=None, source="generated")
        async with self._lock:
            await self.registry.put([definition])
        return client

    # Upload ---------------------------------------------------------------------------------------------------

    async def upload(self, caller: Identity, body: Any) -> list[CertificateDefinition]:
        request = UploadRequest.parse(body, clock.now())
        name, clearance, permissions = request.name, request.clearance, request.permissions
        rules.ensure(caller, rules.Verb.UPLOAD, rules.target_of_clearance(clearance), name=name, clearance=clearance)
        infos = request.certificates()
        server_thumbprints = self._identifier.server_thumbprints
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
            raise BadRequestError(_only_ca_certificates(infos))
        not_client = [m for m in members if not m.client_auth]
        if not_client:
            raise BadRequestError(
                f"The certificate '{not_client[0].subject}' is not valid for client authentication: its Extended Key "
                "Usage does not include clientAuth (1.3.6.1.5.5.7.3.2)."
            )
        primary = members[0]
        secondaries = tuple(m.thumbprint for m in members[1:])
        key = request.two_factor_key
        definitions = [CertificateDefinition.of(primary, name, clearance, permissions, two_factor_key=key,
                                                source="uploaded", secondaries=secondaries)]
        definitions += [CertificateDefinition.of(m, name, clearance, permissions, two_factor_key=key,
                                                 source="uploaded", primary=primary.thumbprint) for m in members[1:]]
        async with self._lock:
            for definition in definitions:
                if (existing := self.registry.get(definition.thumbprint)) is not None:  # overwritten: its rules too
                    rules.ensure(caller, rules.Verb.UPLOAD, self._target(existing.thumbprint, existing.clearance,
                                                                         existing.source),
                                 name=existing.name, thumbprint=existing.thumbprint, clearance=existing.clearance)
            # Registered first, so that the trust anchors keep only the chain certificates as extra stored anchors:
            # the members are re-anchored from the registry at start-up, and stop being anchors once deleted.
            # Registering a thumbprint again takes it out of any earlier collection, so that an edit or a delete
            # of that collection never reaches it (and no collection is left without its primary).
            detached = self.registry.detached({d.thumbprint for d in definitions})
            await self.registry.put(detached + definitions)
            await self._deleted.forget(d.thumbprint for d in definitions)  # an explicit upload may bring one back
            if self._trust is not None:
                await self._trust.add([m.der for m in members] + [c.der for c in chain])
        self._audit(Event.CERTIFICATE_UPLOADED, caller, definitions)
        return definitions

    # Edit -----------------------------------------------------------------------------------------------------

    async def edit(self, caller: Identity, body: Any, *, delete_two_factor: bool = False) -> CertificateDefinition:
        request = EditRequest.parse(body)
        verb = rules.Verb.DISABLE if request.disabled else rules.Verb.EDIT
        self._ensure_not_synthetic(caller, verb, request.thumbprint)
        async with self._lock:
            existing = self.registry.get(request.thumbprint)
            if existing is None:
                raise NotFoundError(
                    f"Cannot edit permissions for certificate with thumbprint '{request.thumbprint}'. It doesn't "
                    "exist in the cluster."
                )
            existing = self.registry.primary_of(existing)
            members = self._with_same_key(existing)
            self._ensure_each(caller, verb, existing, members)
            rules.ensure(caller, rules.Verb.EDIT, rules.target_of_clearance(request.clearance), name=existing.name,
                         clearance=request.clearance, raising=True)
            if request.disabled:
                rules.ensure_not_own(caller, rules.Verb.DISABLE, existing.name, (m.thumbprint for m in members))
            # An edit keeps an existing 2FA key unless asked to delete it (RavenDB test
            # EditCertificateDoesntOverrideTwoFactorConfig); a new key replaces it.
            two_factor_key = None if delete_two_factor else (request.two_factor_key or existing.two_factor_key)
            updated = [replace(m, name=request.name, clearance=request.clearance, permissions=request.permissions,
                               disabled=request.disabled, two_factor_key=two_factor_key) for m in members]
            await self.registry.put(updated)
        self._audit(Event.CERTIFICATE_EDITED, caller, updated, Disabled=request.disabled,
                    TwoFactorRemoved=delete_two_factor,
                    TwoFactorAdded=bool(request.two_factor_key) and not delete_two_factor)
        return updated[0]

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
            await self._deleted.remember(members)
            await self.registry.delete(members)
            await self._on_deleted(members)
        self._audit(Event.CERTIFICATE_DELETED, caller, affected)
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
                await self._deleted.remember(thumbprints)
                await self.registry.delete(thumbprints)
                await self._on_deleted(thumbprints)
        if expired:
            self._audit(Event.CERTIFICATE_PURGED, caller, expired)
        return expired

    # Notifications --------------------------------------------------------------------------------------------

    def notifications(self, caller: Identity, within_days: int) -> dict[str, Any]:
        """GET /admin/notifications: the server certificate and registered certificates that expired or expire
        within ``within_days``, soonest first; the caller's own certificate is marked ``Own``."""
        now = clock.now()
        horizon = now + dt.timedelta(days=within_days)
        found: list[dict[str, Any]] = []

        def add(kind: str, name: str, thumbprint: str, not_after: dt.datetime, clearance: str) -> None:
            left = not_after - now
            expired = left.total_seconds() < 0
            what = "The server certificate" if kind == "ServerCertificate" else f"The certificate '{name}'"
            found.append({
                "Type": f"{kind}{'Expired' if expired else 'Expiring'}",
                "Name": name, "Thumbprint": thumbprint, "SecurityClearance": clearance,
                "NotAfter": clock.wire_date(not_after), "DaysLeft": max(left.days, 0) if not expired else 0,
                "Own": thumbprint == caller.thumbprint,
                "Message": (f"{what} ({thumbprint}) expired on {not_after:%Y-%m-%d}." if expired else
                            f"{what} ({thumbprint}) expires on {not_after:%Y-%m-%d}, in {left.days} days."),
            })

        if (current := self._server_certificates.current) is not None and current.info.not_after < horizon:
            add("ServerCertificate", SERVER_CERTIFICATE_NAME, current.info.thumbprint, current.info.not_after,
                Clearance.CLUSTER_NODE.value)
        server_thumbprint = self._server_certificates.thumbprint
        for d in self.registry.by_expiry.items():
            if d.not_after >= horizon:
                break  # the index is sorted by expiry
            if d.thumbprint != server_thumbprint:
                add("Certificate", d.name, d.thumbprint, d.not_after, d.clearance.value)
        found.sort(key=lambda n: (n["NotAfter"], n["Thumbprint"]))
        return {"WithinDays": within_days, "Notifications": found}

    def editable(self, caller: Identity, thumbprint: Any) -> CertificateDefinition:
        """The registered certificate ``thumbprint`` names, if ``caller`` may edit it (what an administrator may do
        to a certificate's 2FA session and lockout follows its edit rule); else the rule's refusal or a 404."""
        if not isinstance(thumbprint, str) or not thumbprint.strip():
            raise BadRequestError("The query parameter 'thumbprint' is required.")
        self._ensure_not_synthetic(caller, rules.Verb.EDIT, thumbprint)
        definition = self.registry.get(thumbprint.strip())
        if definition is None:
            raise NotFoundError(f"There is no certificate with thumbprint '{thumbprint}' on this server.")
        rules.ensure(caller, rules.Verb.EDIT, self._target(definition.thumbprint, definition.clearance,
                                                           definition.source),
                     name=definition.name, thumbprint=definition.thumbprint, clearance=definition.clearance)
        return definition

    # Who reaches a database --------------------------------------------------------------------------------

    def database_access(self, database: str) -> list[dict[str, Any]]:
        """Every certificate that reaches ``database`` and how (issue 17's reverse view): Operators, Cluster Admins
        and nodes by clearance (Admin on every database), Users by a permission naming it, well-known admins by
        configuration. Disabled and expired ones are listed and marked; they reach nothing until that changes."""
        now = clock.now()
        found: list[dict[str, Any]] = []
        for d in self.registry.all():
            if self.registry.primary_of(d) is not d:
                continue  # a collection's members act as its primary
            if d.clearance is Clearance.VALID_USER:
                access = d.access_to(database)
                if access is None:
                    continue
                level, via = access.value, "Permission"
            else:
                level, via = "Admin", "Clearance"
            found.append({"Name": d.name, "Thumbprint": d.thumbprint, "SecurityClearance": d.clearance.value,
                          "Access": level, "Via": via, "Disabled": d.disabled, "Expired": d.not_after < now,
                          "NotAfter": clock.wire_date(d.not_after)})
        for thumbprint in sorted(self._identifier.well_known_admins):
            found.append({"Name": "Well Known Admin Certificate", "Thumbprint": thumbprint,
                          "SecurityClearance": Clearance.CLUSTER_ADMIN.value, "Access": "Admin",
                          "Via": "Configuration", "Disabled": False, "Expired": False, "NotAfter": None})
        rank = {"Admin": 0, "ReadWrite": 1, "Read": 2}
        found.sort(key=lambda e: (rank.get(e["Access"], 3), e["Via"] != "Permission", e["Name"].casefold()))
        return found

    # Implicit trust (security/implicit.py) -------------------------------------------------------------------

    async def implicit_trust(self, der: bytes, identity: Identity) -> Identity:
        return await self._implicit.admit(der, identity)

    # Read -----------------------------------------------------------------------------------------------------

    def whoami(self, caller: Identity) -> dict[str, Any] | None:
        return wire.whoami_entry(self.registry, caller)

    def server_entry(self, *, metadata_only: bool) -> dict[str, Any] | None:
        return wire.server_entry(self._server_certificates.current, metadata_only=metadata_only)

    def export_server_certificates(self, nodes: Sequence[bytes] = ()) -> bytes:
        """Every server certificate in use (this node's, the cluster's ``nodes`` and the ClusterNode entries): no
        keys, no password."""
        ders: list[bytes] = []
        if (current := self._server_certificates.current) is not None:
            ders.append(current.info.der)
        ders += nodes
        ders += [d.certificate_der for d in self.registry.all() if d.clearance is Clearance.CLUSTER_NODE]
        unique = list(dict.fromkeys(ders))
        return packages.der_certificates_pfx(unique) if unique else b""

    def list(self, *, start: int, page_size: int, thumbprint: str | None, name: str | None, metadata_only: bool,
             secondary: bool, text: str | None = None, clearance: str | None = None, state: str | None = None,
             sort: str = "name") -> dict[str, Any]:
        """GET /admin/certificates (reference section 3, row 3) plus Roost's filters for the Studio."""
        registry = self.registry
        server_thumbprint = self._server_certificates.thumbprint
        result: dict[str, Any] = {
            "LoadedServerCert": server_thumbprint,
            "WellKnownAdminCerts": sorted(self._identifier.well_known_admins),
            # Roost's own: what it knows of each (subject, validity, why one cannot pass TLS) for the Studio.
            "WellKnownAdminCertDetails": well_known_details(
                self._identifier, self._trust.tls.anchors if self._trust else (), clock.now()),
        }
        if thumbprint:
            definition = registry.get(thumbprint.strip())
            if definition is not None and definition.thumbprint == server_thumbprint:
                definition = None  # the server's own entry, as the list shows it (with Generated and Subject)
            if definition is None:
                entry = self.server_entry(metadata_only=metadata_only)
                if entry is not None and entry["Thumbprint"] == thumbprint.strip().upper():
                    return {**result, "Results": [entry], "TotalResults": 1}
                raise NotFoundError(f"There is no certificate with thumbprint '{thumbprint}' on this server.")
            definition = registry.primary_of(definition)
            entry = wire.listed_entry(registry, definition, metadata_only=metadata_only)
            return {**result, "Results": [entry], "TotalResults": 1}
        now = clock.now()
        soon = now + dt.timedelta(days=30)
        wanted_clearance = parse_clearance(clearance) if clearance else None
        if state not in (None, "", "valid", "expiring", "expired", "unused"):
            raise BadRequestError("state must be one of: valid, expiring, expired, unused.")
        unused_before = now - UNUSED_PERIOD
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
            if state == "unused":  # last used over 90 days ago, or never and valid for longer than that
                if (registry.last_used(d.thumbprint) or d.not_before) >= unused_before:
                    return False
            return True

        # The common cases are slices of an index kept sorted on write; only free-text, clearance and state
        # filters scan, and secondaries (listed on request only) are few.
        candidates: list[CertificateDefinition] = (
            registry.with_name(name) if name is not None and sort != "expiry" else index.items()
        )
        if secondary:
            secondaries = [d for d in registry.all() if registry.primary_of(d) is not d]  # listed ones are in the index
            key = (lambda d: (d.not_after, d.thumbprint)) if sort == "expiry" else (
                lambda d: (d.name.casefold(), d.thumbprint))
            candidates = sorted([*candidates, *secondaries], key=key)
        filtering = name is not None or needle or wanted_clearance is not None or bool(state)
        filtered = [d for d in candidates if keep(d)] if filtering else candidates
        if server_thumbprint is not None and registry.get(server_thumbprint) is not None:
            # After a replacement the current server certificate is also a registered ClusterNode entry. It is
            # listed once, as the server's entry below (with what only the server knows: Generated, Subject), and
            # never counted in TotalResults, so that a page count never includes a row shown apart.
            filtered = [d for d in filtered if d.thumbprint != server_thumbprint]
        page = filtered[start : start + page_size]
        results = [wire.listed_entry(registry, d, metadata_only=metadata_only) for d in page]
        include_server = start == 0 and (name is None or name == SERVER_CERTIFICATE_NAME) and not (
            needle or wanted_clearance or state)
        if include_server and (entry := self.server_entry(metadata_only=metadata_only)) is not None:
            results.insert(0, entry)
        return {**result, "Results": results, "TotalResults": len(filtered)}


def _only_ca_certificates(infos: list[CertificateInfo]) -> str:
    """The refusal of a file with nothing to register: which certificate, why, and how to make the right one.

    The usual case is a certificate made with ``openssl req -x509``, which marks it CA:TRUE by default."""
    names = ", ".join(f"'{i.subject}'" for i in infos[:3]) + (f" and {len(infos) - 3} more" if len(infos) > 3 else "")
    return (f"The provided file holds only CA certificates; nothing to register: {names} "
            f"{'is a CA certificate' if len(infos) == 1 else 'are CA certificates'} (basicConstraints CA:TRUE, or "
            "the issuer of another certificate in the file), which issue certificates rather than identify a client. "
            "Upload the client certificate itself; to make one with openssl, add "
            "-addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=clientAuth to `openssl req -x509`, "
            "or let Roost generate one (roost certs generate).")
