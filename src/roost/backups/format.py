"""The plaintext inside a backup: gzip-compressed JSON lines, written and read as streams.

    {"Format": "roost-backup", "Version": 1, "Created": ..., "Scope": "database" | "all", "Databases": [...]}
    {"Database": {"Name", "DatabaseId", "Created", "LastEtag", "Record"}}
    {"D": [id, collection, body, metadata, change vector, etag, last modified]}     one per document
    {"Hilo": [[tag, max], ...]}
    {"EndDatabase": name, "Documents": n}
    {"Certificates": [definition, ...]}                     --all only: public certificates and settings
    {"End": true, "Databases": n, "Documents": n}

Documents are copied as the storage holds them (bodies are not re-encoded), with their change vectors and etags,
so a restore is identical. The trailer makes a plaintext that ends early detectable on its own.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost import clock
from roost.errors import BadRequestError
from roost.names import database_name, document_id
from roost.storage.base import AttachmentChunk, DocumentRow, Snapshot

FORMAT = "roost-backup"
VERSION = 1
_CHUNK = 256 * 1024
# Fields of a certificate definition that a backup never carries (secrets stay on the server).
_SECRET_CERTIFICATE_FIELDS = ("TwoFactorAuthenticationKey",)


class BackupFormatError(BadRequestError):
    """The decrypted content is not a complete Roost backup."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def plaintext(snapshot: Snapshot, databases: list[str], *, scope: str, stats: dict[str, int] | None = None
              ) -> Iterator[bytes]:
    """gzip bytes of the whole backup, produced lazily in ~256 KiB pieces from a storage snapshot."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: JSON still shrinks ~5x, at ~100 MB/s
    pending: list[str] = []
    size = 0

    def emit(line: str) -> Iterator[bytes]:
        nonlocal size
        pending.append(line)
        size += len(line)
        if size >= _CHUNK:
            data = compressor.compress("".join(pending).encode())
            pending.clear()
            size = 0
            if data:
                yield data

    rows = {row["Name"].casefold(): row for row in snapshot.databases()}
    chosen = [rows[name.casefold()] for name in databases if name.casefold() in rows]
    header = {"Format": FORMAT, "Version": VERSION, "Scope": scope,
              "Created": clock.now().isoformat(timespec="seconds").replace("+00:00", "Z"),
              "Databases": [row["Name"] for row in chosen]}
    yield from emit(_dumps(header) + "\n")
    total = 0
    for row in chosen:
        yield from emit(_dumps({"Database": row}) + "\n")
        count = 0
        for doc_id, collection, body, metadata, change_vector, etag, last_modified in snapshot.documents(row["Name"]):
            yield from emit(f'{{"D":[{_dumps(doc_id)},{_dumps(collection)},{body},{metadata},'
                            f'{_dumps(change_vector)},{etag},{_dumps(last_modified)}]}}\n')
            count += 1
        # Attachment content (counters travel in the documents' metadata): one chunk per line, base64.
        for token, seq, data in snapshot.attachment_chunks(row["Name"]):
            yield from emit(f'{{"A":[{_dumps(token)},{seq},"{base64.b64encode(data).decode()}"]}}\n')
        yield from emit(_dumps({"Hilo": snapshot.hilo(row["Name"])}) + "\n")
        yield from emit(_dumps({"EndDatabase": row["Name"], "Documents": count}) + "\n")
        total += count
    if scope == "all":
        certificates = [{k: v for k, v in d.items() if k not in _SECRET_CERTIFICATE_FIELDS}
                        for d in snapshot.certificates()]
        yield from emit(_dumps({"Certificates": certificates}) + "\n")
    yield from emit(_dumps({"End": True, "Databases": len(chosen), "Documents": total}) + "\n")
    if stats is not None:
        stats["Documents"] = total
    data = compressor.compress("".join(pending).encode()) + compressor.flush()
    if data:
        yield data


class IterReader:
    """A file-like ``read(n)`` over an iterator of byte chunks (pyrage pulls plaintext from it)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.total += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass
class DatabaseSection:
    name: str
    database_id: str
    created: str
    last_etag: int
    record: dict[str, Any]
    documents: int = 0
    hilo: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Summary:
    created: str
    scope: str
    databases: list[DatabaseSection]
    documents: int
    certificates: int


