"""The audit log: append-only, hash-chained JSON lines in ``<data-dir>/audit.log``.

Each line is one JSON object with ``Seq`` (1, 2, 3, ...), ``Time`` (UTC), ``Event``, ``Node`` (the tag of the node
that wrote it), the fields of the event and ``Prev``: the SHA-256 (hex) of the previous line's exact bytes (64 zeros
for the first). Editing, removing or reordering a line breaks the chain at that point, and ``verify`` names the
first entry that does not fit. Removing the *last* lines leaves a valid shorter chain; the server therefore also
keeps the newest ``Seq`` and hash in its storage, which ``roost audit verify`` compares with the file.

Every node of a cluster keeps its own chain in its own data directory, and its own head in the shared storage
(``audit.head.<tag>``, read through the Storage protocol on every backend): nodes never write each other's head,
and each chain verifies on its own (``roost audit verify --node B``).

API for other parts of the server (certificate management, 2FA, server-certificate renewal, backups)::

    server.audit.record(Event.CERTIFICATE_GENERATED, actor=identity, Thumbprint=..., Clearance=..., Permissions=...)

``actor`` is the caller's Identity (its name and thumbprint are recorded), or None for the server itself. Field
names are CamelCase like the rest of Roost's JSON. A field whose name says it holds a secret (password,
passphrase, private key, TOTP key, identity) is refused with ValueError: no secret ever reaches the log.
Writes are synchronous and small (one write + fsync); events are rare and each one must survive a crash.

Events recorded by Roost: ``auth.refused`` (rate-limited per thumbprint or address), ``certificate.generated``,
``.uploaded``, ``.edited``, ``.deleted``, ``.purged``, ``.implicitly-trusted``, ``twofactor.succeeded``,
``.failed``, ``.locked``, ``database.created``, ``.deleted``, ``backup.created``, ``.failed``,
``backup.restored``, ``.restore-refused``, ``allowlist.changed``, ``server-certificate.replaced``, ``.renewed``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roost import clock

if TYPE_CHECKING:
    from roost.security.identity import Identity
    from roost.storage.base import Storage

class Event(StrEnum):
    """Every event Roost records: the one list (a test checks each is recorded somewhere)."""

    AUTH_REFUSED = "auth.refused"
    CERTIFICATE_GENERATED = "certificate.generated"
    CERTIFICATE_UPLOADED = "certificate.uploaded"
    CERTIFICATE_EDITED = "certificate.edited"
    CERTIFICATE_DELETED = "certificate.deleted"
    CERTIFICATE_PURGED = "certificate.purged"
    CERTIFICATE_RETIRED = "certificate.retired"  # renewed, then unused for Settings.renewed_certificate_retire_days
    CERTIFICATE_IMPLICITLY_TRUSTED = "certificate.implicitly-trusted"
    TWOFACTOR_SUCCEEDED = "twofactor.succeeded"
    TWOFACTOR_FAILED = "twofactor.failed"
    TWOFACTOR_LOCKED = "twofactor.locked"
    TWOFACTOR_SESSION_ENDED = "twofactor.session-ended"  # by an administrator (a logout is the holder's own)
    TWOFACTOR_LOCKOUT_LIFTED = "twofactor.lockout-lifted"
    DATABASE_CREATED = "database.created"
    DATABASE_DELETED = "database.deleted"
    BACKUP_CREATED = "backup.created"
    BACKUP_FAILED = "backup.failed"
    BACKUP_RESTORED = "backup.restored"
    BACKUP_RESTORE_REFUSED = "backup.restore-refused"
    BACKUP_SCHEDULE_SET = "backup.schedule-set"
    BACKUP_SCHEDULE_DELETED = "backup.schedule-deleted"
    ALLOWLIST_CHANGED = "allowlist.changed"
    SERVER_CERTIFICATE_REPLACED = "server-certificate.replaced"
    SERVER_CERTIFICATE_RENEWED = "server-certificate.renewed"
    CLUSTER_NODE_REMOVED = "cluster.node-removed"
    SERVER_CERTIFICATE_REPLACEMENT_STARTED = "server-certificate.replacement-started"
    SERVER_CERTIFICATE_REPLACEMENT_ABANDONED = "server-certificate.replacement-abandoned"


GENESIS = "0" * 64
HEAD_SETTING = "audit.head"  # before per-node chains: one key for the single node of an embedded store
DEFAULT_NODE = "A"
FILE_NAME = "audit.log"
_SECRET_WORDS = ("password", "passphrase", "privatekey", "secret", "totp", "twofactorkey", "identity", "pfx")
REFUSAL_WINDOW_SECONDS = 60.0


def head_key(node: str) -> str:
    """The storage setting that holds node ``node``'s newest [Seq, hash]."""
    return f"{HEAD_SETTING}.{node}"


