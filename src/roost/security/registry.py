"""Certificate definitions: storage is the truth, an in-memory index serves every request.

A write commits to storage first and then updates the index, so a request never sees a registration that
storage does not hold. Last-used times are kept in memory and flushed to storage in batches.

When several nodes share the storage, the registry is the storage's ``CertificateWatcher``: it re-reads the
certificates another node changed, and after losing the notification channel it is ``stale`` until it has
reloaded everything; the request path calls ``refresh()`` first, so no request is served from a stale index
(fail closed).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import datetime as dt
import gc
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from roost import clock
from roost.errors import BadRequestError, ServiceUnavailableError
from roost.pki.inspect import CertificateInfo
from roost.storage.base import JsonObject, Storage
from roost.types import Access, Clearance, Thumbprint

log = logging.getLogger(__name__)

LAST_USED_FLUSH_SECONDS = 10.0
CATCH_UP_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class CertificateDefinition:
    """One registered certificate, RavenDB's CertificateDefinition plus what Roost needs to answer fast."""

    name: str
    thumbprint: Thumbprint
    clearance: Clearance
    permissions: dict[str, Access]
    not_before: dt.datetime
    not_after: dt.datetime
    pinning_hash: str
    certificate_der: bytes
    subject: str
    collection_primary: str = ""
    collection_secondaries: tuple[str, ...] = ()
    disabled: bool = False
    two_factor_key: str | None = None
    source: str = "uploaded"  # generated | uploaded | implicit | server
    # A successor made by POST /certificates/renew: the certificate it renewed, and when (the predecessor is
    # retired once unused for Settings.renewed_certificate_retire_days; a predecessor has one successor in use).
    renewal_of: str = ""
    renewed_at: dt.datetime | None = None
    # Derived once: database names folded for RavenDB's case-insensitive permission lookup.
    _access: dict[str, Access] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_access", {db.casefold(): a for db, a in self.permissions.items()})

    @classmethod
    def of(cls, info: CertificateInfo, name: str, clearance: Clearance, permissions: dict[str, Access], *,
           two_factor_key: str | None, source: str, primary: str = "",
           secondaries: tuple[str, ...] = ()) -> CertificateDefinition:
        """The definition registering the certificate ``info`` describes."""
        return cls(
            name=name, thumbprint=Thumbprint(info.thumbprint), clearance=clearance, permissions=permissions,
            not_before=info.not_before, not_after=info.not_after, pinning_hash=info.pinning_hash,
            certificate_der=info.der, subject=info.subject, collection_primary=primary,
            collection_secondaries=secondaries, two_factor_key=two_factor_key, source=source,
        )

    def access_to(self, database: str) -> Access | None:
        return self._access.get(database.casefold())

    @property
    def display_name(self) -> str:
        """RavenDB's '{subject} (Thumbprint: X)' form used in every refusal message."""
        return f"{self.subject} (Thumbprint: {self.thumbprint})"

    @property
    def has_two_factor(self) -> bool:
        return bool(self.two_factor_key)

    def _public_fields(self) -> JsonObject:
        """What storage and the wire share: RavenDB's CertificateDefinition without the certificate itself."""
        return {
            "Name": self.name,
            "Thumbprint": self.thumbprint,
            "SecurityClearance": self.clearance.value,
            "Permissions": {db: a.value for db, a in self.permissions.items()},
            "NotBefore": clock.wire_date(self.not_before),
            "NotAfter": clock.wire_date(self.not_after),
            "PublicKeyPinningHash": self.pinning_hash,
            "CollectionPrimaryKey": self.collection_primary,
            "CollectionSecondaryKeys": list(self.collection_secondaries),
            "Disabled": self.disabled,
        }

    def to_storage(self) -> JsonObject:
        # The 2FA key belongs here (the server must verify codes); passphrases and private keys never do.
        return {
            **self._public_fields(),
            "Certificate": base64.b64encode(self.certificate_der).decode(),
            "Subject": self.subject,
            "TwoFactorAuthenticationKey": self.two_factor_key,
            "Source": self.source,
            **({"RenewalOf": self.renewal_of, "RenewedAt": clock.wire_date(self.renewed_at)}
               if self.renewal_of and self.renewed_at else {}),
        }

    @classmethod
    def from_storage(cls, data: JsonObject) -> CertificateDefinition:
        return cls(
            name=data["Name"],
            thumbprint=Thumbprint(data["Thumbprint"]),
            clearance=Clearance(data["SecurityClearance"]),
            permissions={db: Access(a) for db, a in data.get("Permissions", {}).items()},
            not_before=clock.parse_wire_date(data["NotBefore"]),
            not_after=clock.parse_wire_date(data["NotAfter"]),
            pinning_hash=data["PublicKeyPinningHash"],
            certificate_der=base64.b64decode(data["Certificate"]),
            subject=data.get("Subject") or f"CN={data['Name']}",
            collection_primary=data.get("CollectionPrimaryKey") or "",
            collection_secondaries=tuple(data.get("CollectionSecondaryKeys") or ()),
            disabled=bool(data.get("Disabled")),
            two_factor_key=data.get("TwoFactorAuthenticationKey") or None,
            source=data.get("Source") or "uploaded",
            renewal_of=data.get("RenewalOf") or "",
            renewed_at=clock.parse_wire_date(data["RenewedAt"]) if data.get("RenewedAt") else None,
        )

    def to_wire(self, *, metadata_only: bool = False, last_used: dt.datetime | None = None) -> JsonObject:
        """The JSON RavenDB's clients parse (reference section 1.1 and the client wire doc, section 3.3).

        Never includes the 2FA key: only whether there is one.
        """
        wire: JsonObject = {
            **self._public_fields(),
            "HasTwoFactor": self.has_two_factor,
            "LastUsedDate": clock.wire_date(last_used) if last_used else None,
        }
        if not metadata_only:
            wire["Certificate"] = base64.b64encode(self.certificate_der).decode()
        return wire