# A line of the plaintext is one document at most (bodies are limited by HttpMaxBodySize when written), or the
# certificate list; a longer one is not something Roost wrote, and reading it whole would cost unbounded memory.
_MAX_LINE = 256 * 1024 * 1024
_MAX_DEPTH = 256
_INT64 = 1 << 63



def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def lines(path: Path) -> Iterator[Any]:
    """Parsed lines of a decrypted (staged) backup."""
    try:
        with gzip.open(path, "rb") as f:
            number = 0
            while raw := f.readline(_MAX_LINE + 1):
                number += 1
                if len(raw) > _MAX_LINE:
                    raise BackupFormatError(f"Line {number} of the backup is longer than any Roost writes.")
                try:
                    yield json.loads(raw, parse_constant=_no_constants)
                except (ValueError, RecursionError):
                    raise BackupFormatError(f"Line {number} of the backup is not JSON: not a Roost backup.") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupFormatError(f"The decrypted backup is not a complete gzip stream ({exc}).") from None


def _bad(what: str) -> BackupFormatError:
    return BackupFormatError(f"The backup is damaged: {what}. Nothing was restored.")


def _text(value: Any, what: str, *, empty: bool = False, limit: int = 4096) -> str:
    if not isinstance(value, str) or (not empty and not value) or len(value) > limit:
        raise _bad(f"{what} is not a string of 1 to {limit} characters")
    _unicode(value, what)
    return value


