"""The storage contract every backend implements (and ``tests/test_storage.py`` checks on each)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from roost import json_codec

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: str
    collection: str | None
    body: JsonObject
    metadata: JsonObject
    change_vector: str
    etag: int
    last_modified: str


def fold(value: str) -> str:
    """The storage key of a database name or document id: RavenDB compares them case-insensitively."""
    return value.casefold()


def collection_key(collection: str | None) -> str | None:
    """The one folding rule for collection names (RavenDB compares them case-insensitively): the key that both
    backends store in ``documents.collection_key`` and index, and that RQL's ``from`` compares. Python's full
    Unicode casefold, so "Straße" and "STRASSE" are one collection on every backend (SQLite's NOCASE folds ASCII
    only, PostgreSQL's ``lower()`` depends on the database's locale)."""
    return None if collection is None else collection.casefold()


def document_from_row(row: Mapping[str, Any]) -> StoredDocument:
    """A ``documents`` row (same columns in every backend; JSON kept as text) as a StoredDocument."""
    return StoredDocument(
        id=row["id"],
        collection=row["collection"],
        body=json_codec.loads(row["body"]),  # orjson where exact (roost.json_codec): the GET's hot path
        metadata=json_codec.loads(row["metadata"]),
        change_vector=row["change_vector"],
        etag=int(row["etag"]),
        last_modified=row["last_modified"],
    )


@dataclass(frozen=True, slots=True)
class DatabaseRow:
    name: str
    database_id: str
    created: str
    record: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PutCommand:
    id: str
    collection: str | None
    body: JsonObject
    metadata: JsonObject
    expected_change_vector: str | None = None
    kind: Literal["PUT"] = "PUT"


@dataclass(frozen=True, slots=True)
class DeleteCommand:
    id: str
    expected_change_vector: str | None = None
    kind: Literal["DELETE"] = "DELETE"


@dataclass(frozen=True, slots=True)
class CounterOperation:
    kind: Literal["Increment", "Delete", "Get"]
    name: str
    delta: int = 0


@dataclass(frozen=True, slots=True)
class CountersCommand:
    """RavenDB's counters on one document: applied in the batch's transaction, the document must exist."""

    id: str
    operations: tuple[CounterOperation, ...]
    expected_change_vector: str | None = None
    kind: Literal["Counters"] = "Counters"


BatchCommand = PutCommand | DeleteCommand | CountersCommand


@dataclass(frozen=True, slots=True)
class BatchResult:
    id: str
    kind: Literal["PUT", "DELETE", "Counters"]
    document: StoredDocument | None  # the stored document for a PUT or Counters; None for a DELETE
    deleted: bool = False
    counters: tuple[tuple[str, int | None], ...] = ()  # Counters: each named counter's value after (None: absent)
    collection: str | None = None  # DELETE: the collection of the deleted document (for the Changes API)


ATTACHMENTS = "@attachments"


class InvalidAttachment(Exception):
    """An attachment operation on a document that does not exist."""


def attachment_tokens(metadata: JsonObject | None) -> list[str]:
    return [str(a.get("Token")) for a in (metadata or {}).get(ATTACHMENTS) or [] if isinstance(a, dict)]


def with_attachment(metadata: JsonObject, entry: JsonObject) -> tuple[JsonObject, list[str]]:
    """The metadata with ``entry`` in ``@attachments`` (names compare case-insensitively), and the tokens of what it
    replaced."""
    kept, replaced = [], []
    for current in metadata.get(ATTACHMENTS) or []:
        if str(current.get("Name", "")).casefold() == str(entry["Name"]).casefold():
            replaced.append(str(current.get("Token")))
        else:
            kept.append(current)
    entries = sorted([*kept, entry], key=lambda a: str(a.get("Name", "")).casefold())
    return {**metadata, ATTACHMENTS: entries}, replaced


def without_attachment(metadata: JsonObject, name: str) -> tuple[JsonObject, list[str]]:
    entries = metadata.get(ATTACHMENTS) or []
    kept = [a for a in entries if str(a.get("Name", "")).casefold() != name.casefold()]
    gone = [str(a.get("Token")) for a in entries if a not in kept]
    out = {k: v for k, v in metadata.items() if k != ATTACHMENTS}
    if kept:
        out[ATTACHMENTS] = kept
    return out, gone


def with_server_metadata_of(metadata: JsonObject, current_metadata: JsonObject | None) -> JsonObject:
    """A PUT keeps what the server keeps for the document: its counters and attachments."""
    out = with_counters_of(metadata, current_metadata)
    attachments = (current_metadata or {}).get(ATTACHMENTS)
    return {**out, ATTACHMENTS: attachments} if attachments else out


# Counter values live in the document's metadata under this key, which the server never renders and a client's
# copy of which is ignored: they are written, deleted, backed up and restored with the document, in its transaction.
COUNTER_VALUES = "@counter-values"
_MAX_COUNTER = (1 << 63) - 1


class InvalidCounterOperation(Exception):
    """A counters command that cannot apply: the document is missing, or a value would overflow a 64-bit long."""


def with_counters_of(metadata: JsonObject, current_metadata: JsonObject | None) -> JsonObject:
    """A PUT keeps the document's counters (RavenDB: they are not part of what a client writes)."""
    values = (current_metadata or {}).get(COUNTER_VALUES)
    return {**metadata, COUNTER_VALUES: values} if values else metadata


