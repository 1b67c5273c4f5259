"""PostgreSQL storage: several Roost nodes share one database (``--storage_url=postgresql://...``).

Same contract as the embedded SQLite store (``tests/test_storage.py`` runs on both). Differences that matter:

- Writes to one database's documents serialize on that database's row (``SELECT ... FOR UPDATE``), which is
  where the etag counter lives: etags increase without gaps or duplicates whichever node writes.
- HiLo ranges come from one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: atomic, never overlapping.
- Every certificate write sends ``NOTIFY roost_certificates`` in its own transaction, so it is delivered to the
  other nodes exactly when it commits; ``watch_certificates`` listens on a dedicated connection and reports a
  lost channel so that the registry can fail closed (see ``roost.security.registry``).
- Document bodies are stored as text, not JSONB, so that a document comes back with its keys in the order it was
  written; certificate definitions are JSONB (``record_last_used`` edits one key in place).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import asyncpg

if TYPE_CHECKING:
    from roost.storage.postgres_backups import PostgresRestorer, PostgresSnapshot
from roost.errors import ConfigurationError, ServiceUnavailableError
from roost.storage.base import (
    HILO_COLLECTION,
    BatchCommand,
    BatchResult,
    CertificateWatcher,
    ChangeVectorMismatch,
    CountersCommand,
    DatabaseRow,
    InvalidAttachment,
    InvalidCounterOperation,
    JsonObject,
    NodeRow,
    PutCommand,
    Snapshotting,
    Storage,
    StoredDocument,
    TwoFactorChange,
    apply_counters,
    attachment_tokens,
    collection_key,
    document_from_row,
    fold,
    hilo_document_id,
    hilo_max,
    next_hilo_body,
    with_attachment,
    with_server_metadata_of,
    without_attachment,
)

log = logging.getLogger(__name__)

CHANNEL = "roost_certificates"
APPLICATION_NAME = "roost"  # shown in pg_stat_activity
# Payload of a notification that means "reload everything" (a batch too large for one 8000-byte payload).
_ALL = "*"
_NOTIFY_PAYLOAD_LIMIT = 7000
# Prefix of the token a writer sends after its changes and waits to hear back (see PostgresStorage._notify).
_ECHO = "echo:"
# Prefix of a database's creation or deletion (followed by its folded name); thumbprints never hold a ":".
_DATABASE = "db:"
_ECHO_SECONDS = 2.0
_LEASE = "lease:"  # settings keys of the leases (see Storage.take_lease)
# Any fixed number: only Roost's schema creation takes this advisory lock.
_SCHEMA_LOCK = 0x526F6F7374
# Waits between attempts while PostgreSQL does not answer (a lost connection alone is retried at once).
_RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
_CONNECT_SECONDS = 5.0  # a listener connection that PostgreSQL does not accept by then counts as a failure
# The first key of the advisory locks that serialize two-factor updates (the second is the entry's hashtext).
_TWO_FACTOR_LOCK = 0x32464121

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    thumbprint TEXT PRIMARY KEY,
    definition JSONB NOT NULL
);
CREATE TABLE IF NOT EXISTS databases (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    database_id TEXT NOT NULL,
    created TEXT NOT NULL,
    last_etag BIGINT NOT NULL DEFAULT 0,
    record JSONB NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS documents (
    db TEXT NOT NULL,
    key TEXT NOT NULL,
    id TEXT NOT NULL,
    collection TEXT,
    body TEXT NOT NULL,
    metadata TEXT NOT NULL,
    change_vector TEXT NOT NULL,
    etag BIGINT NOT NULL,
    last_modified TEXT NOT NULL,
    -- storage.base.collection_key(collection), last as a migrated table has it: see _migrate_collection_key
    collection_key TEXT,
    PRIMARY KEY (db, key)
);
CREATE INDEX IF NOT EXISTS documents_by_etag ON documents (db, etag);
CREATE TABLE IF NOT EXISTS hilo (
    db TEXT NOT NULL,
    tag TEXT NOT NULL,
    max BIGINT NOT NULL,
    PRIMARY KEY (db, tag)
);
CREATE TABLE IF NOT EXISTS attachment_chunks (
    db TEXT NOT NULL,
    token TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (db, token, seq)
);
CREATE TABLE IF NOT EXISTS two_factor (
    thumbprint TEXT PRIMARY KEY,
    state JSONB NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value JSONB NOT NULL
);
"""

# The nodes of a cluster (roost.cluster.nodes); kept apart from _SCHEMA, created in the same locked transaction.
_NODES_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    tag TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    url TEXT NOT NULL,
    certificate TEXT NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS nodes_version;
