"""What another worker process changed in the shared SQLite file, seen on this worker's very next request.

SQLite has no notifications: every write of certificates, databases or settings bumps a counter in the same
transaction (``roost.storage.sqlite``), and every request asks ``PRAGMA data_version`` (no I/O unless another
process committed since) before it is identified. A moved counter makes this worker reload what it holds in memory
before the request goes on: the certificate registry, the list of databases, the IP allowlist (at accept(), where
it is enforced). 2FA state needs nothing: it is read from storage on every use.

The server certificate lives in files, not in storage: before accept() a worker also compares the identity
(inode, mtime) of the files that name it, and when another worker renewed or replaced it, presents the new one
from the next handshake on (the worker that installed it has registered it already).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from roost.backups.schedule import Schedules
from roost.documents.store import DocumentStore
from roost.pki import datadir
from roost.security import server_certificate
from roost.security.allowlist import AllowedAddresses
from roost.security.identity import Identifier
from roost.security.registry import Registry
from roost.security.server_certificate import ServerCertificates
from roost.security.trust import retired_server_certificates
from roost.settings import Settings
from roost.storage.base import Storage
from roost.storage.sqlite import CERTIFICATES, DATABASES, SETTING, SqliteStorage

ALLOWLIST = SETTING + AllowedAddresses.SETTING
SCHEDULES_POLL_SECONDS = 1.0
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

    def take_topic(self, topic: str) -> bool:
        self._poll()
        if topic in self._pending:
            self._pending.discard(topic)
            return True
        return False


class Following:
    """What a worker runs before each accept() to follow the others: the allowlist (SQLite) and the server
    certificate (any storage)."""

    def __init__(self, before_accept_steps: list[Callable[[], None]]) -> None:
        self._steps = before_accept_steps

    def before_accept(self) -> None:
        for step in self._steps:
            step()


async def follow_schedules(schedules: Schedules) -> None:
    """In the worker that runs the scheduled backups: take the schedules another worker changed (one indexed read
    a second; ``reload`` keeps the timers of unchanged schedules)."""
    while True:
        await asyncio.sleep(SCHEDULES_POLL_SECONDS)
        try:
            await schedules.reload()
        except Exception:
            log.exception("Could not reload the backup schedules; will retry")


log = logging.getLogger(__name__)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


class ServerCertificateFollower:
    """Presents the server certificate another worker installed (refresh, replace-cluster-cert, the renewal)."""

    def __init__(self, settings: Settings, certificates: ServerCertificates, identifier: Identifier,
                 lock: asyncio.Lock) -> None:
        self._settings = settings
        self._lock = lock  # held while this process itself renews or replaces (and then installs) it
        self._certificates = certificates
        self._identifier = identifier
        self._paths = [settings.certificates_dir / name
                       for name in (datadir.ACTIVE_POINTER, "server.crt", "server.key")]
        self._seen = self._identities()

    def _identities(self) -> list[tuple[int, int] | None]:
        return [_file_identity(path) for path in self._paths]

    def check(self) -> None:
        """Two or three stat() calls; loads the certificate only when one of its files changed."""
        now = self._identities()
        if now == self._seen or self._lock.locked():
            return  # unchanged, or this process is installing one itself: look again at the next accept()
        certificates = self._certificates
        if certificates.tls is None or certificates.current is None or certificates.authority is None:
            return
        try:
            chosen, _ = server_certificate.choose(self._settings, certificates.authority, [])
            if chosen.info.thumbprint != certificates.current.info.thumbprint:
                certificates.tls.replace_certificate(chosen.cert_path, chosen.key_path, chosen.key_password)
                certificates.tls.add_anchors([i.der for i in chosen.chain])
                certificates.current = chosen
                self._identifier.set_server_certificates(
                    [chosen.info, *retired_server_certificates(self._settings.certificates_dir)])
                log.info("Presenting the server certificate %s that another worker installed",
                         chosen.info.thumbprint)
        except Exception:
            # Caught half-written (a key renamed before its certificate): keep the old one, look again next time.
            log.warning("Could not load the server certificate another worker is installing; will retry",
                        exc_info=True)
            return
        self._seen = now


def follow_local_changes(storage: Storage, registry: Registry, documents: DocumentStore,
                         allowed_addresses: AllowedAddresses, configured_ips: Iterable[str],
                         server_follower: ServerCertificateFollower | None = None,
                         ) -> Following | None:
    """Wire the registry and the database list to follow other processes sharing an SQLite store (storage with
    notifications needs nothing of this); returns what the listening socket runs before each accept()."""
    server_steps = [server_follower.check] if server_follower is not None else []
    if not isinstance(storage, SqliteStorage):
        return Following(server_steps) if server_steps else None
    changes = SqliteChanges(storage)
    registry.follow(changes)
    configured = list(configured_ips)

    async def reload(topics: frozenset[str]) -> None:
        if DATABASES in topics:
            await documents.load()

    registry.on_local_change.append(reload)

    def allowlist() -> None:
        if changes.take_topic(ALLOWLIST):
            stored = storage.get_setting_now(AllowedAddresses.SETTING)
            allowed_addresses.allowlist.replace(stored if stored is not None else configured)

    return Following([*server_steps, allowlist])
