"""Backups and restores of the embedded SQLite store: the ``Snapshot`` and ``Restorer`` of ``storage.base`` (the
PostgreSQL twins are in ``storage.postgres_backups``; both give the rows in the same shapes, one file format).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from roost.storage.base import (
    RESTORE_STAGE_PREFIX,
    AttachmentChunk,
    DocumentRow,
    DuplicateDocumentError,
    JsonObject,
    fold,
    staged_document,
)
from roost.storage.sqlite import DATABASES, _bump

# Backups ------------------------------------------------------------------------------------------------------
# Backups and restores run in a worker thread on their own connection, so the event loop's connection is never
# shared between threads and a long read never blocks requests. Under WAL a reader sees one consistent snapshot
# for the whole read transaction while writers carry on.


class SqliteSnapshot:
    """A consistent read-only view of the whole store, for one backup. Rows come out as stored (JSON text)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        self._db.execute("BEGIN")
        self._db.execute("SELECT count(*) FROM databases").fetchone()  # the snapshot starts at the first read

    def close(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()

    def databases(self) -> list[JsonObject]:
        rows = self._db.execute("SELECT name, database_id, created, last_etag, record FROM databases ORDER BY key")
        return [{"Name": r[0], "DatabaseId": r[1], "Created": r[2], "LastEtag": r[3], "Record": json.loads(r[4])}
                for r in rows]

    def documents(self, database: str) -> Iterator[DocumentRow]:
        # Primary-key order: no sort, the cursor steps through the B-tree, memory stays flat.
        yield from self._db.execute(
            "SELECT id, collection, body, metadata, change_vector, etag, last_modified FROM documents "
            "WHERE db = ? ORDER BY key", (fold(database),))

    def hilo(self, database: str) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self._db.execute("SELECT tag, max FROM hilo WHERE db = ?", (fold(database),))]

    def attachment_chunks(self, database: str) -> Iterator[AttachmentChunk]:
        # Primary-key order, one row at a time: memory stays flat however large the attachments.
        for token, seq, data in self._db.execute(
                "SELECT token, seq, data FROM attachment_chunks WHERE db = ? ORDER BY token, seq", (fold(database),)):
            yield str(token), int(seq), bytes(data)

    def certificates(self) -> list[JsonObject]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT definition FROM certificates ORDER BY thumbprint")]


# A restore writes its documents under a key no database name can fold to ('/' is refused in names), and moves
# them to the target in the same transaction that creates the database row: a restore killed half-way leaves only
# rows under this prefix, invisible to every database, and they are deleted at the next start.


class SqliteRestorer:
    """Writes one restored database in batches under a staging key; ``finish`` makes it appear in one commit."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)

    def close(self) -> None:
        self._db.close()

    def target_state(self, name: str) -> tuple[bool, int]:
        """(exists, document count) of the target database."""
        row = self._db.execute("SELECT 1 FROM databases WHERE key = ?", (fold(name),)).fetchone()
        count = self._db.execute("SELECT count(*) FROM documents WHERE db = ?", (fold(name),)).fetchone()[0]
        return row is not None, int(count)

    def _insert(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        """One batch of staged rows in its own transaction; a duplicate key raises DuplicateDocumentError."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(statement, rows)
        except sqlite3.IntegrityError as exc:
            self._db.execute("ROLLBACK")
            raise DuplicateDocumentError(str(exc)) from exc
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def insert_documents(self, stage: str, rows: list[DocumentRow]) -> None:
        """Add rows under the staging key ``stage`` (RESTORE_STAGE_PREFIX + a token). A duplicate id raises
        DuplicateDocumentError."""
        assert stage.startswith(RESTORE_STAGE_PREFIX)
        self._insert(
            "INSERT INTO documents (db, key, id, collection, collection_key, body, metadata, change_vector, etag, "
            "last_modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [staged_document(stage, r) for r in rows])

    def insert_attachment_chunks(self, stage: str, rows: list[AttachmentChunk]) -> None:
        assert stage.startswith(RESTORE_STAGE_PREFIX)
        self._insert("INSERT INTO attachment_chunks (db, token, seq, data) VALUES (?, ?, ?, ?)",
                     [(stage, *r) for r in rows])

    def finish(self, name: str, stage: str, database_id: str, created: str, last_etag: int, record: JsonObject,
               hilo: list[tuple[str, int]]) -> int:
        """In one transaction: the staged rows become ``name``'s, with its database row and hilo. Returns how many
        documents the target held already (the caller refuses and discards when that is not 0)."""
        db_key = fold(name)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            held = self._db.execute("SELECT count(*) FROM documents WHERE db = ?", (db_key,)).fetchone()[0]
            if held:
                self._db.execute("ROLLBACK")
                return int(held)
            self._db.execute("UPDATE documents SET db = ? WHERE db = ?", (db_key, stage))
            self._db.execute("DELETE FROM attachment_chunks WHERE db = ?", (db_key,))
            self._db.execute("UPDATE attachment_chunks SET db = ? WHERE db = ?", (db_key, stage))
            self._db.execute(
                "INSERT INTO databases (key, name, database_id, created, last_etag, record) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET database_id = excluded.database_id, last_etag = excluded.last_etag, "
                "record = excluded.record",
                (db_key, name, database_id, created, last_etag, json.dumps(record)))
            self._db.execute("DELETE FROM hilo WHERE db = ?", (db_key,))
            self._db.executemany("INSERT INTO hilo (db, tag, max) VALUES (?, ?, ?)",
                                 [(db_key, fold(tag), high) for tag, high in hilo])
            _bump(self._db, DATABASES)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return 0

    def discard(self, stage: str) -> None:
        """Drop the staged rows of a restore that failed (the target was never touched)."""
        assert stage.startswith(RESTORE_STAGE_PREFIX)
        self._db.execute("DELETE FROM documents WHERE db = ?", (stage,))
        self._db.execute("DELETE FROM attachment_chunks WHERE db = ?", (stage,))

    def discard_abandoned(self) -> int:
        """At start-up: rows staged by restores that a crash interrupted. Returns how many were deleted."""
        bounds = (RESTORE_STAGE_PREFIX, RESTORE_STAGE_PREFIX[:-1] + chr(ord("/") + 1))
        self._db.execute("DELETE FROM attachment_chunks WHERE db >= ? AND db < ?", bounds)
        cursor = self._db.execute("DELETE FROM documents WHERE db >= ? AND db < ?", bounds)
        return int(cursor.rowcount)
