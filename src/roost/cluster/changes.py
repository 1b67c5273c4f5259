"""What another worker process changed in the shared SQLite file, seen on this worker's very next request.

SQLite has no notifications: every write of certificates, databases or settings bumps a counter in the same
transaction (``roost.storage.sqlite``), and every request asks ``PRAGMA data_version`` (no I/O unless another
process committed since) before it is identified. A moved counter makes this worker reload what it holds in memory
before the request goes on: the certificate registry, the list of databases, the IP allowlist (at accept(), where
it is enforced). 2FA state needs nothing: it is read from storage on every use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from roost.documents.store import DocumentStore
from roost.security.allowlist import AllowedAddresses
from roost.security.registry import Registry
from roost.storage.base import Storage
from roost.storage.sqlite import CERTIFICATES, DATABASES, SETTING, SqliteStorage

ALLOWLIST = SETTING + AllowedAddresses.SETTING
_REQUEST_TOPICS = frozenset({CERTIFICATES, DATABASES})


class SqliteChanges:
    """The topics other processes changed and this one has not caught up with yet."""

    def __init__(self, storage: SqliteStorage) -> None:
        self._storage = storage
        self._pending: set[str] = set()

    def _poll(self) -> None:
        moved = self._storage.poll_changes()
        if moved:
            self._pending |= moved

    def pending(self) -> bool:
        """For every request (the registry's ``stale``): a pragma, and nothing else almost always."""
        self._poll()
        return not self._pending.isdisjoint(_REQUEST_TOPICS)

    def take(self) -> frozenset[str]:
        taken = frozenset(self._pending & _REQUEST_TOPICS)
        self._pending -= taken
        return taken

    def give_back(self, topics: frozenset[str]) -> None:
        self._pending |= topics

    def take_allowlist(self) -> bool:
        self._poll()
        if ALLOWLIST in self._pending:
            self._pending.discard(ALLOWLIST)
            return True
        return False


def follow_local_changes(storage: Storage, registry: Registry, documents: DocumentStore,
                         allowed_addresses: AllowedAddresses, configured_ips: Iterable[str],
                         ) -> Callable[[], None] | None:
    """Wire the registry and the database list to follow other processes sharing an SQLite store; returns what the
    listening socket calls before each accept() (the allowlist), or None for storage with notifications."""
    if not isinstance(storage, SqliteStorage):
        return None
    changes = SqliteChanges(storage)
    registry.follow(changes)
    configured = list(configured_ips)

    async def reload(topics: frozenset[str]) -> None:
        if DATABASES in topics:
            await documents.load()

    registry.on_local_change.append(reload)

    def before_accept() -> None:
        if changes.take_allowlist():
            stored = storage.get_setting_now(AllowedAddresses.SETTING)
            allowed_addresses.allowlist.replace(stored if stored is not None else configured)

    return before_accept
