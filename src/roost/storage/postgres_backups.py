"""Backups and restores of the PostgreSQL store: the ``Snapshot`` and ``Restorer`` of ``storage.base``, with the
rows in the same shapes as the SQLite store's, so one backup file format serves both (a backup taken on one restores
into the other).

The two protocols are blocking (backups run in worker threads, see ``roost.backups``) while asyncpg is async: each
snapshot or restorer owns one connection on a private event loop in a thread of its own, and every call waits for
its statement there. Nothing of it runs on the server's event loop, which keeps serving requests.

- A snapshot is one ``REPEATABLE READ READ ONLY`` transaction: a consistent view of the whole store however long
  the backup takes, while other nodes keep writing. Documents and attachment chunks are read through server-side
  cursors, a batch at a time: memory stays flat.
- A restore is one transaction from its first row to ``finish``: the rows go in under a staging key, and ``finish``
  moves them to the target with its database row and HiLo state, then commits. Anything before that commit (a bad
  file, a conflict, a killed process, a lost connection) leaves the store exactly as it was: PostgreSQL rolls the
  transaction back. Every node hears of the restored database when it commits (``db:`` notification).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg

from roost.errors import ServiceUnavailableError
from roost.storage.base import (
    RESTORE_STAGE_PREFIX,
    AttachmentChunk,
    DocumentRow,
    DuplicateDocumentError,
    JsonObject,
    fold,
    staged_document,
)
from roost.storage.postgres import OUTAGE as _POOL_OUTAGE
from roost.storage.postgres import unavailable

# This module's connection is its own (one per backup or restore, no pool, one operation at a time): asyncpg's
# "cannot switch to state ...; another operation is in progress" can then only mean that the connection broke
# under a running statement (its backend terminated), an outage like the others (seen in CI: a 500).
OUTAGE = (*_POOL_OUTAGE, asyncpg.exceptions.InternalClientError)

_T = TypeVar("_T")
_BATCH = 500  # rows per cursor fetch
_CONNECT_SECONDS = 10.0
_RESTORE_LOCK = 0x52535452  # the first key of the advisory lock a restore's finish takes (the second: the target)


class _Connection:
    """One asyncpg connection driven from blocking code: its own event loop in its own thread."""

    def __init__(self, url: str, application_name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=application_name, daemon=True)
        self._thread.start()
        try:
            self.db: asyncpg.Connection = self.run(
                asyncpg.connect(url, server_settings={"application_name": application_name}, timeout=_CONNECT_SECONDS))
        except BaseException:
            self._stop()
            raise

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
        except OUTAGE as exc:  # PostgreSQL restarting or unreachable: 503 with Retry-After, as for requests
            raise unavailable(exc) from exc

    def close(self) -> None:
        try:
            if not self.db.is_closed():
                self.run(self.db.close())
        except ServiceUnavailableError:
            pass  # the connection is gone already
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def rollback(self, transaction: Any) -> None:
        """Roll ``transaction`` back; on a connection that is gone PostgreSQL has rolled it back already."""
        if self.db.is_closed():
            return
        try:
            self.run(transaction.rollback())
        except (asyncpg.InterfaceError, ServiceUnavailableError):
            pass  # lost in between: the same outcome

    def rows(self, query: str, *args: Any) -> Iterator[asyncpg.Record]:
        """The rows of ``query`` through a server-side cursor (the caller's transaction must be open)."""

        async def open_cursor() -> Any:
            return await self.db.cursor(query, *args)

        cursor = self.run(open_cursor())
        while True:
            batch = self.run(cursor.fetch(_BATCH))
            if not batch:
                return
            yield from batch


_Cls = TypeVar("_Cls", bound=type)


def _outages_are_unavailable(cls: _Cls) -> _Cls:
    """Every public method (and the constructor): a lost connection, wherever asyncpg notices it (also in its
    synchronous checks, before any statement), is ServiceUnavailableError (503 with Retry-After), never a 500."""
    for name, method in list(vars(cls).items()):
        if (name.startswith("_") and name != "__init__") or not inspect.isfunction(method) \
                or inspect.isgeneratorfunction(method):  # the generators read through _Connection.run
            continue

        def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(function)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                try:
                    return function(*args, **kwargs)
                except OUTAGE as exc:
                    raise unavailable(exc) from exc

            return guarded

        setattr(cls, name, wrap(method))
    return cls


@_outages_are_unavailable
class PostgresSnapshot:
    """A consistent read-only view of the whole store, for one backup. Rows come out as stored (JSON text)."""

    def __init__(self, url: str) -> None:
        self._connection = _Connection(url, "roost backup snapshot")
        self._transaction = self._connection.db.transaction(isolation="repeatable_read", readonly=True)
        try:
            self._connection.run(self._transaction.start())
        except BaseException:
            self._connection.close()
            raise

    def close(self) -> None:
        try:
            self._connection.rollback(self._transaction)  # read-only: nothing to keep
        finally:
            self._connection.close()

    def databases(self) -> list[JsonObject]:
        rows = self._connection.run(self._connection.db.fetch(
            "SELECT name, database_id, created, last_etag, record::text FROM databases ORDER BY key"))
        return [{"Name": r[0], "DatabaseId": r[1], "Created": r[2], "LastEtag": int(r[3]), "Record": json.loads(r[4])}
                for r in rows]

    def documents(self, database: str) -> Iterator[DocumentRow]:
        for r in self._connection.rows(
                "SELECT id, collection, body, metadata, change_vector, etag, last_modified FROM documents "
                "WHERE db = $1 ORDER BY key", fold(database)):
            yield r[0], r[1], r[2], r[3], r[4], int(r[5]), r[6]

    def hilo(self, database: str) -> list[tuple[str, int]]:
        rows = self._connection.run(self._connection.db.fetch(
            "SELECT tag, max FROM hilo WHERE db = $1 ORDER BY tag", fold(database)))
        return [(r[0], int(r[1])) for r in rows]

    def attachment_chunks(self, database: str) -> Iterator[AttachmentChunk]:
        for r in self._connection.rows(
                "SELECT token, seq, data FROM attachment_chunks WHERE db = $1 ORDER BY token, seq", fold(database)):
            yield str(r[0]), int(r[1]), bytes(r[2])

    def certificates(self) -> list[JsonObject]:
        rows = self._connection.run(self._connection.db.fetch(
            "SELECT definition::text FROM certificates ORDER BY thumbprint"))
        return [json.loads(r[0]) for r in rows]


@_outages_are_unavailable
class PostgresRestorer:
    """Writes one restored database under a staging key inside one transaction; ``finish`` moves it to the target
    and commits, ``discard`` rolls everything back."""

    def __init__(self, url: str, channel: str, database_notification: str) -> None:
        # How storage.postgres tells every node that a database appeared (its channel and the payload's prefix).
        self._channel = channel
        self._database_notification = database_notification
        self._connection = _Connection(url, "roost backup restore")
        self._transaction: Any = None

    def _begin(self) -> None:
        if self._transaction is None:
            self._transaction = self._connection.db.transaction()
            self._connection.run(self._transaction.start())

    def close(self) -> None:
        try:
            self._discard()  # not finished: nothing of it stays
        finally:
            self._connection.close()

    def target_state(self, name: str) -> tuple[bool, int]:
        """(exists, document count) of the target database."""
        db = self._connection.db
        exists = self._connection.run(db.fetchval("SELECT 1 FROM databases WHERE key = $1", fold(name)))
        count = self._connection.run(db.fetchval("SELECT count(*) FROM documents WHERE db = $1", fold(name)))
        return exists is not None, int(count)

    def _insert(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        self._begin()
        try:
            self._connection.run(self._connection.db.executemany(statement, rows))
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateDocumentError(str(exc)) from exc

    def insert_documents(self, stage: str, rows: list[DocumentRow]) -> None:
        """Add rows under the staging key ``stage``; a duplicate id raises DuplicateDocumentError (the caller then
        discards, which rolls the whole restore back)."""
        assert stage.startswith(RESTORE_STAGE_PREFIX)
        self._insert(
            "INSERT INTO documents (db, key, id, collection, collection_key, body, metadata, change_vector, etag, "
            "last_modified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [staged_document(stage, r) for r in rows])

    def insert_attachment_chunks(self, stage: str, rows: list[AttachmentChunk]) -> None:
        assert stage.startswith(RESTORE_STAGE_PREFIX)
        self._insert("INSERT INTO attachment_chunks (db, token, seq, data) VALUES ($1, $2, $3, $4)",
                     [(stage, *r) for r in rows])

    def finish(self, name: str, stage: str, database_id: str, created: str, last_etag: int, record: JsonObject,
               hilo: list[tuple[str, int]]) -> int:
        """The staged rows become ``name``'s, with its database row and hilo, and the transaction commits. Returns
        how many documents the target held already (then nothing is committed: the caller discards)."""
        self._begin()
        db_key = fold(name)
        db, run = self._connection.db, self._connection.run
        # Two restores into one new name on two nodes: one at a time (the second then finds the documents and is
        # refused with the count, as a restore into a database that holds documents is).
        run(db.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _RESTORE_LOCK, db_key))
        # Lock the target's row (where a database's writers on every node queue, see storage.postgres) before
        # counting, so no node can add a document between the count and the commit.
        run(db.execute("SELECT 1 FROM databases WHERE key = $1 FOR UPDATE", db_key))
        held = int(run(db.fetchval("SELECT count(*) FROM documents WHERE db = $1", db_key)))
        if held:
            return held
        run(db.execute("UPDATE documents SET db = $1 WHERE db = $2", db_key, stage))
        run(db.execute("DELETE FROM attachment_chunks WHERE db = $1", db_key))
        run(db.execute("UPDATE attachment_chunks SET db = $1 WHERE db = $2", db_key, stage))
        run(db.execute(
            "INSERT INTO databases (key, name, database_id, created, last_etag, record) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (key) DO UPDATE SET "
            "database_id = excluded.database_id, last_etag = excluded.last_etag, record = excluded.record",
            db_key, name, database_id, created, last_etag, json.dumps(record)))
        run(db.execute("DELETE FROM hilo WHERE db = $1", db_key))
        run(db.executemany("INSERT INTO hilo (db, tag, max) VALUES ($1, $2, $3)",
                           [(db_key, fold(tag), high) for tag, high in hilo]))
        run(db.execute("SELECT pg_notify($1, $2)", self._channel, self._database_notification + db_key))
        run(self._transaction.commit())
        self._transaction = None
        return 0

    def discard(self, stage: str) -> None:
        """Roll back everything this restore wrote (the target was never touched)."""
        assert stage.startswith(RESTORE_STAGE_PREFIX)
        self._discard()

    def _discard(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            self._connection.rollback(transaction)

    def discard_abandoned(self) -> int:
        """Staged rows outside a transaction cannot exist here (a restore commits only in ``finish``, which moves
        them); kept for the protocol, and for rows a store migrated from elsewhere might hold."""
        db, run = self._connection.db, self._connection.run
        bounds = (RESTORE_STAGE_PREFIX, RESTORE_STAGE_PREFIX[:-1] + chr(ord("/") + 1))
        run(db.execute("DELETE FROM attachment_chunks WHERE db >= $1 AND db < $2", *bounds))
        status = run(db.execute("DELETE FROM documents WHERE db >= $1 AND db < $2", *bounds))
        return int(str(status).rsplit(" ", 1)[-1])