class SortedIndex:
    """Definitions kept sorted by a key on every write (bisect), so a page of the list is a slice, whatever the
    size of the registry: no re-sort after a write (bench/ figure 6)."""

    def __init__(self, key: Callable[[CertificateDefinition], tuple[Any, ...]]) -> None:
        self._key = key
        self._keys: list[tuple[Any, ...]] = []
        self._items: list[CertificateDefinition] = []

    def rebuild(self, definitions: Iterable[CertificateDefinition]) -> None:
        pairs = sorted(((self._key(d), d) for d in definitions), key=lambda pair: pair[0])
        self._keys = [k for k, _ in pairs]
        self._items = [d for _, d in pairs]

    def add(self, definition: CertificateDefinition) -> None:
        key = self._key(definition)
        at = bisect.bisect_left(self._keys, key)
        self._keys.insert(at, key)
        self._items.insert(at, definition)

    def remove(self, definition: CertificateDefinition) -> None:
        key = self._key(definition)
        at = bisect.bisect_left(self._keys, key)
        if at < len(self._keys) and self._keys[at] == key:
            del self._keys[at]
            del self._items[at]

    def range_of(self, low: tuple[Any, ...], high: tuple[Any, ...]) -> list[CertificateDefinition]:
        """Definitions whose key is in [low, high)."""
        return self._items[bisect.bisect_left(self._keys, low) : bisect.bisect_left(self._keys, high)]

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[CertificateDefinition]:
        return self._items


def _listed(d: CertificateDefinition, index: dict[str, CertificateDefinition]) -> bool:
    """What the certificate list shows: primaries and standalone certificates, and secondaries whose primary is
    gone or no longer lists them (data written before collections were kept consistent), so that an
    administrator sees them and can delete them."""
    if not d.collection_primary:
        return True
    primary = index.get(d.collection_primary)
    return primary is None or d.thumbprint not in primary.collection_secondaries


def _name_key(d: CertificateDefinition) -> tuple[str, str]:
    return (d.name.casefold(), d.thumbprint)


def _expiry_key(d: CertificateDefinition) -> tuple[dt.datetime, str]:
    return (d.not_after, d.thumbprint)


@dataclass(frozen=True, slots=True)
class Page:
    results: list[CertificateDefinition]
    total: int


CERTIFICATES_TOPIC = "certificates"  # roost.storage.sqlite.CERTIFICATES


class LocalChanges(Protocol):
    """Changes other processes on this machine committed to the same embedded store (``roost.cluster.changes``):
    checked on every request, cheaply, since they come with no notification."""

    def pending(self) -> bool: ...
    def take(self) -> frozenset[str]: ...
    def give_back(self, topics: frozenset[str]) -> None: ...