async def stored_head(storage: Storage, node: str, *, single_node: bool = False) -> tuple[int, str] | None:
    """The newest Seq/hash node ``node`` noted in storage (None: never noted). ``single_node``: an embedded store
    written by one node only, where the key of an older Roost (``audit.head``, one for all) is that node's."""
    stored = await storage.get_setting(head_key(node))
    if stored is None and single_node:
        stored = await storage.get_setting(HEAD_SETTING)
    if stored is None:
        return None
    seq, digest = stored
    return int(seq), str(digest)


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _check_no_secret(fields: dict[str, Any]) -> None:
    for name in fields:
        folded = name.replace("_", "").replace("-", "").casefold()
        if any(word in folded for word in _SECRET_WORDS):
            raise ValueError(f"The audit field '{name}' looks like a secret; secrets never go into the audit log.")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    message: str
    first_bad_seq: int | None = None
    last_hash: str = GENESIS


class AuditLog:
    def __init__(self, path: Path, node: str = DEFAULT_NODE) -> None:
        self.path = path
        self.node = node  # every entry names it; the head is kept under head_key(node)
        self._lock = threading.Lock()  # backups run in worker threads and record from there
        self._seq, self._prev = _tail_state(path)
        self._size = path.stat().st_size if path.exists() else 0  # the file's size after our last append
        # auth.refused rate limit: key -> (window start, suppressed count)
        self._refusals: dict[str, tuple[float, int]] = {}
        self.on_append: list[Any] = []  # callables (seq, hash): the server keeps the head in storage
        self.on_entry: list[Any] = []  # callables (entry), after it is on disk: the webhooks (roost.webhooks)

    @property
    def head(self) -> tuple[int, str]:
        return self._seq, self._prev

    def record(self, event: Event, *, actor: Identity | None = None, **fields: Any) -> dict[str, Any]:
        _check_no_secret(fields)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                # The worker processes of one node (roost serve --workers) share this file and this chain: one
                # append at a time, each continuing the chain from whatever the last one wrote.
                fcntl.flock(fd, fcntl.LOCK_EX)
                entry = self._append(fd, event, actor, fields)
            finally:
                os.close(fd)  # releases the lock
            head = (self._seq, self._prev)
        for hook in self.on_append:
            hook(*head)
        for listener in self.on_entry:
            listener(entry)
        return entry

    def _append(self, fd: int, event: Event, actor: Identity | None, fields: dict[str, Any]) -> dict[str, Any]:
        size = os.fstat(fd).st_size
        if size > self._size:
            # Another process of this node appended since our last entry: continue from its last line. Never from
            # a file that shrank or whose last Seq is not beyond ours: lines cut off while we run stay a gap that
            # verify reports, instead of a shorter chain carried on.
            seq, prev = _tail_state(self.path)
            if seq > self._seq:
                self._seq, self._prev = seq, prev
        entry: dict[str, Any] = {
            "Seq": self._seq + 1,
            "Time": clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "Event": event,
            "Node": self.node,
        }
        if actor is not None:
            entry["Actor"] = actor.display_name or actor.status.value
            if actor.thumbprint:
                entry["ActorThumbprint"] = actor.thumbprint
        entry.update(fields)
        entry["Prev"] = self._prev
        text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        try:
            line = text.encode()
        except UnicodeEncodeError:  # a lone surrogate echoed from a request: escaped, never a lost entry
            line = json.dumps(entry, ensure_ascii=True, separators=(",", ":"), default=str).encode()
        os.write(fd, line + b"\n")
        os.fsync(fd)
        self._size = os.fstat(fd).st_size
        self._seq += 1
        self._prev = line_hash(line)
        return entry

    def record_refusal(self, key: str, actor: Identity, reason: str, address: str | None) -> None:
        """``auth.refused``, at most once per ``key`` (thumbprint or address) a minute; the next entry says how
        many were left out, so a flood of bad requests can neither fill the disk nor hide."""
        now = time.monotonic()
        window = self._refusals.get(key)
        if window is not None and now - window[0] < REFUSAL_WINDOW_SECONDS:
            self._refusals[key] = (window[0], window[1] + 1)
            return
        suppressed = window[1] if window else 0
        if len(self._refusals) > 10000:
            self._refusals = {k: v for k, v in self._refusals.items() if now - v[0] < REFUSAL_WINDOW_SECONDS}
        self._refusals[key] = (now, 0)
        fields: dict[str, Any] = {"Status": actor.status.value, "Reason": reason, "Address": address}
        if actor.thumbprint:
            fields["Thumbprint"] = actor.thumbprint
        if suppressed:
            fields["Suppressed"] = suppressed
        self.record(Event.AUTH_REFUSED, **fields)

    def read(self, since: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Entries with Seq > since (oldest first), or the newest ``limit`` entries when since is None."""
        if since is None:
            tail: list[dict[str, Any]] = []
            for entry in self.entries():
                tail.append(entry)
                if len(tail) > limit:
                    del tail[0]
            return tail
        out: list[dict[str, Any]] = []
        for entry in self.entries():
            if entry.get("Seq", 0) > since:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for raw in f:
                raw = raw.rstrip(b"\n")
                if raw:
                    try:
                        yield json.loads(raw)
                    except ValueError:
                        yield {"Seq": None, "Event": "unreadable-line"}


def _tail_state(path: Path) -> tuple[int, str]:
    """Seq and hash of the last line, read from the end of the file (the log only grows)."""
    if not path.exists() or path.stat().st_size == 0:
        return 0, GENESIS
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        chunk = 4096
        data = b""
        while True:
            start = max(0, size - chunk)
            f.seek(start)
            data = f.read(size - start)
            lines = data.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or start == 0:
                break
            chunk *= 4
    last = lines[-1]
    try:
        seq = int(json.loads(last)["Seq"])
    except (ValueError, KeyError, TypeError):
        seq = 0
    return seq, line_hash(last)


def verify(path: Path, head: tuple[int, str] | None = None, node: str | None = None) -> VerifyResult:
    """Walk the chain. ``head`` (Seq, hash) from storage, when known, also catches removed last entries. With
    ``node``, every entry must name that node (entries of an older Roost, before the first that names a node, name
    none): the log of another node, or an entry moved in from one, does not pass as this node's."""
    prev, expected_seq, count = GENESIS, 1, 0
    named = False  # an entry naming its node has been seen: from there on every entry must
    if not path.exists():
        if head and head[0] > 0:
            return VerifyResult(False, 0, f"The audit log {path} is missing; storage says it had {head[0]} entries.",
                                1)
        return VerifyResult(True, 0, "The audit log is empty.")
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\n")
            try:
                entry = json.loads(line)
                seq = entry["Seq"]
                claimed = entry["Prev"]
            except (ValueError, KeyError, TypeError):
                return VerifyResult(False, count, f"Line {number} is not an audit entry (altered).", expected_seq,
                                    prev)
            if seq != expected_seq:
                if isinstance(seq, int) and seq > expected_seq:
                    what = (f"entries {expected_seq} to {seq - 1} are missing" if seq - 1 > expected_seq
                            else f"entry {expected_seq} is missing")
                else:
                    what = f"line {number} claims Seq {seq} where {expected_seq} was expected (altered)"
                return VerifyResult(False, count, f"Chain broken: {what}.", expected_seq, prev)
            if claimed != prev:
                bad = expected_seq - 1
                return VerifyResult(
                    False, count, f"Chain broken: entry {bad} was altered (entry {seq} does not carry its hash).",
                    bad, prev)
            if node is not None:
                written_by = entry.get("Node") if isinstance(entry, dict) else None
                named = named or written_by is not None
                if (written_by is not None or named) and written_by != node:
                    return VerifyResult(False, count, f"Entry {seq} was written by node {written_by!r}, not {node!r}: "
                                        f"this is not node {node}'s chain (altered or the wrong --data-dir).",
                                        seq, prev)
            prev = line_hash(line)
            expected_seq += 1
            count += 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > count:
            missing = f"Entries {count + 1} to {head_seq} are missing from the end of the log."
            return VerifyResult(False, count, missing, count + 1, prev)
        if head_seq == count and head_seq > 0 and head_hash != prev:
            return VerifyResult(False, count, f"Entry {count} was altered (its hash differs from storage's).",
                                count, prev)
    whose = f"node {node}'s" if node is not None else "the"
    return VerifyResult(True, count, f"The audit log is intact: {count} entries ({whose} chain).", None, prev)
