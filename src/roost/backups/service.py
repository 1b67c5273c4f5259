"""Create, verify and restore encrypted backups; every one logged and audited. Runs in worker threads.

Create: storage snapshot -> gzip JSON lines (format.py) -> age (crypto.py) -> a file or the HTTP response, all
streaming with bounded buffers, so memory stays flat whatever the database size.

Restore is staged: the encrypted upload is written to ``<data-dir>/backup-staging/``, decrypted there in full (age
authenticates every chunk and the end), its structure and counts checked, and only then applied to storage. A
wrong key, an altered byte or a truncated file therefore restores nothing. Staged files are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrage import x25519  # type: ignore[import-untyped]

from roost.backups import crypto, format
from roost.errors import BadRequestError, ConflictError, NotFoundError, RoostError
from roost.security.audit import Event
from roost.storage.base import (
    RESTORE_STAGE_PREFIX,
    AttachmentChunk,
    DocumentRow,
    DuplicateDocumentError,
    Snapshotting,
    Storage,
)

if TYPE_CHECKING:
    from roost.documents.store import DocumentStore
    from roost.security.audit import AuditLog
    from roost.security.identity import Identity

log = logging.getLogger("roost.backups")
STAGING = "backup-staging"
EXTENSION = ".roostbackup"
_BATCH = 2000


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Lock:
    """How a backup is encrypted: to public keys, or with a passphrase (never stored, never logged)."""

    recipients: tuple[str, ...] = ()
    passphrase: str | None = None

    @classmethod
    def parse(cls, recipients: Any, passphrase: Any) -> Lock:
        if recipients is not None and not isinstance(recipients, list):
            raise BadRequestError("Recipients must be a list of age public keys (age1...).")
        if passphrase is not None and (not isinstance(passphrase, str) or len(passphrase) < 8):
            raise BadRequestError("Passphrase must be a string of at least 8 characters.")
        if isinstance(passphrase, str) and not _is_unicode(passphrase):
            # Found by tests/test_fuzz.py: age failed on it after the response had started (a cut download).
            raise BadRequestError("Passphrase holds invalid Unicode (a lone surrogate); use characters only.")
        if recipients and passphrase:
            raise BadRequestError("Give Recipients or a Passphrase, not both.")
        if not recipients and not passphrase:
            raise BadRequestError("A backup is always encrypted: give Recipients (age1... keys) or a Passphrase.")
        crypto.parse_recipients(recipients or [])
        return cls(tuple(r.strip() for r in recipients or []), passphrase)

    @property
    def kind(self) -> str:
        return "passphrase" if self.passphrase else "recipients"

    def audit_fields(self) -> dict[str, Any]:
        return {"Encryption": self.kind, "Recipients": list(self.recipients)}


@dataclass(frozen=True)
class Result:
    databases: list[str]
    documents: int
    bytes: int
    seconds: float


class _CountingWriter:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.inner.write(data)
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        if hasattr(self.inner, "flush"):
            self.inner.flush()


class BackupService:
    """Backups of the databases in ``storage`` (when it is Snapshotting), audited in ``audit``."""

    def __init__(self, storage: Storage, documents: DocumentStore, audit: AuditLog, data_dir: Path) -> None:
        self._snapshots = storage if isinstance(storage, Snapshotting) else None
        self._documents = documents
        self._audit = audit
        self._restoring: set[str] = set()
        self.staging = data_dir / STAGING
        shutil.rmtree(self.staging, ignore_errors=True)  # left by a crash: never applied, never kept
        if self._snapshots is not None:  # rows of a restore a crash interrupted: never part of any database
            staged = self._snapshots.restorer()
            try:
                removed = staged.discard_abandoned()
            finally:
                staged.close()
            if removed:
                log.warning("Removed %d documents of a restore that did not finish (the server stopped).", removed)

    def _storage(self) -> Snapshotting:
        if self._snapshots is None:
            raise BadRequestError("This storage does not support backups.")
        return self._snapshots

    async def database_names(self, names: list[str] | None) -> list[str]:
        """Resolve requested names (None: every database) with their stored spelling; 404 for an unknown one."""
        known = {row.name.casefold(): row.name for row in await self._documents.list_databases()}
        if names is None:
            return sorted(known.values(), key=str.casefold)
        out = []
        for name in names:
            if name.casefold() not in known:
                raise NotFoundError(f"Database '{name}' does not exist; nothing was backed up.")
            out.append(known[name.casefold()])
        return out

    # Create ------------------------------------------------------------------------------------------------

    def write(self, out: Any, databases: list[str], lock: Lock, *, scope: str) -> Result:
        """Blocking: the whole encrypted backup into ``out`` (``write``)."""
        started = time.monotonic()
        snapshot = self._storage().snapshot()
        counted = _CountingWriter(out)
        try:
            stats: dict[str, int] = {}
            reader = format.IterReader(format.plaintext(snapshot, databases, scope=scope, stats=stats))
            crypto.encrypt(reader, counted, recipients=crypto.parse_recipients(lock.recipients) or None,
                           passphrase=lock.passphrase)
        finally:
            snapshot.close()
        return Result(databases, stats.get("Documents", 0), counted.bytes, time.monotonic() - started)

    def write_file(self, path: Path, databases: list[str], lock: Lock, *, scope: str) -> Result:
        """Write to ``path`` via a hidden partial file renamed at the end: a failure never leaves a half backup
        under a backup's name, and never touches an older one."""
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            with partial.open("xb") as f:
                os.chmod(partial, 0o600)
                result = self.write(f, databases, lock, scope=scope)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return result

    def audit_created(self, actor: Identity | None, result: Result, lock: Lock, target: str, **extra: Any) -> None:
        self._audit.record(Event.BACKUP_CREATED, actor=actor, Databases=result.databases, Bytes=result.bytes,
                                  Seconds=round(result.seconds, 3), Target=target, **lock.audit_fields(), **extra)
        log.info("Backup of %s: %d bytes in %.1f s to %s", ", ".join(result.databases) or "(no databases)",
                 result.bytes, result.seconds, target)

    def audit_failed(self, actor: Identity | None, databases: list[str], error: str) -> None:
        self._audit.record(Event.BACKUP_FAILED, actor=actor, Databases=databases, Error=error)

    async def restore_staged(self, encrypted: Path, target: str, source: str | None, *, actor: Identity | None,
                             identities: list[x25519.Identity] | None, passphrase: str | None) -> tuple[str, int]:
        """``restore`` in a worker thread, audited either way (restored, or refused with the reason)."""
        started = time.monotonic()
        try:
            source_name, count = await asyncio.to_thread(
                self.restore, encrypted, target, source, identities=identities, passphrase=passphrase)
        except RoostError as exc:
            self._audit.record(Event.BACKUP_RESTORE_REFUSED, actor=actor, Database=target, Reason=exc.message)
            raise
        except Exception as exc:
            self._audit.record(Event.BACKUP_RESTORE_REFUSED, actor=actor, Database=target, Reason=type(exc).__name__)
            raise
        await self._documents.list_databases()  # the restored database is now known to this node
        self._audit.record(Event.BACKUP_RESTORED, actor=actor, Database=target, From=source_name, Documents=count,
                           Seconds=round(time.monotonic() - started, 3))
        return source_name, count

    # Restore -----------------------------------------------------------------------------------------------

    def staged_path(self) -> Path:
        self.staging.mkdir(mode=0o700, exist_ok=True)
        return self.staging / f"{secrets.token_hex(8)}.upload"

    def restore(self, encrypted: Path, target: str, source: str | None, *,
                identities: list[x25519.Identity] | None, passphrase: str | None,
                progress: Callable[[str], None] | None = None) -> tuple[str, int]:
        """Blocking. Decrypt the staged upload in full, check it, then write ``target``. Returns (source, docs)."""
        key = target.casefold()
        if key in self._restoring:
            raise ConflictError(f"A restore into '{target}' is already running.")
        self._restoring.add(key)
        plain = encrypted.with_suffix(".plain")
        restorer = self._storage().restorer()
        # Rows go in under a staging key and become the target's in finish()'s one commit: a crash at any point
        # leaves either nothing or the whole database (the rest is removed at the next start, see __init__).
        stage = RESTORE_STAGE_PREFIX + secrets.token_hex(8)
        applied = False
        try:
            exists, count = restorer.target_state(target)
            if count:
                raise ConflictError(
                    f"Database '{target}' already holds {count} documents. Restore into a new or empty database.")
            with encrypted.open("rb") as src, plain.open("xb") as dst:
                os.chmod(plain, 0o600)
                crypto.decrypt(src, dst, identities=identities, passphrase=passphrase)
            summary = format.check(plain)  # the whole file authenticated, is complete and well-formed: now apply
            section = _pick(summary, source)
            batch: list[DocumentRow] = []
            written = 0
            applied = True
            try:
                for row in format.documents(plain, section.name):
                    batch.append(row)
                    if len(batch) >= _BATCH:
                        restorer.insert_documents(stage, batch)
                        written += len(batch)
                        batch = []
                if batch:
                    restorer.insert_documents(stage, batch)
                    written += len(batch)
            except DuplicateDocumentError:
                raise format.BackupFormatError(
                    "The backup is damaged: a document id appears twice. Nothing was restored.") from None
            if written != section.documents:
                raise format.BackupFormatError("The backup changed while it was being restored.")
            try:
                chunks: list[AttachmentChunk] = []
                for chunk in format.attachment_chunks(plain, section.name):
                    chunks.append(chunk)
                    if len(chunks) >= 16:  # up to 16 MiB held: attachment chunks are 1 MiB
                        restorer.insert_attachment_chunks(stage, chunks)
                        chunks = []
                if chunks:
                    restorer.insert_attachment_chunks(stage, chunks)
            except DuplicateDocumentError:
                raise format.BackupFormatError(
                    "The backup is damaged: an attachment chunk appears twice. Nothing was restored.") from None
            held = restorer.finish(target, stage, section.database_id, section.created, section.last_etag,
                                   section.record, section.hilo)
            if held:
                raise ConflictError(f"Database '{target}' received {held} documents while the backup was being "
                                    "restored. Restore into a new or empty database.")
            applied = False
            return section.name, written
        except BaseException:
            if applied:
                restorer.discard(stage)
            raise
        finally:
            restorer.close()
            self._restoring.discard(key)
            plain.unlink(missing_ok=True)
            encrypted.unlink(missing_ok=True)


def _pick(summary: format.Summary, source: str | None) -> format.DatabaseSection:
    if source is None:
        if len(summary.databases) != 1:
            names = ", ".join(s.name for s in summary.databases) or "none"
            raise BadRequestError(f"This backup holds {len(summary.databases)} databases ({names}); say which one to "
                                  "restore (--from-db NAME).")
        return summary.databases[0]
    for section in summary.databases:
        if section.name.casefold() == source.casefold():
            return section
    raise NotFoundError(f"The backup holds no database '{source}'.")


def verify_file(path: Path, *, identities: list[x25519.Identity] | None, passphrase: str | None,
                staging: Path) -> format.Summary:
    """Decrypt into a temporary file and check the content; nothing is restored. Used by ``roost backup verify``."""
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    plain = staging / f".verify-{secrets.token_hex(8)}.plain"
    try:
        with path.open("rb") as src, plain.open("xb") as dst:
            os.chmod(plain, 0o600)
            crypto.decrypt(src, dst, identities=identities, passphrase=passphrase)
        return format.check(plain)
    finally:
        plain.unlink(missing_ok=True)

