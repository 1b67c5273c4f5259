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

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost import clock
from roost.errors import BadRequestError

FORMAT = "roost-backup"
VERSION = 1
_CHUNK = 256 * 1024
# Fields of a certificate definition that a backup never carries (secrets stay on the server).
_SECRET_CERTIFICATE_FIELDS = ("TwoFactorAuthenticationKey",)


class BackupFormatError(BadRequestError):
    """The decrypted content is not a complete Roost backup."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def plaintext(snapshot: Any, databases: list[str], *, scope: str, stats: dict[str, int] | None = None
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


def lines(path: Path) -> Iterator[dict[str, Any]]:
    """Parsed lines of a decrypted (staged) backup."""
    try:
        with gzip.open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    yield json.loads(raw)
                except ValueError:
                    raise BackupFormatError(f"Line {number} of the backup is not JSON: not a Roost backup.") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupFormatError(f"The decrypted backup is not a complete gzip stream ({exc}).") from None


def check(path: Path) -> Summary:
    """Read the whole staged plaintext once: structure, counts and trailer. Raises BackupFormatError."""
    it = lines(path)
    header = next(it, None)
    if not isinstance(header, dict) or header.get("Format") != FORMAT:
        raise BackupFormatError("This is not a Roost backup (no roost-backup header).")
    if header.get("Version") != VERSION:
        raise BackupFormatError(f"Backup format version {header.get('Version')} is not supported by this Roost.")
    sections: list[DatabaseSection] = []
    current: DatabaseSection | None = None
    total = certificates = 0
    for entry in it:
        if "D" in entry:
            if current is None:
                raise BackupFormatError("A document appears outside a database section.")
            current.documents += 1
        elif "Database" in entry:
            d = entry["Database"]
            current = DatabaseSection(d["Name"], d["DatabaseId"], d["Created"], int(d["LastEtag"]), d.get("Record", {}))
        elif "Hilo" in entry and current is not None:
            current.hilo = [(str(t), int(m)) for t, m in entry["Hilo"]]
        elif "EndDatabase" in entry:
            if current is None or entry["Documents"] != current.documents:
                raise BackupFormatError("A database section is incomplete (document count differs).")
            sections.append(current)
            total += current.documents
            current = None
        elif "Certificates" in entry:
            certificates = len(entry["Certificates"])
        elif entry.get("End") is True:
            if entry.get("Documents") != total or entry.get("Databases") != len(sections) or current is not None:
                raise BackupFormatError("The backup's trailer does not match its content.")
            return Summary(header.get("Created", ""), header.get("Scope", ""), sections, total, certificates)
    raise BackupFormatError("The backup ends early (no trailer): it is truncated.")


def documents(path: Path, database: str) -> Iterator[tuple[str, str | None, str, str, str, int, str]]:
    """The stored rows of one database section, bodies and metadata as JSON text."""
    inside = False
    for entry in lines(path):
        if "Database" in entry:
            inside = entry["Database"]["Name"] == database
        elif inside and "D" in entry:
            d = entry["D"]
            yield (d[0], d[1], json.dumps(d[2]), json.dumps(d[3]), d[4], int(d[5]), d[6])
        elif inside and "EndDatabase" in entry:
            return