"""
# Prefix of a cluster topic (roost.cluster.nodes: node changes, revocations, the server-certificate replacement).
_CLUSTER = "cluster:"

_DOCUMENT_COLUMNS = "id, collection, body, metadata, change_vector, etag, last_modified"




async def _migrate_collection_key(connection: asyncpg.Connection) -> None:
    """A database made before ``collection_key`` existed gets the column, filled by the same Python function
    every write uses (PostgreSQL's ``lower()`` is not Unicode casefolding), and the index that collection
    queries use; the old ``lower(collection)`` index goes. Runs under the schema lock, inside its transaction."""
    await connection.execute("ALTER TABLE documents ADD COLUMN IF NOT EXISTS collection_key TEXT")
    names = await connection.fetch(
        "SELECT DISTINCT collection FROM documents WHERE collection IS NOT NULL AND collection_key IS NULL")
    if names:
        await connection.executemany(
            "UPDATE documents SET collection_key = $1 WHERE collection = $2 AND collection_key IS NULL",
            [(collection_key(r[0]), r[0]) for r in names])
    await connection.execute("DROP INDEX IF EXISTS documents_by_collection")
    await connection.execute(
        "CREATE INDEX IF NOT EXISTS documents_by_collection_key ON documents (db, collection_key, etag)")


def _notify_payloads(thumbprints: list[str]) -> list[str]:
    """One payload per thumbprint, or one "reload everything" when there are too many to send one by one."""
    if sum(len(t) + 1 for t in thumbprints) > _NOTIFY_PAYLOAD_LIMIT:
        return [_ALL]
    return sorted(set(thumbprints))


# What a PostgreSQL restart, failover or network cut looks like from a connection: the request that met it is
# answered 503 with Retry-After (the pool reconnects for the next one), never a 500.
OUTAGE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
           asyncpg.exceptions.OperatorInterventionError)
_RETRY_AFTER_SECONDS = 2
_Cls = TypeVar("_Cls", bound=type)


def unavailable(exc: BaseException) -> ServiceUnavailableError:
    log.warning("PostgreSQL storage unavailable: %s: %s", type(exc).__name__, exc)
    return ServiceUnavailableError(
        "The PostgreSQL storage is unreachable right now (restarting or failing over); nothing was changed by "
        f"this request unless a later read shows it. Retry in {_RETRY_AFTER_SECONDS} seconds.",
        headers={"Retry-After": str(_RETRY_AFTER_SECONDS)})


def _outage_is_unavailable(cls: _Cls) -> _Cls:
    """Wrap every public coroutine method so that a lost connection becomes ServiceUnavailableError (503)."""
    for name, method in list(vars(cls).items()):
        if name.startswith("_") or name in ("open", "close") or not inspect.iscoroutinefunction(method):
            continue

        def wrap(function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            @functools.wraps(function)
            async def guarded(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await function(*args, **kwargs)
                except OUTAGE as exc:
                    raise unavailable(exc) from exc

            return guarded

        setattr(cls, name, wrap(method))
    return cls


async def _write_documents(connection: Any, writes: list[tuple[Any, ...]]) -> None:
    """The batch's document rows so far, in one pipelined statement (asyncpg's executemany)."""
    if writes:
        await connection.executemany(
            "INSERT INTO documents (db, key, id, collection, collection_key, body, metadata, change_vector, etag, "
            "last_modified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (db, key) DO UPDATE "
            "SET id = excluded.id, collection = excluded.collection, collection_key = excluded.collection_key, "
            "body = excluded.body, "
            "metadata = excluded.metadata, change_vector = excluded.change_vector, "
            "etag = excluded.etag, last_modified = excluded.last_modified",
            writes,
        )
        writes.clear()


@_outage_is_unavailable
class PostgresStorage:
    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self._url = url
        self._watchers: list[asyncio.Task[None]] = []
        self._echoes: dict[str, asyncio.Future[None]] = {}
        self._database_watchers: list[Callable[[str | None], None]] = []
        self._cluster_watchers: list[Callable[[str], None]] = []

    @classmethod
    async def open(cls, url: str) -> PostgresStorage:
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=10, server_settings={"application_name": APPLICATION_NAME}
            )
        except (OSError, asyncpg.PostgresError, ValueError) as exc:
            raise ConfigurationError(
                f"Cannot connect to the PostgreSQL storage ({_redacted(url)}): {exc}. "
                "Check that the server runs and that the storage URL names an existing database."
            ) from exc
        async with pool.acquire() as connection, connection.transaction():
            # Two nodes starting at once would race on CREATE TABLE IF NOT EXISTS (a unique violation in the
            # catalog); the advisory lock makes schema creation one node at a time.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await connection.execute(_SCHEMA)
            await _migrate_collection_key(connection)
            await connection.execute(_NODES_SCHEMA)
        return cls(pool, url)

    # Backups (roost.backups): blocking, each on a connection of its own (storage.postgres_backups) --------------

    def snapshot(self) -> PostgresSnapshot:
        from roost.storage.postgres_backups import PostgresSnapshot

        return PostgresSnapshot(self._url)

    def restorer(self) -> PostgresRestorer:
        from roost.storage.postgres_backups import PostgresRestorer

        return PostgresRestorer(self._url, CHANNEL, _DATABASE)

    async def close(self) -> None:
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._watchers.clear()
        await self._pool.close()

    # Certificates -------------------------------------------------------------------------------------------

    async def load_certificates(self) -> list[JsonObject]:
        rows = await self._pool.fetch("SELECT definition::text FROM certificates")
        return [json.loads(r[0]) for r in rows]

    async def get_certificates(self, thumbprints: list[str]) -> list[JsonObject]:
        rows = await self._pool.fetch(
            "SELECT definition::text FROM certificates WHERE thumbprint = ANY($1::text[])", thumbprints
        )
        return [json.loads(r[0]) for r in rows]

    async def put_certificates(self, definitions: list[JsonObject]) -> None:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                await connection.executemany(
                    "INSERT INTO certificates (thumbprint, definition) VALUES ($1, $2::jsonb) "
                    "ON CONFLICT (thumbprint) DO UPDATE SET definition = excluded.definition",
                    [(d["Thumbprint"], json.dumps(d)) for d in definitions],
                )
                echo = await self._notify(connection, [d["Thumbprint"] for d in definitions])
            await self._await_echo(echo)

    async def delete_certificates(self, thumbprints: list[str]) -> None:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                await connection.execute("DELETE FROM certificates WHERE thumbprint = ANY($1::text[])", thumbprints)
                echo = await self._notify(connection, thumbprints)
            await self._await_echo(echo)

    async def record_last_used(self, last_used: dict[str, str]) -> None:
        # No notification: last-used times are informational and flushed every few seconds by every node.
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.executemany(
                "UPDATE certificates SET definition = jsonb_set(definition, '{LastUsedDate}', to_jsonb($1::text)) "
                "WHERE thumbprint = $2",
                [(when, tp) for tp, when in last_used.items()],
            )

    async def watch_certificates(self, watcher: CertificateWatcher) -> None:
        """LISTEN on a dedicated connection; report changes, a lost channel, and its return (see base.py).

        Returns once listening, so that nothing committed after start-up can be missed.
        """
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._watchers.append(loop.create_task(self._watch(watcher, ready)))
        await ready

    async def _watch(self, watcher: CertificateWatcher, ready: asyncio.Future[None]) -> None:
        failures = 0  # connection attempts that failed in a row: the back-off counts only these
        while True:
            listening = asyncio.Event()  # set once LISTEN is established on a new connection
            try:
                await self._listen(watcher, ready, listening)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                if listening.is_set():
                    log.warning("Lost the PostgreSQL certificate notification channel (%s); reconnecting at once",
                                exc)
                else:
                    failures += 1
            try:
                await watcher.certificates_channel_lost()
            except Exception:
                log.exception("The certificate watcher failed on a lost channel")
            if listening.is_set():
                # A dropped connection while PostgreSQL answers (pg_terminate_backend, a proxy's idle cut): the
                # node is closed until it listens again, so try again at once.
                failures = 0
                continue
            delay = _RECONNECT_SECONDS[min(failures - 1, len(_RECONNECT_SECONDS) - 1)]
            log.warning("PostgreSQL does not answer the notification listener; retrying in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _listen(self, watcher: CertificateWatcher, ready: asyncio.Future[None],
                      listening: asyncio.Event) -> None:
        """One LISTEN session: returns or raises when its connection is lost."""
        lost = asyncio.Event()
        queue: asyncio.Queue[str] = asyncio.Queue()
        name = f"{APPLICATION_NAME} certificate listener (pid {os.getpid()})"
        connection = await asyncpg.connect(self._url, server_settings={"application_name": name},
                                           timeout=_CONNECT_SECONDS)
        try:
            connection.add_termination_listener(lambda _c: lost.set())

            def received(_connection: object, _pid: int, _channel: str, payload: str) -> None:
                if payload.startswith(_ECHO):
                    self._heard_echo(payload)  # a writer's token (ours or another node's): no change to read
                    return
                if payload.startswith(_DATABASE):
                    # Synchronously, in the order received: the next request already sees the database gone.
                    for database_changed in self._database_watchers:
                        database_changed(payload[len(_DATABASE):])
                    return
                if payload.startswith(_CLUSTER):
                    for cluster_changed in self._cluster_watchers:  # synchronously, as for databases
                        cluster_changed(payload[len(_CLUSTER):])
                    return
                queue.put_nowait(payload)
                watcher.certificates_behind()

            await connection.add_listener(CHANNEL, received)
            listening.set()
            for database_changed in self._database_watchers:
                database_changed(None)  # whatever was missed while not listening
            for cluster_changed in self._cluster_watchers:
                cluster_changed("*")
            if ready.done():
                await watcher.certificates_channel_resumed()
            else:
                ready.set_result(None)
            await _pump(connection, queue, lost, watcher)
        finally:
            if not connection.is_closed():
                connection.terminate()

    async def _notify(self, connection: asyncpg.Connection, thumbprints: list[str], *,
                      databases: Sequence[str] = (), cluster: Sequence[str] = ()) -> asyncio.Future[None] | None:
        """Queue the notifications in the caller's transaction: PostgreSQL delivers them when (and if) it commits.

        While this node listens, an echo token follows them; the write returns once this node's own listener has
        heard it, which is when PostgreSQL has handed the notifications to every listening node as well.
        """
        for payload in _notify_payloads(thumbprints):
            await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        for database in databases:
            await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, _DATABASE + database)
        for topic in cluster:
            await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, _CLUSTER + topic)
        if not self._watchers:
            return None
        token = f"{_ECHO}{secrets.token_hex(8)}"
        echo: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._echoes[token] = echo
        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, token)
        return echo

    async def _await_echo(self, echo: asyncio.Future[None] | None) -> None:
        if echo is None:
            return
        try:
            await asyncio.wait_for(echo, _ECHO_SECONDS)
        except TimeoutError:
            # Committed all the same; the other nodes catch up when their notification arrives (or reload).
            log.warning("The certificate change notification did not come back within %s s", _ECHO_SECONDS)
        finally:
            for token, future in list(self._echoes.items()):
                if future is echo:
                    del self._echoes[token]

    def _heard_echo(self, payload: str) -> None:
        echo = self._echoes.get(payload)
        if echo is not None and not echo.done():
            echo.set_result(None)

    # Databases ----------------------------------------------------------------------------------------------

    async def watch_databases(self, changed: Callable[[str | None], None]) -> None:
        self._database_watchers.append(changed)

    async def create_database(self, name: str, database_id: str, created: str) -> bool:
        echo: asyncio.Future[None] | None = None
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                status = await connection.execute(
                    "INSERT INTO databases (key, name, database_id, created) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (key) DO NOTHING",
                    fold(name), name, database_id, created,
                )
                if status != "INSERT 0 1":
                    return False
                echo = await self._notify(connection, [], databases=[fold(name)])
            await self._await_echo(echo)
            return True

    async def delete_database(self, name: str, certificate_updates: list[JsonObject]) -> bool:
        key = fold(name)
        echo: asyncio.Future[None] | None = None
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                status = await connection.execute("DELETE FROM databases WHERE key = $1", key)
                if status == "DELETE 0":
                    return False
                await connection.execute("DELETE FROM documents WHERE db = $1", key)
                await connection.execute("DELETE FROM hilo WHERE db = $1", key)
                await connection.execute("DELETE FROM attachment_chunks WHERE db = $1", key)
                if certificate_updates:
                    await connection.executemany(
                        "UPDATE certificates SET definition = $1::jsonb WHERE thumbprint = $2",
                        [(json.dumps(d), d["Thumbprint"]) for d in certificate_updates],
                    )
                # Every node forgets the database when this commits; the write returns once they have heard it.
                echo = await self._notify(connection, [d["Thumbprint"] for d in certificate_updates],
                                          databases=[key])
            await self._await_echo(echo)
            return True

    async def list_databases(self) -> list[DatabaseRow]:
        rows = await self._pool.fetch("SELECT name, database_id, created, record::text FROM databases ORDER BY key")
        return [DatabaseRow(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def get_database(self, name: str) -> DatabaseRow | None:
        r = await self._pool.fetchrow(
            "SELECT name, database_id, created, record::text FROM databases WHERE key = $1", fold(name)
        )
        return DatabaseRow(r[0], r[1], r[2], json.loads(r[3])) if r else None

    # Documents ----------------------------------------------------------------------------------------------

    async def get_documents(self, database: str, ids: list[str]) -> list[StoredDocument | None]:
        keys = [fold(i) for i in ids]
        rows = await self._pool.fetch(
            f"SELECT key, {_DOCUMENT_COLUMNS} FROM documents WHERE db = $1 AND key = ANY($2::text[])",
            fold(database), keys,
        )
        found = {row["key"]: document_from_row(row) for row in rows}
        return [found.get(k) for k in keys]

    async def apply_batch(self, database: str, commands: list[BatchCommand], now: str) -> list[BatchResult]:
        db_key = fold(database)
        results: list[BatchResult] = []
        async with self._pool.acquire() as connection, connection.transaction():
            # The database row holds the etag counter; locking it serializes every writer of this database (on
            # every node), so the change-vector checks below see the latest committed documents.
            row = await connection.fetchrow(
                "SELECT database_id, last_etag FROM databases WHERE key = $1 FOR UPDATE", db_key
            )
            if row is None:
                raise LookupError(database)
            database_id, etag = row[0], int(row[1])
            # Every row the batch names, read at once; then the batch's own writes are applied to this view.
            keys = list({fold(command.id) for command in commands})
            rows: dict[str, Any] = {r["key"]: r for r in await connection.fetch(
                f"SELECT key, {_DOCUMENT_COLUMNS} FROM documents WHERE db = $1 AND key = ANY($2::text[])",
                db_key, keys)}
            writes: list[tuple[Any, ...]] = []  # document rows to write, in order, before the next delete
            for command in commands:
                key = fold(command.id)
                current = rows.get(key)
                current_cv = current["change_vector"] if current else None
                expected = command.expected_change_vector
                # RavenDB: an empty expected change vector means "the document must not exist yet".
                if expected is not None and (
                    (expected == "" and current is not None) or (expected != "" and current_cv != expected)
                ):
                    raise ChangeVectorMismatch(command.id, expected, current_cv)
                counters: tuple[tuple[str, int | None], ...] = ()
                if isinstance(command, CountersCommand):
                    if current is None:
                        raise InvalidCounterOperation(f"document {command.id} does not exist")
                    existing = document_from_row(current)
                    metadata, counters = apply_counters(existing.metadata, command.operations)
                    if all(op.kind == "Get" for op in command.operations):
                        results.append(BatchResult(command.id, "Counters", existing, counters=counters))
                        continue
                    command = PutCommand(command.id, existing.collection, existing.body, metadata)
                elif isinstance(command, PutCommand) and current is not None:
                    command = replace(command, metadata=with_server_metadata_of(
                        command.metadata, json.loads(current["metadata"])))
                if isinstance(command, PutCommand):
                    etag += 1
                    change_vector = f"A:{etag}-{database_id}"
                    body, metadata_text = json.dumps(command.body), json.dumps(command.metadata)
                    writes.append((db_key, key, command.id, command.collection, collection_key(command.collection),
                                   body, metadata_text, change_vector, etag, now))
                    rows[key] = {"key": key, "id": command.id, "collection": command.collection, "body": body,
                                 "metadata": metadata_text, "change_vector": change_vector, "etag": etag,
                                 "last_modified": now}
                    stored = StoredDocument(command.id, command.collection, command.body, command.metadata,
                                            change_vector, etag, now)
                    kind: Literal["PUT", "Counters"] = "Counters" if counters else "PUT"
                    results.append(BatchResult(command.id, kind, stored, counters=counters))
                else:
                    deleted = current is not None
                    if current is not None:
                        await _write_documents(connection, writes)
                        await connection.execute("DELETE FROM documents WHERE db = $1 AND key = $2", db_key, key)
                        await connection.execute(
                            "DELETE FROM attachment_chunks WHERE db = $1 AND token = ANY($2::text[])", db_key,
                            attachment_tokens(json.loads(current["metadata"])))
                        rows.pop(key, None)
                    results.append(BatchResult(command.id, "DELETE", None, deleted=deleted,
                                               collection=current["collection"] if current else None))
            await _write_documents(connection, writes)
            await connection.execute("UPDATE databases SET last_etag = $1 WHERE key = $2", etag, db_key)
        return results

    async def scan_documents(self, database: str, collection: str | None) -> list[StoredDocument]:
        if collection is None:
            rows = await self._pool.fetch(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE db = $1 ORDER BY etag", fold(database)
            )
        else:
            rows = await self._pool.fetch(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE db = $1 AND collection_key = $2 ORDER BY etag",
                fold(database), collection_key(collection),
            )
        return [document_from_row(r) for r in rows]

    async def page_documents(self, database: str, start: int, size: int) -> list[StoredDocument]:
        rows = await self._pool.fetch(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE db = $1 ORDER BY etag DESC LIMIT $2 OFFSET $3",
            fold(database), size, start,
        )
        return [document_from_row(r) for r in rows]

    async def count_documents(self, database: str) -> int:
        count = await self._pool.fetchval("SELECT count(*) FROM documents WHERE db = $1", fold(database))
        return int(count)

    async def collection_counts(self, database: str) -> tuple[int, dict[str | None, int]] | None:
        db_key = fold(database)
        async with self._pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
            last_etag = await connection.fetchval("SELECT last_etag FROM databases WHERE key = $1", db_key)
            if last_etag is None:
                return None
            rows = await connection.fetch(
                # min() in code point order (COLLATE "C"), as SQLite's BINARY: the same name shown on both backends
                'SELECT min(collection COLLATE "C") AS collection, count(*) AS n FROM documents WHERE db = $1 '
                "GROUP BY collection_key", db_key)
        return int(last_etag), {r["collection"]: int(r["n"]) for r in rows}

    async def attachment_and_counter_counts(self, database: str) -> tuple[int, int, int]:
        db_key = fold(database)
        async with self._pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
            row = await connection.fetchrow(
                "SELECT coalesce(sum(CASE WHEN jsonb_typeof(m->'@attachments') = 'array' "
                "THEN jsonb_array_length(m->'@attachments') ELSE 0 END), 0) AS attachments, "
                "coalesce(sum(CASE WHEN jsonb_typeof(m->'@counter-values') = 'object' "
                "THEN (SELECT count(*) FROM jsonb_object_keys(m->'@counter-values')) ELSE 0 END), 0) AS counters "
                "FROM (SELECT metadata::jsonb AS m FROM documents WHERE db = $1 AND "
                "(metadata LIKE '%\"@attachments\"%' OR metadata LIKE '%\"@counter-values\"%')) AS t", db_key)
            unique = await connection.fetchval(
                "SELECT count(DISTINCT a->>'Hash') FROM documents AS d, jsonb_array_elements(CASE WHEN "
                "jsonb_typeof(d.metadata::jsonb->'@attachments') = 'array' THEN d.metadata::jsonb->'@attachments' "
                "ELSE '[]'::jsonb END) AS a WHERE d.db = $1 AND d.metadata LIKE '%\"@attachments\"%'", db_key)
        return int(row["attachments"]), int(unique), int(row["counters"])

    async def next_hilo_range(self, database: str, tag: str, size: int) -> tuple[int, int]:
        # One statement: the row lock taken by ON CONFLICT DO UPDATE makes concurrent callers (on any node) queue,
        # and each gets the maximum its own update produced.
        high = await self._pool.fetchval(
            "INSERT INTO hilo (db, tag, max) VALUES ($1, $2, $3) ON CONFLICT (db, tag) "
            "DO UPDATE SET max = hilo.max + excluded.max RETURNING max",
            fold(database), fold(tag), size,
        )
        return int(high) - size + 1, int(high)

    async def return_hilo_range(self, database: str, tag: str, end: int, last: int) -> bool:
        # Compare-and-set on the row: a range handed out since (by any node) makes this a no-op.
        status = await self._pool.execute(
            "UPDATE hilo SET max = $1 WHERE db = $2 AND tag = $3 AND max = $4", last, fold(database), fold(tag), end
        )
        return bool(status == "UPDATE 1")

    @staticmethod
    async def _lock_database(connection: asyncpg.Connection, db_key: str) -> tuple[str, int] | None:
        """Lock the database row (its etag counter): every writer of this database, on every node, queues here
        (as in ``apply_batch``), so a read-modify-write after it sees the latest committed document."""
        row = await connection.fetchrow("SELECT database_id, last_etag FROM databases WHERE key = $1 FOR UPDATE",
                                        db_key)
        return (row[0], int(row[1])) if row else None

    @staticmethod
    async def _current_document(connection: asyncpg.Connection, db_key: str, doc_id: str) -> StoredDocument | None:
        row = await connection.fetchrow(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE db = $1 AND key = $2",
                                        db_key, fold(doc_id))
        return document_from_row(row) if row else None

    @staticmethod
    async def _put_document(connection: asyncpg.Connection, db_key: str, locked: tuple[str, int], doc_id: str,
                            collection: str | None, body: JsonObject, metadata: JsonObject, now: str) -> None:
        """Write one document inside the caller's transaction, which holds ``_lock_database``."""
        database_id, etag = locked[0], locked[1] + 1
        await connection.execute(
            "INSERT INTO documents (db, key, id, collection, collection_key, body, metadata, change_vector, etag, "
            "last_modified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (db, key) DO UPDATE SET "
            "id = excluded.id, collection = excluded.collection, collection_key = excluded.collection_key, "
            "body = excluded.body, metadata = excluded.metadata, change_vector = excluded.change_vector, "
            "etag = excluded.etag, last_modified = excluded.last_modified",
            db_key, fold(doc_id), doc_id, collection, collection_key(collection), json.dumps(body),
            json.dumps(metadata),
            f"A:{etag}-{database_id}", etag, now,
        )
        await connection.execute("UPDATE databases SET last_etag = $1 WHERE key = $2", etag, db_key)

    async def take_hilo_document_range(self, database: str, tag: str, capacity: int, last_max: int,
                                       now: str) -> tuple[int, int]:
        db_key, doc_id = fold(database), hilo_document_id(tag)
        async with self._pool.acquire() as connection, connection.transaction():
            locked = await self._lock_database(connection, db_key)
            if locked is None:
                raise LookupError(database)
            current = await self._current_document(connection, db_key, doc_id)
            legacy = await connection.fetchval("SELECT max FROM hilo WHERE db = $1 AND tag = $2", db_key, fold(tag))
            body, low, high = next_hilo_body(current.body if current else None, int(legacy or 0), capacity, last_max)
            metadata = dict(current.metadata) if current else {}
            await self._put_document(connection, db_key, locked, doc_id, HILO_COLLECTION, body, metadata, now)
            return low, high

    async def return_hilo_document_range(self, database: str, tag: str, end: int, last: int, now: str) -> bool:
        db_key, doc_id = fold(database), hilo_document_id(tag)
        async with self._pool.acquire() as connection, connection.transaction():
            locked = await self._lock_database(connection, db_key)
            if locked is None:
                return False
            current = await self._current_document(connection, db_key, doc_id)
            if current is None or hilo_max(current.body) != end or last > end:
                return False
            await self._put_document(connection, db_key, locked, doc_id, current.collection,
                                     {**current.body, "Max": last}, current.metadata, now)
            return True

    # Attachments -------------------------------------------------------------------------------------------

    async def write_attachment_chunk(self, database: str, token: str, seq: int, data: bytes) -> None:
        await self._pool.execute("INSERT INTO attachment_chunks (db, token, seq, data) VALUES ($1, $2, $3, $4)",
                                 fold(database), token, seq, data)

    async def read_attachment_chunks(self, database: str, token: str) -> AsyncIterator[bytes]:
        seq = -1
        while True:  # one chunk per query: nothing but the chunk being sent is held in memory
            row = await self._pool.fetchrow(
                "SELECT seq, data FROM attachment_chunks WHERE db = $1 AND token = $2 AND seq > $3 ORDER BY seq "
                "LIMIT 1", fold(database), token, seq)
            if row is None:
                return
            seq = int(row["seq"])
            yield bytes(row["data"])

    async def attach(self, database: str, doc_id: str, entry: JsonObject, now: str) -> StoredDocument:
        db_key = fold(database)
        async with self._pool.acquire() as connection, connection.transaction():
            locked = await self._lock_database(connection, db_key)
            current = await self._current_document(connection, db_key, doc_id) if locked else None
            if locked is None or current is None:
                raise InvalidAttachment(doc_id)
            metadata, replaced = with_attachment(current.metadata, entry)
            await connection.execute("DELETE FROM attachment_chunks WHERE db = $1 AND token = ANY($2::text[])",
                                     db_key, replaced)
            await self._put_document(connection, db_key, locked, current.id, current.collection, current.body,
                                     metadata, now)
            stored = await self._current_document(connection, db_key, doc_id)
            assert stored is not None
            return stored

    async def detach(self, database: str, doc_id: str, name: str, now: str) -> bool:
        db_key = fold(database)
        async with self._pool.acquire() as connection, connection.transaction():
            locked = await self._lock_database(connection, db_key)
            current = await self._current_document(connection, db_key, doc_id) if locked else None
            if locked is None or current is None:
                return False
            metadata, gone = without_attachment(current.metadata, name)
            if not gone:
                return False
            await connection.execute("DELETE FROM attachment_chunks WHERE db = $1 AND token = ANY($2::text[])",
                                     db_key, gone)
            await self._put_document(connection, db_key, locked, current.id, current.collection, current.body,
                                     metadata, now)
            return True

    async def discard_attachment_chunks(self, database: str, token: str) -> None:
        await self._pool.execute("DELETE FROM attachment_chunks WHERE db = $1 AND token = $2", fold(database), token)

    # Two-factor state ---------------------------------------------------------------------------------------

    async def load_two_factor(self) -> dict[str, JsonObject]:
        rows = await self._pool.fetch("SELECT thumbprint, state::text FROM two_factor")
        return {r[0]: json.loads(r[1]) for r in rows}

    async def get_two_factor(self, ids: list[str]) -> dict[str, JsonObject]:
        rows = await self._pool.fetch(
            "SELECT thumbprint, state::text FROM two_factor WHERE thumbprint = ANY($1::text[])", ids)
        return {r[0]: json.loads(r[1]) for r in rows}

    async def update_two_factor(self, ids: list[str], change: TwoFactorChange) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            # Advisory locks, not SELECT ... FOR UPDATE: they also serialize the first update of an entry that
            # does not exist yet. Taken in sorted order, so two updates of overlapping entries cannot deadlock.
            for entry in sorted(set(ids)):
                await connection.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _TWO_FACTOR_LOCK, entry)
            rows = await connection.fetch(
                "SELECT thumbprint, state::text FROM two_factor WHERE thumbprint = ANY($1::text[])", ids)
            writes = change({r[0]: json.loads(r[1]) for r in rows})
            gone = [t for t, state in writes.items() if state is None]
            if gone:
                await connection.execute("DELETE FROM two_factor WHERE thumbprint = ANY($1::text[])", gone)
            kept = [(t, json.dumps(state)) for t, state in writes.items() if state is not None]
            if kept:
                await connection.executemany(
                    "INSERT INTO two_factor (thumbprint, state) VALUES ($1, $2::jsonb) "
                    "ON CONFLICT (thumbprint) DO UPDATE SET state = excluded.state", kept)

    async def put_two_factor(self, thumbprint: str, state: JsonObject) -> None:
        await self._pool.execute(
            "INSERT INTO two_factor (thumbprint, state) VALUES ($1, $2::jsonb) "
            "ON CONFLICT (thumbprint) DO UPDATE SET state = excluded.state",
            thumbprint, json.dumps(state),
        )

    async def delete_two_factor(self, thumbprints: list[str]) -> None:
        await self._pool.execute("DELETE FROM two_factor WHERE thumbprint = ANY($1::text[])", thumbprints)

    # Settings -----------------------------------------------------------------------------------------------

    async def get_setting(self, key: str) -> Any:
        value = await self._pool.fetchval("SELECT value::text FROM settings WHERE key = $1", key)
        return json.loads(value) if value is not None else None

    async def put_setting(self, key: str, value: Any) -> None:
        await self._pool.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2::jsonb) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key, json.dumps(value),
        )

    async def delete_setting(self, key: str) -> None:
        await self._pool.execute("DELETE FROM settings WHERE key = $1", key)

    # Nodes (roost.cluster.nodes) ----------------------------------------------------------------------------

    async def claim_node(self, tag: str, node_id: str, url: str, certificate: str) -> bool:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                status = await connection.execute(
                    "INSERT INTO nodes (tag, node_id, url, certificate, last_seen) VALUES ($1, $2, $3, $4, now()) "
                    "ON CONFLICT (tag) DO UPDATE SET url = excluded.url, certificate = excluded.certificate, "
                    "last_seen = now() WHERE nodes.node_id = excluded.node_id",
                    tag, node_id, url, certificate,
                )
                if status != "INSERT 0 1":
                    return False
                await connection.execute("DELETE FROM nodes WHERE node_id = $1 AND tag <> $2", node_id, tag)
                await connection.execute("SELECT nextval('nodes_version')")
                # The certificate rides along when it fits, so that every node trusts it before this returns.
                fits = certificate and len(certificate) <= _NOTIFY_PAYLOAD_LIMIT - 100
                echo = await self._notify(connection, [], cluster=[f"nodes:{certificate}" if fits else "nodes"])
            await self._await_echo(echo)
            return True

    async def node_heartbeat(self, tag: str, node_id: str, *, stopping: bool = False) -> bool:
        seen = "'-infinity'" if stopping else "now()"
        status = await self._pool.execute(
            f"UPDATE nodes SET last_seen = {seen} WHERE tag = $1 AND node_id = $2", tag, node_id)
        return bool(status != "UPDATE 0")

    async def list_nodes(self, live_seconds: float) -> list[NodeRow]:
        rows = await self._pool.fetch(
            "SELECT tag, node_id, url, certificate, last_seen > now() - make_interval(secs => $1) FROM nodes "
            "ORDER BY length(tag), tag", float(live_seconds))
        return [NodeRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    async def remove_node(self, tag: str, revoked: list[str]) -> NodeRow | None:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                r = await connection.fetchrow(
                    "DELETE FROM nodes WHERE tag = $1 RETURNING tag, node_id, url, certificate", tag)
                if r is None:
                    return None
                await connection.execute("SELECT nextval('nodes_version')")
                echo = await self._notify(connection, [], cluster=[*(f"revoke:{t}" for t in revoked), "nodes"])
            await self._await_echo(echo)
            return NodeRow(r[0], r[1], r[2], r[3], False)

    async def nodes_version(self) -> int:
        return int(await self._pool.fetchval("SELECT last_value FROM nodes_version"))

    async def notify_cluster(self, topic: str) -> None:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                echo = await self._notify(connection, [], cluster=[topic])
            await self._await_echo(echo)

    async def watch_cluster(self, changed: Callable[[str], None]) -> None:
        self._cluster_watchers.append(changed)

    # Leases -------------------------------------------------------------------------------------------------

    async def take_lease(self, name: str, now: float, until: float) -> bool:
        # One statement: the row lock of ON CONFLICT DO UPDATE decides between nodes taking it at once.
        taken = await self._pool.fetchval(
            "INSERT INTO settings (key, value) VALUES ($1, to_jsonb($2::float8)) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value WHERE (settings.value #>> '{}')::float8 <= $3 RETURNING true",
            _LEASE + name, until, now)
        return bool(taken)

    async def release_lease(self, name: str, until: float) -> None:
        await self._pool.execute("DELETE FROM settings WHERE key = $1 AND (value #>> '{}')::float8 = $2",
                                 _LEASE + name, until)


async def _pump(
    connection: asyncpg.Connection, queue: asyncio.Queue[str], lost: asyncio.Event, watcher: CertificateWatcher
) -> None:
    """Deliver notifications in order until the connection is lost."""
    lost_wait = asyncio.ensure_future(lost.wait())
    try:
        while True:
            get = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({get, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                raise ConnectionError("the notification connection was closed")
            payloads = [get.result()]
            while not queue.empty():
                payloads.append(queue.get_nowait())
            await watcher.certificates_changed(None if _ALL in payloads else payloads)
            if queue.empty():
                watcher.certificates_caught_up()
            if connection.is_closed():
                raise ConnectionError("the notification connection was closed")
    finally:
        lost_wait.cancel()


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}@{host}"
    return url


def _conforms(storage: PostgresStorage) -> Storage:
    """Never called: makes mypy check that PostgresStorage implements the Storage protocol (it is imported by name)."""
    return storage


def _snapshots(storage: PostgresStorage) -> Snapshotting:
    """Never called: makes mypy check that PostgresStorage implements the Snapshotting protocol."""
    return storage
