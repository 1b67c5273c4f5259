"""Embedded SQLite storage (stdlib ``sqlite3``, WAL) in ``<data-dir>/roost.db``.

Queries run on the event loop's thread: each is an indexed lookup or a short write transaction that takes
tens of microseconds, less than a hop to a worker thread would cost. WAL with ``synchronous=NORMAL`` makes a
commit an append to the log (durable at the next checkpoint; a power cut can lose the last transactions but
never corrupts the file).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from roost.errors import ServiceUnavailableError
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

if TYPE_CHECKING:
    from roost.storage.sqlite_backups import SqliteRestorer, SqliteSnapshot

DATABASE_FILE = "roost.db"  # in the data directory, beside its -wal and -shm files

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    thumbprint TEXT PRIMARY KEY,
    definition TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS databases (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    database_id TEXT NOT NULL,
    created TEXT NOT NULL,
    last_etag INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS documents (
    db TEXT NOT NULL,
    key TEXT NOT NULL,
    id TEXT NOT NULL,
    collection TEXT,
    body TEXT NOT NULL,
    metadata TEXT NOT NULL,
    change_vector TEXT NOT NULL,
    etag INTEGER NOT NULL,
    last_modified TEXT NOT NULL,
    -- storage.base.collection_key(collection), last as a migrated table has it: see _migrate_collection_key
    collection_key TEXT,
    PRIMARY KEY (db, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS documents_by_etag ON documents (db, etag);
CREATE TABLE IF NOT EXISTS hilo (
    db TEXT NOT NULL,
    tag TEXT NOT NULL,
    max INTEGER NOT NULL,
    PRIMARY KEY (db, tag)
);
CREATE TABLE IF NOT EXISTS attachment_chunks (
    db TEXT NOT NULL,
    token TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (db, token, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS two_factor (
    thumbprint TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    topic TEXT PRIMARY KEY,
    counter INTEGER NOT NULL
);
"""

# The nodes of a cluster (roost.cluster.nodes; on SQLite the one node, shared by its workers). last_seen is in
# Unix seconds of SQLite's own clock.
_NODES_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    tag TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    url TEXT NOT NULL,
    certificate TEXT NOT NULL,
    last_seen REAL NOT NULL
);
"""
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"

# Topics of the change counters (see SqliteStorage.poll_changes): what another process sharing the file changed.
CERTIFICATES = "certificates"
DATABASES = "databases"
SETTING = "setting:"  # followed by the setting's key
NODES = "nodes"  # its counter is the topology's version (roost.cluster.nodes)

_LEASE = "lease:"  # settings keys of the leases (see Storage.take_lease); nobody follows them


def _bump(db: sqlite3.Connection, topic: str) -> None:
    db.execute("INSERT INTO changes (topic, counter) VALUES (?, 1) "
               "ON CONFLICT (topic) DO UPDATE SET counter = counter + 1", (topic,))


# Collection queries (scan_documents, collection_counts: RQL ``from``, /stats, /collections/stats) compare the
# folded key; the index answers them in etag order without a scan or a temporary sort. It replaces the BINARY
# ``documents_by_collection`` index that a ``COLLATE NOCASE`` comparison could never use.
_COLLECTION_INDEX = "CREATE INDEX IF NOT EXISTS documents_by_collection_key ON documents (db, collection_key, etag)"


def _migrate_collection_key(connection: sqlite3.Connection) -> None:
    """A ``roost.db`` made before ``collection_key`` existed gets the column, filled from ``collection`` with
    the same function every write uses, and its index, in one transaction (workers opening the file together
    wait for each other: the second finds the column there)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(documents)")}
        if "collection_key" not in columns:
            connection.execute("ALTER TABLE documents ADD COLUMN collection_key TEXT")
            names = [r[0] for r in connection.execute(
                "SELECT DISTINCT collection FROM documents WHERE collection IS NOT NULL")]
            connection.executemany("UPDATE documents SET collection_key = ? WHERE collection = ?",
                                   [(collection_key(name), name) for name in names])
        connection.execute("DROP INDEX IF EXISTS documents_by_collection")
        connection.execute(_COLLECTION_INDEX)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