def _unicode(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{what} holds invalid Unicode (a lone surrogate)") from None


def _integer(value: Any, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < _INT64:
        raise _bad(f"{what} is not a whole number between {low} and 2^63-1")
    return value


def _json_object(value: Any, what: str) -> dict[str, Any]:
    """A JSON object a reader can always render again: valid Unicode everywhere, finite numbers, bounded depth."""
    if not isinstance(value, dict):
        raise _bad(f"{what} is not a JSON object")
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise _bad(f"{what} is nested deeper than {_MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, inner in item.items():
                _unicode(key, what)
                stack.append((inner, depth + 1))
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)
        elif isinstance(item, str):
            _unicode(item, what)
        elif isinstance(item, float) and not math.isfinite(item):
            raise _bad(f"{what} holds a number too large for JSON")
    return value


def _database(value: Any) -> DatabaseSection:
    if not isinstance(value, dict):
        raise _bad("a database section header is not an object")
    try:
        name = database_name(value.get("Name"))
    except BadRequestError:
        raise _bad("a database section has no valid Name") from None
    return DatabaseSection(name, _text(value.get("DatabaseId"), "DatabaseId", limit=128),
                           _text(value.get("Created"), "Created", limit=64),
                           _integer(value.get("LastEtag"), "LastEtag"),
                           _json_object(value.get("Record", {}), "Record"))


def _hilo(value: Any) -> list[tuple[str, int]]:
    if not isinstance(value, list):
        raise _bad("Hilo is not a list")
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise _bad("a Hilo entry is not a [tag, max] pair")
        tag = _text(pair[0], "a Hilo tag", limit=512)
        if tag.casefold() in seen:
            raise _bad(f"Hilo tag '{tag}' appears twice")
        seen.add(tag.casefold())
        out.append((tag, _integer(pair[1], "a Hilo maximum")))
    return out


def _row(value: Any) -> DocumentRow:
    """One stored document, checked as strictly as the API checks a PUT: what a restore writes stays readable."""
    if not isinstance(value, list) or len(value) != 7:
        raise _bad("a document line is not [id, collection, body, metadata, change vector, etag, modified]")
    doc_id, collection, body, metadata, change_vector, etag, last_modified = value
    try:
        document_id(doc_id)
    except BadRequestError:
        raise _bad("a document has no valid id") from None
    _unicode(doc_id, "a document id")
    if collection is not None:
        _text(collection, f"the collection of '{doc_id}'", limit=512)
    return (doc_id, collection, json.dumps(_json_object(body, f"the body of '{doc_id}'")),
            json.dumps(_json_object(metadata, f"the metadata of '{doc_id}'")),
            _text(change_vector, f"the change vector of '{doc_id}'", empty=True, limit=65536),
            _integer(etag, f"the etag of '{doc_id}'", low=1),
            _text(last_modified, f"the modification time of '{doc_id}'", limit=64))


def _chunk(value: Any) -> AttachmentChunk:
    if not isinstance(value, list) or len(value) != 3:
        raise _bad("an attachment line is not [token, chunk number, base64 content]")
    token = _text(value[0], "an attachment token", limit=64)
    seq = _integer(value[1], "an attachment chunk number")
    if not isinstance(value[2], str):
        raise _bad("an attachment chunk is not base64 text")
    try:
        data = base64.b64decode(value[2], validate=True)
    except ValueError:
        raise _bad("an attachment chunk is not base64") from None
    return token, seq, data


def attachment_chunks(path: Path, database: str) -> Iterator[AttachmentChunk]:
    """The attachment content of one database section (checked by ``check`` first)."""
    return (_chunk(value) for value in _section(path, database, "A"))


def _section(path: Path, database: str, kind: str) -> Iterator[Any]:
    """The values of the ``kind`` lines ("D" documents, "A" attachment chunks) of one database section."""
    inside = False
    for entry in lines(path):
        if "Database" in entry:
            inside = entry["Database"]["Name"] == database
        elif inside and kind in entry:
            yield entry[kind]
        elif inside and "EndDatabase" in entry:
            return


def check(path: Path) -> Summary:
    """Read the whole staged plaintext once: structure, types, counts and trailer. Raises BackupFormatError, and
    nothing else, for any content (a well-encrypted file is not a trusted one)."""
    it = lines(path)
    header = next(it, None)
    if not isinstance(header, dict) or header.get("Format") != FORMAT:
        raise BackupFormatError("This is not a Roost backup (no roost-backup header).")
    version = header.get("Version")
    if isinstance(version, bool) or version != VERSION:
        raise BackupFormatError(f"Backup format version {str(version)[:20]!r} is not supported by this Roost.")
    sections: list[DatabaseSection] = []
    seen: set[str] = set()
    current: DatabaseSection | None = None
    total = certificates = 0
    for entry in it:
        if not isinstance(entry, dict) or len(entry) == 0:
            raise _bad("a line is not a backup entry")
        if "D" in entry:
            if current is None:
                raise BackupFormatError("A document appears outside a database section.")
            _row(entry["D"])
            current.documents += 1
        elif "A" in entry:
            if current is None:
                raise _bad("attachment content appears outside a database section")
            _chunk(entry["A"])
        elif "Database" in entry:
            if current is not None:
                raise _bad("a database section starts inside another")
            current = _database(entry["Database"])
            if current.name.casefold() in seen:
                raise _bad(f"database '{current.name}' appears twice")
            seen.add(current.name.casefold())
        elif "Hilo" in entry:
            if current is None:
                raise _bad("Hilo appears outside a database section")
            current.hilo = _hilo(entry["Hilo"])
        elif "EndDatabase" in entry:
            if current is None or entry["EndDatabase"] != current.name or entry.get("Documents") != current.documents:
                raise BackupFormatError("A database section is incomplete (document count differs).")
            sections.append(current)
            total += current.documents
            current = None
        elif "Certificates" in entry:
            listed = entry["Certificates"]
            if not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed):
                raise _bad("Certificates is not a list of objects")
            certificates = len(listed)
        elif entry.get("End") is True:
            if entry.get("Documents") != total or entry.get("Databases") != len(sections) or current is not None:
                raise BackupFormatError("The backup's trailer does not match its content.")
            created, scope = header.get("Created", ""), header.get("Scope", "")
            return Summary(created if isinstance(created, str) else "", scope if isinstance(scope, str) else "",
                           sections, total, certificates)
        else:
            raise _bad("a line is not a backup entry")
    raise BackupFormatError("The backup ends early (no trailer): it is truncated.")


def documents(path: Path, database: str) -> Iterator[DocumentRow]:
    """The stored rows of one database section (checked by ``check`` first), bodies and metadata as JSON text."""
    return (_row(value) for value in _section(path, database, "D"))
