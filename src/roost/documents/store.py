"""Databases and their documents: metadata, change vectors, optimistic concurrency, batches, HiLo."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

from roost import clock
from roost.documents.changes import ChangeHub
from roost.errors import (
    BadRequestError,
    ConcurrencyError,
    ConflictError,
    DatabaseDoesNotExistError,
    DocumentDoesNotExistError,
)
from roost.names import database_name, document_id
from roost.storage.base import (
    ATTACHMENTS,
    COUNTER_VALUES,
    HILO_DOCUMENT_PREFIX,
    MAX_HILO_NUMBER,
    BatchCommand,
    BatchResult,
    ChangeVectorMismatch,
    CounterOperation,
    CountersCommand,
    DatabaseRow,
    DeleteCommand,
    InvalidCounterOperation,
    InvalidHiLoDocument,
    JsonObject,
    PutCommand,
    Storage,
    StoredDocument,
    hilo_document_id,
    hilo_max,
)

# Metadata keys the server computes; a client's copy of them is ignored on write.
_COMPUTED_METADATA = {"@id", "@change-vector", "@last-modified", "@flags", "@etag", "@counters", COUNTER_VALUES,
                      ATTACHMENTS}
MAX_COUNTER_NAME = 512
SERVER_TAG = "A"
EMPTY_COLLECTION = "@empty"  # RavenDB's name for the documents that have no @collection
# HiLo counters the server keeps for itself (in the same table as the clients' tags): never reachable through
# /hilo, or any ReadWrite client could rewind them and make the server hand out an id again.
_SERVER_IDS_TAG = "@server-generated-ids"
INTERNAL_HILO_TAGS = frozenset({_SERVER_IDS_TAG.casefold()})


def render(document: StoredDocument) -> JsonObject:
    """The document as RavenDB returns it: the body plus ``@metadata``."""
    metadata = dict(document.metadata)
    attachments = metadata.pop(ATTACHMENTS, None)
    if attachments:  # RavenDB's entries; where the content lives is the server's business
        metadata[ATTACHMENTS] = [{k: v for k, v in a.items() if k != "Token"} for a in attachments]
    counters = metadata.pop(COUNTER_VALUES, None)
    if counters:
        metadata["@counters"] = list(counters)  # RavenDB lists the names; values come from /counters
    if document.collection:
        metadata["@collection"] = document.collection
    metadata["@change-vector"] = document.change_vector
    metadata["@id"] = document.id
    metadata["@last-modified"] = document.last_modified
    return {**document.body, "@metadata": metadata}


def split_document(doc: Any) -> tuple[str | None, JsonObject, JsonObject]:
    """Body, client metadata and collection from a document JSON as a client sends it."""
    if not isinstance(doc, dict):
        raise BadRequestError("A document must be a JSON object.")
    metadata_in = doc.get("@metadata") or {}
    if not isinstance(metadata_in, dict):
        raise BadRequestError("@metadata must be a JSON object.")
    metadata = {k: v for k, v in metadata_in.items() if k not in _COMPUTED_METADATA and k != "@collection"}
    collection = metadata_in.get("@collection")
    if collection is not None and (not isinstance(collection, str) or not collection.strip()):
        raise BadRequestError("@metadata.@collection must be a non-empty string.")
    body = {k: v for k, v in doc.items() if k != "@metadata"}
    return collection, body, metadata


@dataclass(frozen=True, slots=True)
class PutResult:
    id: str
    change_vector: str
    collection: str | None
    last_modified: str


class DocumentStore:
    """Everything about databases and documents that is not SQL."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.changes = ChangeHub()  # committed writes of this process, for /databases/{db}/changes
        self._known: dict[str, str] = {}  # folded name -> name, of databases known to exist

    async def load(self) -> None:
        self._known = {row.name.casefold(): row.name for row in await self._storage.list_databases()}

    def forget(self, folded: str | None) -> None:
        """Another node created or deleted this database (``None``: any may have changed): ask storage next time."""
        if folded is None:
            self._known = {}
        else:
            self._known.pop(folded, None)

    async def exists(self, name: str) -> bool:
        key = name.casefold()
        if key in self._known:
            return True
        row = await self._storage.get_database(name)  # created by another node since we loaded
        if row is not None:
            self._known[key] = row.name
        return row is not None

    async def ensure_exists(self, name: str) -> None:
        if not await self.exists(name):
            raise DatabaseDoesNotExistError(name)

    # Databases ----------------------------------------------------------------------------------------------

    async def create_database(self, name: str) -> DatabaseRow:
        name = database_name(name)
        database_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        created = clock.wire_date(clock.now())
        if not await self._storage.create_database(name, database_id, created):
            raise ConflictError(f"Database '{name}' already exists.")
        self._known[name.casefold()] = name
        return DatabaseRow(name, database_id, created)

    async def delete_database(self, name: str, certificate_updates: list[JsonObject]) -> bool:
        """Delete the database and, in the same transaction, store ``certificate_updates`` (the caller's
        definitions without this database: ``roost.services.Databases`` computes them from the registry)."""
        name = database_name(name)
        deleted = await self._storage.delete_database(name, certificate_updates)
        self._known.pop(name.casefold(), None)
        self.changes.close_database(name)
        return deleted

    async def list_databases(self) -> list[DatabaseRow]:
        rows = await self._storage.list_databases()
        self._known = {row.name.casefold(): row.name for row in rows}
        return rows

    async def get_database(self, name: str) -> DatabaseRow | None:
        return await self._storage.get_database(name)

    # Documents ----------------------------------------------------------------------------------------------

    async def get(self, database: str, ids: list[str]) -> list[StoredDocument | None]:
        await self.ensure_exists(database)
        return await self._storage.get_documents(database, [document_id(i) for i in ids])

    async def put(self, database: str, doc_id: str, doc: Any, expected_change_vector: str | None) -> PutResult:
        results = await self.batch(
            database, [self.put_command(doc_id, doc, expected_change_vector)]
        )
        stored = results[0].document
        assert stored is not None
        return PutResult(stored.id, stored.change_vector, stored.collection, stored.last_modified)

    async def delete(self, database: str, doc_id: str, expected_change_vector: str | None) -> bool:
        results = await self.batch(database, [DeleteCommand(document_id(doc_id), expected_change_vector)])
        return results[0].deleted

    def put_command(self, doc_id: str | None, doc: Any, expected_change_vector: str | None) -> PutCommand:
        collection, body, metadata = split_document(doc)
        if doc_id and doc_id.casefold().startswith(HILO_DOCUMENT_PREFIX.casefold()):
            # A HiLo document sets where the next range starts: it must hold a Max the next range can follow.
            try:
                hilo_max(body)
            except InvalidHiLoDocument:
                raise BadRequestError(
                    f"{doc_id} is a HiLo document: its Max must be a whole number from 0 to {MAX_HILO_NUMBER}."
                ) from None
        return PutCommand(doc_id or "", collection, body, metadata, expected_change_vector)

    async def batch(self, database: str, commands: list[BatchCommand]) -> list[BatchResult]:
        await self.ensure_exists(database)
        prepared: list[BatchCommand] = []
        # Ids this batch names itself: a generated id must not land on one of them either.
        named = {command.id.casefold() for command in commands if not _wants_server_id(command)}
        for command in commands:
            if _wants_server_id(command):
                assert isinstance(command, PutCommand)
                command = await self._with_server_id(database, command, named)
                named.add(command.id.casefold())
            prepared.append(command)
        for command in prepared:
            document_id(command.id)
        try:
            results = await self._storage.apply_batch(database, prepared, clock.wire_date(clock.now()))
        except ChangeVectorMismatch as exc:
            wanted = "a new document" if exc.expected == "" else f"change vector {exc.expected}"
            actual = f"change vector {exc.actual}" if exc.actual else "no such document"
            raise ConcurrencyError(
                f"Document {exc.document_id} has {actual}, but the write expected {wanted}. Optimistic "
                "concurrency violation, transaction will be aborted. Load the document again and retry."
            ) from exc
        except InvalidCounterOperation as exc:
            if "does not exist" in str(exc):
                raise DocumentDoesNotExistError(f"The {exc}: counters belong to a document; store it first.") from exc
            raise BadRequestError(f"Counters: {exc}; use a smaller delta.") from exc
        except LookupError as exc:
            raise DatabaseDoesNotExistError(database) from exc
        self.changes.publish_batch(database, results)
        return results

    async def counter_values(self, database: str, doc_id: str,
                             names: list[str]) -> tuple[StoredDocument, tuple[tuple[str, int | None], ...]] | None:
        """The document and its counters (all of them when ``names`` is empty); None when there is no document."""
        [document] = await self.get(database, [doc_id])
        if document is None:
            return None
        values: dict[str, int] = document.metadata.get(COUNTER_VALUES) or {}
        if not names:
            return document, tuple(values.items())
        spelled = {name.casefold(): name for name in values}
        return document, tuple((spelled.get(n.casefold(), n), values.get(spelled.get(n.casefold(), n)))
                               for n in dict.fromkeys(names))

    async def _with_server_id(self, database: str, command: PutCommand, named: set[str]) -> PutCommand:
        """RavenDB's server-side ids: ``users/`` becomes ``users/0000000000000000001-A``.

        A client may have stored a document under an id of the same shape itself: such numbers are skipped, and
        the write expects no document there (an empty change vector), so that a concurrent writer on another node
        makes it fail (409) instead of overwriting.
        """
        prefix = command.id or f"{(command.collection or 'documents').lower()}/"
        if prefix.endswith("|"):
            prefix = prefix[:-1] + "/"
        while True:
            _, number = await self._storage.next_hilo_range(database, _SERVER_IDS_TAG, 1)
            candidate = f"{prefix}{number:019d}-{SERVER_TAG}"
            if candidate.casefold() in named:
                continue
            if (await self._storage.get_documents(database, [candidate]))[0] is None:
                return PutCommand(candidate, command.collection, command.body, command.metadata, "")

    async def page(self, database: str, start: int, size: int) -> tuple[list[StoredDocument], int]:
        """A page of the database's documents, most recently changed first, and how many there are in all."""
        await self.ensure_exists(database)
        return (await self._storage.page_documents(database, start, size),
                await self._storage.count_documents(database))

    async def scan(self, database: str, collection: str | None) -> list[StoredDocument]:
        await self.ensure_exists(database)
        return await self._storage.scan_documents(database, collection)

    async def statistics(self, database: str) -> tuple[DatabaseRow, int, dict[str, int]]:
        """The database, its last etag and its document count per collection (RavenDB names documents without
        one ``@empty``)."""
        row = await self.get_database(database)
        counts = await self._storage.collection_counts(database)
        if row is None or counts is None:
            raise DatabaseDoesNotExistError(database)
        last_etag, by_collection = counts
        return row, last_etag, {(name or EMPTY_COLLECTION): n for name, n in by_collection.items()}

    async def attachment_and_counter_counts(self, database: str) -> tuple[int, int, int]:
        """Attachments, distinct attachment contents and counters of the database's documents."""
        await self.ensure_exists(database)
        return await self._storage.attachment_and_counter_counts(database)

    async def count(self, database: str) -> int:
        return await self._storage.count_documents(database)

    async def next_hilo_range(self, database: str, tag: str, capacity: int, last_max: int = 0) -> tuple[int, int]:
        """RavenDB's HiLo: the range after ``Max`` of the document ``Raven/Hilo/<tag>``, which it then holds."""
        _ensure_client_tag(tag)
        await self.ensure_exists(database)
        try:
            return await self._storage.take_hilo_document_range(database, tag, capacity, last_max,
                                                                clock.wire_date(clock.now()))
        except InvalidHiLoDocument as exc:
            raise BadRequestError(
                f"The document {hilo_document_id(tag)} holds Max {str(exc)[:40]}, and the next range would not fit "
                f"a whole number up to {MAX_HILO_NUMBER}: store it with a smaller whole Max."
            ) from exc
        except LookupError as exc:
            raise DatabaseDoesNotExistError(database) from exc

    async def return_hilo_range(self, database: str, tag: str, end: int, last: int) -> bool:
        _ensure_client_tag(tag)
        await self.ensure_exists(database)
        try:
            return await self._storage.return_hilo_document_range(database, tag, end, last,
                                                                  clock.wire_date(clock.now()))
        except InvalidHiLoDocument:
            return False  # nothing to give back to: a Max that is not a number is not this range's end