class SqliteStorage:
    """Several worker processes may share the file (``roost serve --workers``): each write of certificates,
    databases or settings bumps a counter in the same transaction, and ``poll_changes`` tells a process, cheaply,
    which of them another process changed since it last asked."""

    def __init__(self, connection: sqlite3.Connection, path: Path | None = None) -> None:
        self._db = connection
        self.path = path
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self._seen: dict[str, int] = dict(self._db.execute("SELECT topic, counter FROM changes").fetchall())

    def poll_changes(self) -> frozenset[str]:
        """The topics other processes changed since the last call (empty almost always). ``PRAGMA data_version``
        changes only when another connection committed, and costs no I/O: the common case is one pragma."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return frozenset()
        self._data_version = version
        counters = dict(self._db.execute("SELECT topic, counter FROM changes").fetchall())
        moved = frozenset(t for t, c in counters.items() if self._seen.get(t) != c)
        self._seen = counters
        return moved

    def get_setting_now(self, key: str) -> Any:
        """``get_setting`` for synchronous callers (the listening socket's accept(), see ``roost.cluster``)."""
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _bump(self, db: sqlite3.Connection, topic: str) -> None:
        """Bump ``topic`` inside the caller's write transaction. This process knows its own change: it is not
        reported back by ``poll_changes`` unless another process changed the topic too since the last poll."""
        _bump(db, topic)
        counter = db.execute("SELECT counter FROM changes WHERE topic = ?", (topic,)).fetchone()[0]
        if self._seen.get(topic, 0) == counter - 1:
            self._seen[topic] = counter

    @classmethod
    async def open(cls, path: Path) -> SqliteStorage:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Private before SQLite first opens it: SQLite creates -wal and -shm with the database file's mode.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if existing.exists():  # an older Roost left them 0644
                existing.chmod(0o600)
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.executescript(_SCHEMA)
        _migrate_collection_key(connection)
        connection.executescript(_NODES_SCHEMA)
        return cls(connection, path)

    async def close(self) -> None:
        self._db.close()

    def snapshot(self) -> SqliteSnapshot:
        from roost.storage.sqlite_backups import SqliteSnapshot

        assert self.path is not None
        return SqliteSnapshot(self.path)

    def restorer(self) -> SqliteRestorer:
        from roost.storage.sqlite_backups import SqliteRestorer

        assert self.path is not None
        return SqliteRestorer(self.path)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            # Waits (sqlite3's 5 s busy timeout) while another worker process holds the write lock.
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise ServiceUnavailableError(
                "The database file is locked by another process (another worker writing, or a restore); nothing "
                "was changed. Retry in a second.", headers={"Retry-After": "1"}) from exc
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # Certificates -------------------------------------------------------------------------------------------

    async def load_certificates(self) -> list[JsonObject]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT definition FROM certificates")]

    async def get_certificates(self, thumbprints: list[str]) -> list[JsonObject]:
        found: list[JsonObject] = []
        for start in range(0, len(thumbprints), 500):
            chunk = thumbprints[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT definition FROM certificates WHERE thumbprint IN ({marks})", chunk)
            found += [json.loads(r[0]) for r in rows]
        return found

    async def watch_certificates(self, watcher: CertificateWatcher) -> None:
        """Nothing to watch: the embedded database has one writer, this process."""

    async def put_certificates(self, definitions: list[JsonObject]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO certificates (thumbprint, definition) VALUES (?, ?) "
                "ON CONFLICT (thumbprint) DO UPDATE SET definition = excluded.definition",
                [(d["Thumbprint"], json.dumps(d)) for d in definitions],
            )
            self._bump(db, CERTIFICATES)

    async def delete_certificates(self, thumbprints: list[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM certificates WHERE thumbprint = ?", [(t,) for t in thumbprints])
            self._bump(db, CERTIFICATES)

    async def record_last_used(self, last_used: dict[str, str]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE certificates SET definition = json_set(definition, '$.LastUsedDate', ?) WHERE thumbprint = ?",
                [(when, tp) for tp, when in last_used.items()],
            )

    # Databases ----------------------------------------------------------------------------------------------

    async def watch_databases(self, changed: Callable[[str | None], None]) -> None:
        """Nothing to watch here (see ``roost.cluster.changes`` for the workers of one machine)."""

    async def create_database(self, name: str, database_id: str, created: str) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO databases (key, name, database_id, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (fold(name), name, database_id, created),
            )
            if cursor.rowcount == 1:
                self._bump(db, DATABASES)
            return cursor.rowcount == 1

    async def delete_database(self, name: str, certificate_updates: list[JsonObject]) -> bool:
        key = fold(name)
        with self._write() as db:
            cursor = db.execute("DELETE FROM databases WHERE key = ?", (key,))
            if cursor.rowcount == 0:
                return False
            db.execute("DELETE FROM documents WHERE db = ?", (key,))
            db.execute("DELETE FROM hilo WHERE db = ?", (key,))
            db.execute("DELETE FROM attachment_chunks WHERE db = ?", (key,))
            db.executemany(
                "UPDATE certificates SET definition = ? WHERE thumbprint = ?",
                [(json.dumps(d), d["Thumbprint"]) for d in certificate_updates],
            )
            self._bump(db, DATABASES)
            if certificate_updates:
                self._bump(db, CERTIFICATES)
            return True

    async def list_databases(self) -> list[DatabaseRow]:
        rows = self._db.execute("SELECT name, database_id, created, record FROM databases ORDER BY key")
        return [DatabaseRow(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def get_database(self, name: str) -> DatabaseRow | None:
        r = self._db.execute(
            "SELECT name, database_id, created, record FROM databases WHERE key = ?", (fold(name),)
        ).fetchone()
        return DatabaseRow(r[0], r[1], r[2], json.loads(r[3])) if r else None

    # Documents ----------------------------------------------------------------------------------------------

    async def get_documents(self, database: str, ids: list[str]) -> list[StoredDocument | None]:
        db_key = fold(database)
        if len(ids) == 1:
            row = self._db.execute(
                "SELECT * FROM documents WHERE db = ? AND key = ?", (db_key, fold(ids[0]))
            ).fetchone()
            return [document_from_row(row) if row else None]
        found: dict[str, StoredDocument] = {}
        keys = [fold(i) for i in ids]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                f"SELECT * FROM documents WHERE db = ? AND key IN ({marks})", (db_key, *chunk)
            ):
                found[row["key"]] = document_from_row(row)
        return [found.get(k) for k in keys]

    async def apply_batch(self, database: str, commands: list[BatchCommand], now: str) -> list[BatchResult]:
        db_key = fold(database)
        results: list[BatchResult] = []
        with self._write() as db:
            row = db.execute("SELECT database_id, last_etag FROM databases WHERE key = ?", (db_key,)).fetchone()
            if row is None:
                raise LookupError(database)
            database_id, etag = row[0], row[1]
            # Every row the batch names, read at once; then the batch's own writes are applied to this view.
            current_rows = self._rows_of(db, db_key, {fold(command.id) for command in commands})
            writes: list[tuple[Any, ...]] = []  # document rows to write, in order, before the next delete
            for command in commands:
                key = fold(command.id)
                current = current_rows.get(key)
                expected = command.expected_change_vector
                # RavenDB: an empty expected change vector means "the document must not exist yet".
                if expected is not None and (
                    (expected == "" and current is not None)
                    or (expected != "" and (current is None or current[0] != expected))
                ):
                    raise ChangeVectorMismatch(command.id, expected, current[0] if current else None)
                counters: tuple[tuple[str, int | None], ...] = ()
                if isinstance(command, CountersCommand):
                    if current is None:
                        raise InvalidCounterOperation(f"document {command.id} does not exist")
                    metadata, counters = apply_counters(json.loads(current[2]), command.operations)
                    if all(op.kind == "Get" for op in command.operations):
                        stored = StoredDocument(current[4], current[3],
                                                json.loads(current[1]), json.loads(current[2]), current[0],
                                                current[5], current[6])
                        results.append(BatchResult(command.id, "Counters", stored, counters=counters))
                        continue
                    command = PutCommand(command.id, current[3], json.loads(current[1]), metadata)
                elif isinstance(command, PutCommand) and current is not None:
                    command = replace(command, metadata=with_server_metadata_of(command.metadata,
                                                                                json.loads(current[2])))
                if isinstance(command, PutCommand):
                    etag += 1
                    change_vector = f"A:{etag}-{database_id}"
                    body, metadata_text = json.dumps(command.body), json.dumps(command.metadata)
                    writes.append((db_key, key, command.id, command.collection, collection_key(command.collection),
                                   body, metadata_text, change_vector, etag, now))
                    current_rows[key] = (change_vector, body, metadata_text, command.collection, command.id, etag,
                                         now)
                    stored = StoredDocument(command.id, command.collection, command.body, command.metadata,
                                            change_vector, etag, now)
                    kind: Literal["PUT", "Counters"] = "Counters" if counters else "PUT"
                    results.append(BatchResult(command.id, kind, stored, counters=counters))
                else:
                    deleted, collection = current is not None, current[3] if current is not None else None
                    if current is not None:
                        self._write_rows(db, writes)
                        db.execute("DELETE FROM documents WHERE db = ? AND key = ?", (db_key, key))
                        db.executemany("DELETE FROM attachment_chunks WHERE db = ? AND token = ?",
                                       [(db_key, t) for t in attachment_tokens(json.loads(current[2]))])
                        current_rows[key] = None
                    results.append(BatchResult(command.id, "DELETE", None, deleted=deleted, collection=collection))
            self._write_rows(db, writes)
            db.execute("UPDATE databases SET last_etag = ? WHERE key = ?", (etag, db_key))
        return results

    @staticmethod
    def _rows_of(db: sqlite3.Connection, db_key: str, keys: set[str]) -> dict[str, Any]:
        """(change_vector, body, metadata, collection, id, etag, last_modified) of each key that has a document."""
        found: dict[str, Any] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), 500):  # below SQLite's limit of bound parameters
            part = wanted[start:start + 500]
            for row in db.execute(
                "SELECT key, change_vector, body, metadata, collection, id, etag, last_modified FROM documents "
                f"WHERE db = ? AND key IN ({','.join('?' * len(part))})", (db_key, *part)
            ):
                found[row[0]] = tuple(row[1:])
        return found

    @staticmethod
    def _write_rows(db: sqlite3.Connection, writes: list[tuple[Any, ...]]) -> None:
        if writes:
            db.executemany(
                "INSERT INTO documents (db, key, id, collection, collection_key, body, metadata, change_vector, "
                "etag, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (db, key) DO UPDATE SET "
                "id = excluded.id, collection = excluded.collection, collection_key = excluded.collection_key, "
                "body = excluded.body, "
                "metadata = excluded.metadata, change_vector = excluded.change_vector, "
                "etag = excluded.etag, last_modified = excluded.last_modified",
                writes,
            )
            writes.clear()

    async def scan_documents(self, database: str, collection: str | None) -> list[StoredDocument]:
        if collection is None:
            rows = self._db.execute("SELECT * FROM documents WHERE db = ? ORDER BY etag", (fold(database),))
        else:
            rows = self._db.execute(
                "SELECT * FROM documents WHERE db = ? AND collection_key = ? ORDER BY etag",
                (fold(database), collection_key(collection)),
            )
        return [document_from_row(r) for r in rows]

    async def page_documents(self, database: str, start: int, size: int) -> list[StoredDocument]:
        rows = self._db.execute("SELECT * FROM documents WHERE db = ? ORDER BY etag DESC LIMIT ? OFFSET ?",
                                (fold(database), size, start))
        return [document_from_row(r) for r in rows]

    async def count_documents(self, database: str) -> int:
        row = self._db.execute("SELECT count(*) FROM documents WHERE db = ?", (fold(database),)).fetchone()
        return int(row[0])

    async def collection_counts(self, database: str) -> tuple[int, dict[str | None, int]] | None:
        db_key = fold(database)
        with self._write():  # one snapshot: the etag and the counts agree
            row = self._db.execute("SELECT last_etag FROM databases WHERE key = ?", (db_key,)).fetchone()
            if row is None:
                return None
            counts = self._db.execute(
                "SELECT min(collection), count(*) FROM documents WHERE db = ? GROUP BY collection_key",
                (db_key,)).fetchall()
        return int(row[0]), {c[0]: int(c[1]) for c in counts}

    async def attachment_and_counter_counts(self, database: str) -> tuple[int, int, int]:
        db_key = fold(database)
        with self._write():  # one snapshot
            attachments, counters = self._db.execute(
                "SELECT coalesce(sum(json_array_length(metadata, '$.\"@attachments\"')), 0), "
                "coalesce(sum((SELECT count(*) FROM json_each(metadata, '$.\"@counter-values\"'))), 0) "
                "FROM documents WHERE db = ? AND (metadata LIKE '%\"@attachments\"%' "
                "OR metadata LIKE '%\"@counter-values\"%')", (db_key,)).fetchone()
            unique = self._db.execute(
                "SELECT count(DISTINCT json_extract(a.value, '$.Hash')) FROM documents, "
                "json_each(documents.metadata, '$.\"@attachments\"') AS a "
                "WHERE documents.db = ? AND documents.metadata LIKE '%\"@attachments\"%'", (db_key,)).fetchone()[0]
        return int(attachments), int(unique), int(counters)

    async def next_hilo_range(self, database: str, tag: str, size: int) -> tuple[int, int]:
        with self._write() as db:
            row = db.execute(
                "INSERT INTO hilo (db, tag, max) VALUES (?, ?, ?) ON CONFLICT (db, tag) "
                "DO UPDATE SET max = max + ? RETURNING max",
                (fold(database), fold(tag), size, size),
            ).fetchone()
            high = int(row[0])
            return high - size + 1, high

    async def return_hilo_range(self, database: str, tag: str, end: int, last: int) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE hilo SET max = ? WHERE db = ? AND tag = ? AND max = ?",
                (last, fold(database), fold(tag), end),
            )
            return cursor.rowcount == 1

    def _current_document(self, db: sqlite3.Connection, db_key: str, doc_id: str) -> StoredDocument | None:
        row = db.execute("SELECT * FROM documents WHERE db = ? AND key = ?", (db_key, fold(doc_id))).fetchone()
        return document_from_row(row) if row else None

    def _put_document(self, db: sqlite3.Connection, db_key: str, doc_id: str, collection: str | None,
                      body: JsonObject, metadata: JsonObject, now: str) -> None:
        """Write one document inside the caller's write transaction, with the database's next etag."""
        row = db.execute("SELECT database_id, last_etag FROM databases WHERE key = ?", (db_key,)).fetchone()
        if row is None:
            raise LookupError(db_key)
        etag = int(row[1]) + 1
        db.execute(
            "INSERT INTO documents (db, key, id, collection, collection_key, body, metadata, change_vector, etag, "
            "last_modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (db, key) DO UPDATE SET "
            "id = excluded.id, collection = excluded.collection, collection_key = excluded.collection_key, "
            "body = excluded.body, metadata = excluded.metadata, change_vector = excluded.change_vector, "
            "etag = excluded.etag, last_modified = excluded.last_modified",
            (db_key, fold(doc_id), doc_id, collection, collection_key(collection), json.dumps(body),
             json.dumps(metadata),
             f"A:{etag}-{row[0]}", etag, now),
        )
        db.execute("UPDATE databases SET last_etag = ? WHERE key = ?", (etag, db_key))

    async def take_hilo_document_range(self, database: str, tag: str, capacity: int, last_max: int,
                                       now: str) -> tuple[int, int]:
        db_key, doc_id = fold(database), hilo_document_id(tag)
        with self._write() as db:
            if db.execute("SELECT 1 FROM databases WHERE key = ?", (db_key,)).fetchone() is None:
                raise LookupError(database)
            current = self._current_document(db, db_key, doc_id)
            legacy = db.execute("SELECT max FROM hilo WHERE db = ? AND tag = ?", (db_key, fold(tag))).fetchone()
            body, low, high = next_hilo_body(current.body if current else None, int(legacy[0]) if legacy else 0,
                                             capacity, last_max)
            metadata = dict(current.metadata) if current else {}
            self._put_document(db, db_key, doc_id, HILO_COLLECTION, body, metadata, now)
            return low, high

    async def return_hilo_document_range(self, database: str, tag: str, end: int, last: int, now: str) -> bool:
        db_key, doc_id = fold(database), hilo_document_id(tag)
        with self._write() as db:
            current = self._current_document(db, db_key, doc_id)
            if current is None or hilo_max(current.body) != end or last > end:
                return False
            self._put_document(db, db_key, doc_id, current.collection, {**current.body, "Max": last},
                               current.metadata, now)
            return True

    # Attachments -------------------------------------------------------------------------------------------

    async def write_attachment_chunk(self, database: str, token: str, seq: int, data: bytes) -> None:
        with self._write() as db:
            db.execute("INSERT INTO attachment_chunks (db, token, seq, data) VALUES (?, ?, ?, ?)",
                       (fold(database), token, seq, data))

    async def read_attachment_chunks(self, database: str, token: str) -> AsyncIterator[bytes]:
        seq = -1
        while True:  # one chunk per query: nothing but the chunk being sent is held in memory
            row = self._db.execute(
                "SELECT seq, data FROM attachment_chunks WHERE db = ? AND token = ? AND seq > ? ORDER BY seq LIMIT 1",
                (fold(database), token, seq)).fetchone()
            if row is None:
                return
            seq = int(row[0])
            yield bytes(row[1])

    async def attach(self, database: str, doc_id: str, entry: JsonObject, now: str) -> StoredDocument:
        db_key = fold(database)
        with self._write() as db:
            current = self._current_document(db, db_key, doc_id)
            if current is None:
                raise InvalidAttachment(doc_id)
            metadata, replaced = with_attachment(current.metadata, entry)
            db.executemany("DELETE FROM attachment_chunks WHERE db = ? AND token = ?",
                           [(db_key, t) for t in replaced])
            self._put_document(db, db_key, current.id, current.collection, current.body, metadata, now)
            stored = self._current_document(db, db_key, doc_id)
            assert stored is not None
            return stored

    async def detach(self, database: str, doc_id: str, name: str, now: str) -> bool:
        db_key = fold(database)
        with self._write() as db:
            current = self._current_document(db, db_key, doc_id)
            if current is None:
                return False
            metadata, gone = without_attachment(current.metadata, name)
            if not gone:
                return False
            db.executemany("DELETE FROM attachment_chunks WHERE db = ? AND token = ?", [(db_key, t) for t in gone])
            self._put_document(db, db_key, current.id, current.collection, current.body, metadata, now)
            return True

    async def discard_attachment_chunks(self, database: str, token: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM attachment_chunks WHERE db = ? AND token = ?", (fold(database), token))

    # Two-factor state ---------------------------------------------------------------------------------------

    async def load_two_factor(self) -> dict[str, JsonObject]:
        return {r[0]: json.loads(r[1]) for r in self._db.execute("SELECT thumbprint, state FROM two_factor")}

    async def get_two_factor(self, ids: list[str]) -> dict[str, JsonObject]:
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT thumbprint, state FROM two_factor WHERE thumbprint IN ({marks})", ids)
        return {r[0]: json.loads(r[1]) for r in rows}

    async def update_two_factor(self, ids: list[str], change: TwoFactorChange) -> None:
        # BEGIN IMMEDIATE takes SQLite's write lock before the read: other workers' updates wait for this one.
        with self._write() as db:
            marks = ",".join("?" * len(ids))
            rows = db.execute(f"SELECT thumbprint, state FROM two_factor WHERE thumbprint IN ({marks})", ids)
            writes = change({r[0]: json.loads(r[1]) for r in rows})
            db.executemany("DELETE FROM two_factor WHERE thumbprint = ?",
                           [(t,) for t, state in writes.items() if state is None])
            db.executemany(
                "INSERT INTO two_factor (thumbprint, state) VALUES (?, ?) "
                "ON CONFLICT (thumbprint) DO UPDATE SET state = excluded.state",
                [(t, json.dumps(state)) for t, state in writes.items() if state is not None],
            )

    async def put_two_factor(self, thumbprint: str, state: JsonObject) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO two_factor (thumbprint, state) VALUES (?, ?) "
                "ON CONFLICT (thumbprint) DO UPDATE SET state = excluded.state",
                (thumbprint, json.dumps(state)),
            )

    async def delete_two_factor(self, thumbprints: list[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM two_factor WHERE thumbprint = ?", [(t,) for t in thumbprints])

    # Settings -----------------------------------------------------------------------------------------------

    async def get_setting(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    async def put_setting(self, key: str, value: Any) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )
            self._bump(db, SETTING + key)

    async def delete_setting(self, key: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM settings WHERE key = ?", (key,))
            self._bump(db, SETTING + key)

    # Nodes (roost.cluster.nodes) ----------------------------------------------------------------------------

    async def claim_node(self, tag: str, node_id: str, url: str, certificate: str) -> bool:
        with self._write() as db:
            owner = db.execute("SELECT node_id FROM nodes WHERE tag = ?", (tag,)).fetchone()
            if owner is not None and owner[0] != node_id:
                return False
            db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
            db.execute(f"INSERT INTO nodes (tag, node_id, url, certificate, last_seen) VALUES (?, ?, ?, ?, "
                       f"{_SQLITE_NOW})", (tag, node_id, url, certificate))
            self._bump(db, NODES)
            return True

    async def node_heartbeat(self, tag: str, node_id: str, *, stopping: bool = False) -> bool:
        with self._write() as db:
            seen = "0" if stopping else _SQLITE_NOW
            cursor = db.execute(f"UPDATE nodes SET last_seen = {seen} WHERE tag = ? AND node_id = ?", (tag, node_id))
            return cursor.rowcount > 0

    async def list_nodes(self, live_seconds: float) -> list[NodeRow]:
        rows = self._db.execute(
            f"SELECT tag, node_id, url, certificate, last_seen > {_SQLITE_NOW} - ? FROM nodes "
            "ORDER BY length(tag), tag", (live_seconds,)).fetchall()
        return [NodeRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    async def remove_node(self, tag: str, revoked: list[str]) -> NodeRow | None:
        with self._write() as db:
            r = db.execute("SELECT tag, node_id, url, certificate FROM nodes WHERE tag = ?", (tag,)).fetchone()
            if r is None:
                return None
            db.execute("DELETE FROM nodes WHERE tag = ?", (tag,))
            self._bump(db, NODES)
            return NodeRow(r[0], r[1], r[2], r[3], False)

    async def nodes_version(self) -> int:
        row = self._db.execute("SELECT counter FROM changes WHERE topic = ?", (NODES,)).fetchone()
        return int(row[0]) if row else 0

    async def notify_cluster(self, topic: str) -> None:
        return None

    async def watch_cluster(self, changed: Callable[[str], None]) -> None:
        return None


    # Leases -------------------------------------------------------------------------------------------------

    async def take_lease(self, name: str, now: float, until: float) -> bool:
        # BEGIN IMMEDIATE: the read and the write are one step for every process sharing the file.
        with self._write() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (_LEASE + name,)).fetchone()
            if row is not None and float(json.loads(row[0])) > now:
                return False
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (_LEASE + name, json.dumps(until)))
            return True

    async def release_lease(self, name: str, until: float) -> None:
        with self._write() as db:
            db.execute("DELETE FROM settings WHERE key = ? AND value = ?", (_LEASE + name, json.dumps(until)))