def apply_counters(metadata: JsonObject,
                   operations: tuple[CounterOperation, ...]) -> tuple[JsonObject, tuple[tuple[str, int | None], ...]]:
    """The metadata after the operations, and the value of each counter they named. Names compare
    case-insensitively and keep the spelling they were created with (RavenDB)."""
    values: dict[str, int] = dict(metadata.get(COUNTER_VALUES) or {})
    spelled = {name.casefold(): name for name in values}
    touched: dict[str, None] = {}
    for operation in operations:
        name = spelled.get(operation.name.casefold(), operation.name)
        if operation.kind == "Increment":
            total = values.get(name, 0) + operation.delta
            if not -_MAX_COUNTER - 1 <= total <= _MAX_COUNTER:
                raise InvalidCounterOperation(f"counter '{name}' would overflow a 64-bit whole number")
            values[name] = total
            spelled[name.casefold()] = name
        elif operation.kind == "Delete":
            values.pop(name, None)
            spelled.pop(name.casefold(), None)
        touched[name] = None
    out = {k: v for k, v in metadata.items() if k != COUNTER_VALUES}
    if values:
        out[COUNTER_VALUES] = dict(sorted(values.items(), key=lambda item: item[0].casefold()))
    return out, tuple((name, values.get(name)) for name in touched)


HILO_DOCUMENT_PREFIX = "Raven/Hilo/"
HILO_COLLECTION = "@hilo"
MAX_HILO_NUMBER = (1 << 63) - 1  # a .NET long: what RavenDB and its clients can hold


class InvalidHiLoDocument(Exception):
    """The stored ``Raven/Hilo/<tag>`` document has a ``Max`` that is not a whole number in range."""


def hilo_document_id(tag: str) -> str:
    return HILO_DOCUMENT_PREFIX + tag