class Registry:
    """The registered certificates of this server (or cluster, when storage is shared)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._by_thumbprint: dict[str, CertificateDefinition] = {}
        self._by_pinning_hash: dict[str, set[str]] = {}
        self._last_used: dict[str, dt.datetime] = {}
        self._dirty_last_used: dict[str, dt.datetime] = {}
        # What the certificate list shows (see _listed): primaries, standalone certificates and orphaned secondaries.
        self.by_name = SortedIndex(_name_key)
        self.by_expiry = SortedIndex(_expiry_key)
        self._flusher: asyncio.Task[None] | None = None
        self.generation = 0
        # Serializes every index change that follows a storage read, so an older read never overwrites a newer one.
        self._lock = asyncio.Lock()
        self._listening = True  # the notification channel is up (always, for storage without one)
        self._stale = False
        self._behind = False  # a notification arrived and is being read back from storage
        self._caught_up = asyncio.Event()
        self._caught_up.set()
        # Called with the definitions another node wrote (e.g. to trust uploaded certificates in TLS).
        self.on_external_change: list[Callable[[list[CertificateDefinition]], Awaitable[None]]] = []
        self._local: LocalChanges | None = None
        # Called with the topics another worker process changed (see follow), before the request goes on.
        self.on_local_change: list[Callable[[frozenset[str]], Awaitable[None]]] = []

    async def load(self) -> None:
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        index: dict[str, CertificateDefinition] = {}
        pins: dict[str, set[str]] = {}
        last_used: dict[str, dt.datetime] = {}
        # Loading creates millions of small objects that all live on: the cyclic collector would run many full
        # passes over them for nothing (seconds at 100,000 certificates).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for data in await self._storage.load_certificates():
                definition = CertificateDefinition.from_storage(data)
                index[definition.thumbprint] = definition
                pins.setdefault(definition.pinning_hash, set()).add(definition.thumbprint)
                if data.get("LastUsedDate"):
                    last_used[definition.thumbprint] = clock.parse_wire_date(data["LastUsedDate"])
            for thumbprint, when in self._last_used.items():  # a reload keeps the times not flushed yet
                if thumbprint in index and (thumbprint not in last_used or last_used[thumbprint] < when):
                    last_used[thumbprint] = when
            self._by_thumbprint, self._by_pinning_hash, self._last_used = index, pins, last_used
            primaries = [d for d in index.values() if _listed(d, index)]
            self.by_name.rebuild(primaries)
            self.by_expiry.rebuild(primaries)
        finally:
            if gc_was_enabled:
                gc.enable()
            gc.freeze()  # the registry is long-lived: keep it out of every later collection
        self.generation += 1
        if self._listening:
            self._stale = False

    # Cluster: changes made by other nodes (see roost.storage.base.CertificateWatcher) -------------------------

    async def watch(self) -> None:
        """Follow the changes other nodes make to shared storage; call before ``load`` so that none is missed."""
        await self._storage.watch_certificates(self)

    def follow(self, local: LocalChanges) -> None:
        """Also follow the changes of other processes sharing an embedded store (workers of one machine)."""
        self._local = local

    @property
    def stale(self) -> bool:
        """True while a notified change is being read, after the notification channel was lost until
        everything has been reloaded, and when another worker process changed certificates or databases."""
        return self._stale or self._behind or (self._local is not None and self._local.pending())

    async def catch_up(self) -> None:
        """Read what other workers and nodes changed, when anything is known to have changed (the request path's
        check, for a service about to decide on the registry's content)."""
        if self.stale:
            await self.refresh()

    async def refresh(self) -> None:
        """Wait for notified changes; reload everything if stale; refuse (503) while that cannot be done."""
        if self._local is not None and self._local.pending():
            topics = self._local.take()
            if CERTIFICATES_TOPIC in topics:
                self._stale = True  # reloaded below; stays stale (and refused) until that succeeds
            try:
                for hook in self.on_local_change:
                    await hook(topics)
            except Exception as exc:
                self._local.give_back(topics)
                log.exception("Could not follow another worker's changes")
                raise ServiceUnavailableError(
                    "This server could not read the changes another worker made. Retry in a few seconds."
                ) from exc
        if self._behind:
            try:
                await asyncio.wait_for(self._caught_up.wait(), CATCH_UP_SECONDS)
            except TimeoutError:
                raise ServiceUnavailableError(
                    "This node is still reading certificate changes from the cluster storage. Retry in a few seconds."
                ) from None
        if not self._stale:
            return
        if not self._listening:
            raise ServiceUnavailableError(
                "This node lost the certificate change notifications of the cluster storage and is reconnecting. "
                "Retry in a few seconds."
            )
        try:
            await self.load()
        except Exception as exc:
            log.exception("Could not reload the certificate registry")
            raise ServiceUnavailableError(
                "This node could not reload the certificates from the cluster storage. Retry in a few seconds."
            ) from exc

    async def certificates_changed(self, thumbprints: list[str] | None) -> None:
        if thumbprints is None:
            await self.load()
            learned = list(self._by_thumbprint.values())
        else:
            async with self._lock:
                stored = await self._storage.get_certificates(thumbprints)
                found = [CertificateDefinition.from_storage(d) for d in stored]
                present = {d.thumbprint for d in found}
                self.apply_external(found)
                self._remove([t for t in thumbprints if t not in present])
            learned = found
        for hook in self.on_external_change:
            await hook(learned)

    def certificates_behind(self) -> None:
        self._behind = True
        self._caught_up.clear()

    def certificates_caught_up(self) -> None:
        self._behind = False
        self._caught_up.set()

    async def certificates_channel_lost(self) -> None:
        self._listening = False
        self._stale = True  # set before releasing the waiters below, so that they reload or refuse
        self.certificates_caught_up()
        log.warning("Certificate change notifications lost: refusing requests until the registry is reloaded")

    async def certificates_channel_resumed(self) -> None:
        self._listening = True
        try:
            await self.certificates_changed(None)
        except Exception:
            log.exception("Could not reload the certificate registry; the next request will try again")
        else:
            log.info("Certificate change notifications resumed; registry reloaded")

    def __len__(self) -> int:
        return len(self._by_thumbprint)

    def get(self, thumbprint: str) -> CertificateDefinition | None:
        """O(1); thumbprints are matched case-insensitively as RavenDB does."""
        found = self._by_thumbprint.get(thumbprint)
        if found is None and not thumbprint.isupper():
            found = self._by_thumbprint.get(thumbprint.upper())
        return found

    def by_pinning_hash(self, pinning_hash: str) -> list[CertificateDefinition]:
        return [self._by_thumbprint[t] for t in self._by_pinning_hash.get(pinning_hash, ())]

    def primary_of(self, definition: CertificateDefinition) -> CertificateDefinition:
        """The primary of ``definition``'s collection; itself when it is one, or when its primary is gone or no
        longer lists it (data written before collections were kept consistent): such an entry stands alone."""
        if definition.collection_primary:
            primary = self._by_thumbprint.get(definition.collection_primary)
            if primary is not None and definition.thumbprint in primary.collection_secondaries:
                return primary
        return definition

    def members_of(self, primary: CertificateDefinition) -> list[CertificateDefinition]:
        """``primary`` and the registered secondaries that name it as their primary."""
        secondaries = (self._by_thumbprint.get(t) for t in primary.collection_secondaries)
        return [primary, *(d for d in secondaries if d is not None and d.collection_primary == primary.thumbprint)]

    def detached(self, thumbprints: set[str]) -> list[CertificateDefinition]:
        """The definitions to rewrite so that ``thumbprints`` (about to be registered again) leave their earlier
        collections: a secondary leaves its primary's list; the rest of a primary's collection keeps together
        under its first remaining member."""
        changed: dict[str, CertificateDefinition] = {}
        for thumbprint in thumbprints:
            existing = self._by_thumbprint.get(thumbprint)
            if existing is None:
                continue
            primary = self.primary_of(existing)
            if primary is existing and not existing.collection_secondaries:
                continue
            primary = changed.get(primary.thumbprint, primary)
            rest = [d for d in self.members_of(primary) if d.thumbprint not in thumbprints]
            if primary.thumbprint not in thumbprints:
                changed[primary.thumbprint] = replace(
                    primary, collection_secondaries=tuple(d.thumbprint for d in rest[1:]))
            elif rest:
                head, *tail = rest
                changed[head.thumbprint] = replace(head, collection_primary="",
                                                   collection_secondaries=tuple(d.thumbprint for d in tail))
                for member in tail:
                    changed[member.thumbprint] = replace(member, collection_primary=head.thumbprint)
        return list(changed.values())

    def last_used(self, thumbprint: str) -> dt.datetime | None:
        return self._last_used.get(thumbprint)

    def all(self) -> Iterable[CertificateDefinition]:
        return self._by_thumbprint.values()

    def with_name(self, name: str) -> list[CertificateDefinition]:
        """Primaries whose name is exactly ``name`` (a bisect range, then the exact comparison)."""
        folded = name.casefold()
        return [d for d in self.by_name.range_of((folded, ""), (folded, "\uffff")) if d.name == name]

    async def put(self, definitions: list[CertificateDefinition]) -> None:
        stored = []
        for definition in definitions:
            data = definition.to_storage()
            # An edit rewrites the stored definition: keep the last-used time it already had.
            if (last_used := self._last_used.get(definition.thumbprint)) is not None:
                data["LastUsedDate"] = clock.wire_date(last_used)
            stored.append(data)
        async with self._lock:
            await self._storage.put_certificates(stored)
            self.apply_external(definitions)

    async def delete(self, thumbprints: list[str]) -> None:
        async with self._lock:
            await self._storage.delete_certificates(thumbprints)
            self._remove(thumbprints)

    def _remove(self, thumbprints: list[str]) -> None:
        for thumbprint in thumbprints:
            old = self._by_thumbprint.pop(thumbprint, None)
            if old is not None:
                self._unindex(old)
            self._last_used.pop(thumbprint, None)
            self._dirty_last_used.pop(thumbprint, None)
        self._changed()

    def without_database(self, database: str) -> list[CertificateDefinition]:
        """The definitions that mention ``database``, with it removed (RavenDB PR #13351)."""
        key = database.casefold()
        return [
            replace(d, permissions={db: a for db, a in d.permissions.items() if db.casefold() != key})
            for d in self._by_thumbprint.values()
            if d.access_to(database) is not None
        ]

    def apply_external(self, definitions: list[CertificateDefinition]) -> None:
        """Index definitions that storage already holds (written in the same transaction as something else)."""
        for definition in definitions:
            old = self._by_thumbprint.get(definition.thumbprint)
            if old is not None:
                self._unindex(old)
            self._by_thumbprint[definition.thumbprint] = definition
            self._by_pinning_hash.setdefault(definition.pinning_hash, set()).add(definition.thumbprint)
        # Listed once the whole batch is in (a secondary may come before its primary).
        for thumbprint in dict.fromkeys(d.thumbprint for d in definitions):
            definition = self._by_thumbprint[thumbprint]
            if _listed(definition, self._by_thumbprint):
                self.by_name.add(definition)
                self.by_expiry.add(definition)
        self._changed()

    def _unindex(self, old: CertificateDefinition) -> None:
        self._by_pinning_hash.get(old.pinning_hash, set()).discard(old.thumbprint)
        # Unconditionally: a listed secondary (see _load) goes too; removing an unlisted one is a no-op.
        self.by_name.remove(old)
        self.by_expiry.remove(old)

    def _changed(self) -> None:
        self.generation += 1

    # Last used ----------------------------------------------------------------------------------------------

    def touch(self, thumbprint: str, when: dt.datetime) -> None:
        """Called on every authenticated request: a dict write, nothing else."""
        self._last_used[thumbprint] = when
        self._dirty_last_used[thumbprint] = when

    async def flush_last_used(self) -> None:
        if not self._dirty_last_used:
            return
        batch, self._dirty_last_used = self._dirty_last_used, {}
        try:
            await self._storage.record_last_used({t: clock.wire_date(w) for t, w in batch.items()})
        except Exception:
            log.exception("Could not record last-used times; will retry")
            batch.update(self._dirty_last_used)
            self._dirty_last_used = batch

    def start_flusher(self) -> None:
        async def run() -> None:
            while True:
                await asyncio.sleep(LAST_USED_FLUSH_SECONDS)
                await self.flush_last_used()

        self._flusher = asyncio.get_running_loop().create_task(run())

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush_last_used()


def parse_clearance(value: Any) -> Clearance:
    if not isinstance(value, str):
        raise BadRequestError("SecurityClearance is a required field in the certificate definition")
    aliases = {"user": Clearance.VALID_USER, "clusteradmin": Clearance.CLUSTER_ADMIN,
               "operator": Clearance.OPERATOR, "validuser": Clearance.VALID_USER,
               "clusternode": Clearance.CLUSTER_NODE}
    found = aliases.get(value.replace(" ", "").casefold())
    if found is None:
        raise BadRequestError(
            f"Invalid SecurityClearance '{value}'. Use one of: ClusterAdmin, Operator, ValidUser."
        )
    return found