def counters_command(doc_id: Any, raw_operations: Any, where: str) -> CountersCommand:
    """A counters command from RavenDB's JSON (``{"Type": "Increment", "CounterName": ..., "Delta": ...}``),
    checked whole before anything is applied."""
    if not isinstance(raw_operations, list) or not raw_operations:
        raise BadRequestError(f"{where}: Operations must be a non-empty list of counter operations.")
    operations: list[CounterOperation] = []
    for index, raw in enumerate(raw_operations):
        if not isinstance(raw, dict):
            raise BadRequestError(f"{where}, operation #{index}: must be a JSON object.")
        kind, name, delta = raw.get("Type"), raw.get("CounterName"), raw.get("Delta")
        if kind not in ("Increment", "Delete", "Get"):
            raise BadRequestError(f"{where}, operation #{index}: Type must be Increment, Delete or Get.")
        if (not isinstance(name, str) or not name.strip() or len(name) > MAX_COUNTER_NAME
                or not name.isprintable()):
            raise BadRequestError(
                f"{where}, operation #{index}: CounterName must be 1 to {MAX_COUNTER_NAME} printable characters.")
        if kind == "Increment":
            if delta is None:
                delta = 1
            if isinstance(delta, bool) or not isinstance(delta, int) or not -(1 << 63) <= delta < (1 << 63):
                raise BadRequestError(f"{where}, operation #{index}: Delta must be a 64-bit whole number.")
        operations.append(CounterOperation(kind, name, delta if kind == "Increment" and isinstance(delta, int) else 0))
    return CountersCommand(document_id(doc_id), tuple(operations))


def _wants_server_id(command: BatchCommand) -> bool:
    return isinstance(command, PutCommand) and (not command.id or command.id.endswith(("/", "|")))


def _ensure_client_tag(tag: str) -> None:
    if tag.casefold() in INTERNAL_HILO_TAGS:
        raise BadRequestError(f"The HiLo tag '{tag}' is reserved for the server's own ids; use a collection prefix.")