def hilo_max(body: JsonObject | None) -> int:
    """The ``Max`` of a HiLo document body (0 when there is none, as RavenDB reads a missing one)."""
    if body is None or "Max" not in body:
        return 0
    value = body["Max"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_HILO_NUMBER:
        raise InvalidHiLoDocument(value)
    return value


def next_hilo_body(body: JsonObject | None, legacy_max: int, capacity: int,
                   last_max: int) -> tuple[JsonObject, int, int]:
    """RavenDB's MergedNextHiLoCommand: the new body (other properties kept), and the range low..high.

    ``legacy_max`` is what an older Roost counted for this tag in its own table: never hand those ids out again.
    """
    old = max(hilo_max(body), legacy_max, last_max)
    if old + capacity > MAX_HILO_NUMBER:
        raise InvalidHiLoDocument(old)
    return {**(body or {}), "Max": old + capacity}, old + 1, old + capacity


class ChangeVectorMismatch(Exception):
    """Raised inside ``apply_batch`` when an expected change vector does not match; nothing is written."""

    def __init__(self, document_id: str, expected: str, actual: str | None) -> None:
        super().__init__(document_id)
        self.document_id = document_id
        self.expected = expected
        self.actual = actual


class CertificateWatcher(Protocol):
    """Receives certificate changes made by other nodes sharing the storage (see ``Storage.watch_certificates``)."""

    def certificates_behind(self) -> None:
        """A notification has arrived and ``certificates_changed`` will follow (called synchronously, at once):
        what is held is about to change, so requests should wait for ``certificates_caught_up``."""

    def certificates_caught_up(self) -> None:
        """Every notification received so far has been delivered to ``certificates_changed``."""

    async def certificates_changed(self, thumbprints: list[str] | None) -> None:
        """These certificates were written or deleted (``None``: possibly all of them); read them again."""

    async def certificates_channel_lost(self) -> None:
        """Changes may be missed from now on: stop trusting what is held until the channel resumes."""

    async def certificates_channel_resumed(self) -> None:
        """Listening again after a loss: anything may have changed in between."""


# Given the stored two-factor entries (id -> state) that exist, returns the entries to write (None: delete).
TwoFactorChange = Callable[[dict[str, JsonObject]], dict[str, JsonObject | None]]


class Storage(Protocol):
    """Async storage. Identifiers are compared case-insensitively (RavenDB's rule) by every backend.

    Change vectors have RavenDB's shape ``A:<etag>-<database id>``; the etag is allocated per database inside
    the write transaction.
    """

    async def close(self) -> None: ...

    # Certificates: the registry's source of truth (public certificates and settings, never private keys).
    async def load_certificates(self) -> list[JsonObject]: ...
    async def put_certificates(self, definitions: list[JsonObject]) -> None: ...
    async def delete_certificates(self, thumbprints: list[str]) -> None: ...
    async def get_certificates(self, thumbprints: list[str]) -> list[JsonObject]: ...
    async def record_last_used(self, last_used: dict[str, str]) -> None: ...
    async def watch_certificates(self, watcher: CertificateWatcher) -> None:
        """Report certificate changes committed by other nodes; returns once listening. Single-node stores
        (SQLite) have no other writers and do nothing."""

    # Databases.
    async def watch_databases(self, changed: Callable[[str | None], None]) -> None:
        """Call ``changed(folded name)`` when another node creates or deletes a database, and ``changed(None)``
        when changes may have been missed (a lost notification channel). Embedded stores do nothing."""
    async def create_database(self, name: str, database_id: str, created: str) -> bool: ...
    async def delete_database(self, name: str, certificate_updates: list[JsonObject]) -> bool: ...
    async def list_databases(self) -> list[DatabaseRow]: ...
    async def get_database(self, name: str) -> DatabaseRow | None: ...

    # Documents.
    async def get_documents(self, database: str, ids: list[str]) -> list[StoredDocument | None]: ...
    async def apply_batch(self, database: str, commands: list[BatchCommand], now: str) -> list[BatchResult]: ...
    async def scan_documents(self, database: str, collection: str | None) -> list[StoredDocument]: ...
    async def page_documents(self, database: str, start: int, size: int) -> list[StoredDocument]:
        """``size`` documents from ``start``, the most recently changed first (RavenDB's order for
        ``GET /docs?start=&pageSize=``), read from storage page by page, never the whole database."""
        ...
    async def count_documents(self, database: str) -> int: ...
    async def collection_counts(self, database: str) -> tuple[int, dict[str | None, int]] | None:
        """The database's last etag and its document count per collection (None: no collection); None when the
        database does not exist. For ``/stats`` and ``/collections/stats``."""
        ...
    async def attachment_and_counter_counts(self, database: str) -> tuple[int, int, int]:
        """How many attachments the database's documents hold, how many distinct contents (by hash), and how many
        counters (RavenDB's CountOfAttachments, CountOfUniqueAttachments, CountOfCounterEntries)."""
        ...
    async def next_hilo_range(self, database: str, tag: str, size: int) -> tuple[int, int]: ...
    async def return_hilo_range(self, database: str, tag: str, end: int, last: int) -> bool:
        """Give back ``last+1..end`` if ``end`` is still the tag's max (nobody took a range since). RavenDB's
        HiLo return: ids are never handed out twice, and the common case leaves no gap."""
        ...
    # The clients' HiLo, as RavenDB keeps it: the document ``Raven/Hilo/<tag>`` with ``Max`` (collection
    # ``@hilo``), read and written in one transaction under the database's write lock, so that a client storing
    # that document sets where the next range starts. (``next_hilo_range`` above is the server's own counters.)
    async def take_hilo_document_range(self, database: str, tag: str, capacity: int, last_max: int,
                                       now: str) -> tuple[int, int]:
        """Reserve ``capacity`` ids after ``max(Max, last_max)``; raises LookupError for a missing database and
        InvalidHiLoDocument when the stored document's Max is not a usable whole number."""
        ...
    async def return_hilo_document_range(self, database: str, tag: str, end: int, last: int, now: str) -> bool:
        """RavenDB's HiLo return: ``Max`` becomes ``last`` only if it is still ``end``."""
        ...

    # Attachments: content is written in chunks under a fresh token first (no lock held while a large body
    # streams in), then ``attach`` links it to the document in one transaction (the document's
    # ``@metadata.@attachments`` entry names the token). Chunks of a token never linked are garbage, never read.
    async def write_attachment_chunk(self, database: str, token: str, seq: int, data: bytes) -> None: ...
    def read_attachment_chunks(self, database: str, token: str) -> AsyncIterator[bytes]:
        """The content of ``token`` chunk by chunk (one chunk in memory at a time)."""
        ...
    async def attach(self, database: str, doc_id: str, entry: JsonObject, now: str) -> StoredDocument:
        """Link ``entry`` (Name, Hash, ContentType, Size, Token) to the document, replacing an attachment of the
        same name (whose chunks go); raises InvalidAttachment when the document does not exist."""
        ...
    async def detach(self, database: str, doc_id: str, name: str, now: str) -> bool: ...
    async def discard_attachment_chunks(self, database: str, token: str) -> None: ...

    # Two-factor state per certificate (session, last accepted TOTP step, failures, lockout): kept in storage so
    # that it survives a restart and is shared by the nodes of a cluster. Never holds a TOTP key or a cookie value.
    async def load_two_factor(self) -> dict[str, JsonObject]: ...
    async def get_two_factor(self, ids: list[str]) -> dict[str, JsonObject]: ...
    async def put_two_factor(self, thumbprint: str, state: JsonObject) -> None: ...
    async def update_two_factor(self, ids: list[str], change: TwoFactorChange) -> None:
        """One atomic read-modify-write of these entries, serialized with every other update of them on every
        node and worker: ``change`` gets what is stored now and returns what to write (``None``: delete). If it
        raises, nothing is written."""
        ...
    async def delete_two_factor(self, thumbprints: list[str]) -> None: ...

    # Small server-wide settings changed at run time (allowed IPs, 2FA sessions, ...).
    async def get_setting(self, key: str) -> Any: ...
    async def put_setting(self, key: str, value: Any) -> None: ...
    async def delete_setting(self, key: str) -> None: ...

    # Leases: one node of a cluster (or one worker) at a time does a periodic job (scheduled backups).
    async def take_lease(self, name: str, now: float, until: float) -> bool:
        """Atomically, on every node: take the lease ``name`` until ``until`` (seconds since the epoch) if nobody
        holds it at ``now``; False when another holder's lease runs past ``now``."""
        ...
    async def release_lease(self, name: str, until: float) -> None:
        """Give the lease ``name`` back before ``until``, if it is still the one taken until then (a lease that ran
        out and was taken by another holder is left alone)."""
        ...

    # The nodes of a cluster (roost.cluster.nodes): one row per tag, owned by one node id, with the URL clients
    # use, the node's server certificate and when it was last seen (the storage's own clock, so that the test
    # clock offset of one node never makes another look dead).
    async def claim_node(self, tag: str, node_id: str, url: str, certificate: str) -> bool:
        """Register ``node_id`` under ``tag`` (or refresh its entry): False when another node id holds the tag.
        Any other tag the node id held is released. Tells every node (``watch_cluster``: ``nodes``, or
        ``nodes:<certificate>`` when it fits in a notification)."""
        ...
    async def node_heartbeat(self, tag: str, node_id: str, *, stopping: bool = False) -> bool:
        """The node is alive (``stopping``: it stops now, so it is no longer live); False when its entry is gone."""
        ...
    async def list_nodes(self, live_seconds: float) -> list[NodeRow]: ...
    async def nodes_version(self) -> int:
        """Grows with every claim and removal: the topology's Etag (RavenDB's clients apply only a higher one)."""
        ...
    async def remove_node(self, tag: str, revoked: list[str]) -> NodeRow | None:
        """Delete the entry; every node hears ``revoke:<thumbprint>`` for each of ``revoked`` before this returns
        (as for certificate deletions) and ``nodes``."""
        ...
    async def notify_cluster(self, topic: str) -> None:
        """Tell every node ``topic`` (``watch_cluster``); returns once delivered. Embedded stores do nothing."""
    async def watch_cluster(self, changed: Callable[[str], None]) -> None:
        """Call ``changed(topic)`` when another node tells the cluster something, and ``changed("*")`` when
        topics may have been missed (a lost channel). Embedded stores do nothing."""


@dataclass(frozen=True)
class NodeRow:
    tag: str
    node_id: str
    url: str
    certificate: str  # base64 DER of the node's server certificate; "" on an unsecured node
    live: bool


# Restores write their rows under a database key that starts with this, which no database name can fold to
# (names never start with "~"), and move them to the target in one commit.
RESTORE_STAGE_PREFIX = "~restore/"


class DuplicateDocumentError(Exception):
    """A restore met the same document id twice (a damaged backup)."""


# A document as backups carry it: id, collection, body (JSON text), metadata (JSON text), change vector, etag,
# last modified. One row type for the snapshot that writes a backup and the restorer that reads one back.
DocumentRow = tuple[str, str | None, str, str, str, int, str]


def staged_document(stage: str, row: DocumentRow) -> tuple[str | int | None, ...]:
    """The ``documents`` columns (db, key, id, collection, collection_key, body, metadata, change_vector, etag,
    last_modified) of a restored row staged under ``stage``: the same on every backend."""
    return (stage, fold(row[0]), row[0], row[1], collection_key(row[1]), *row[2:])


# An attachment's content as backups carry it: token, chunk number, bytes.
AttachmentChunk = tuple[str, int, bytes]


class Snapshot(Protocol):
    """A consistent read-only view of the whole store, for one backup (blocking; used from a worker thread)."""

    def close(self) -> None: ...
    def databases(self) -> list[JsonObject]: ...
    def documents(self, database: str) -> Iterator[DocumentRow]: ...
    def hilo(self, database: str) -> list[tuple[str, int]]: ...
    def attachment_chunks(self, database: str) -> Iterator[AttachmentChunk]: ...
    def certificates(self) -> list[JsonObject]: ...


class Restorer(Protocol):
    """Writes one restored database under a staging key; ``finish`` makes it appear in one commit."""

    def close(self) -> None: ...
    def target_state(self, name: str) -> tuple[bool, int]: ...
    def insert_documents(self, stage: str, rows: list[DocumentRow]) -> None: ...
    def insert_attachment_chunks(self, stage: str, rows: list[AttachmentChunk]) -> None: ...
    def finish(self, name: str, stage: str, database_id: str, created: str, last_etag: int, record: JsonObject,
               hilo: list[tuple[str, int]]) -> int: ...
    def discard(self, stage: str) -> None: ...
    def discard_abandoned(self) -> int: ...


@runtime_checkable
class Snapshotting(Protocol):
    """A storage that backups can read whole and restores can write (SQLite and PostgreSQL, one file format)."""

    def snapshot(self) -> Snapshot: ...
    def restorer(self) -> Restorer: ...
