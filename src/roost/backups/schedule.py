"""Automated backups: per-database schedules (interval, retention, folder, recipients), run by the server.

Schedules live in storage (``backups.schedules``) so they survive restarts. Only public keys are stored: the
server can write backups it cannot read. Each run writes ``<folder>/<db>-<UTC time>.roostbackup`` through a
partial file, logs and audits its size and duration, and only after a good run deletes the oldest backups beyond
the retention count. A failed run is logged, audited (``backup.failed``) and shown in the schedule's status
(``LastError``, ``ConsecutiveFailures``); it deletes nothing. The nodes of a cluster share the schedules; a lease
in storage (``Storage.take_lease``) gives each interval's run to one node.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roost import clock
from roost.backups.service import EXTENSION, Lock
from roost.errors import BadRequestError, NotFoundError
from roost.names import database_name
from roost.security.audit import Event

if TYPE_CHECKING:
    from roost.backups.service import BackupService
    from roost.security.audit import AuditLog
    from roost.security.identity import Identity
    from roost.storage.base import Storage

log = logging.getLogger("roost.backups")
SETTING = "backups.schedules"
MIN_INTERVAL = 1
MAX_RETENTION = 10000
# A scheduled run holds its lease for this share of the interval: the nodes whose timers fire within it skip the
# run, the same node's next timer (one interval later) finds it expired.
LEASE_SHARE = 0.9
_FIELDS = {"Database", "IntervalSeconds", "Retention", "Folder", "Recipients"}


def file_prefix(name: str) -> str:
    """The start of every backup file name of database ``name``: readable, and unique to the database. The readable
    part alone is not ('Café' and 'Cafè' both give 'Caf_'), so a digest of the folded name follows it; retention
    matches the whole prefix and can never take another database's files."""
    digest = hashlib.sha256(name.casefold().encode()).hexdigest()[:16]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _partial(path: Path) -> bool:
    """A hidden partial file that BackupService.write_file leaves when the process dies mid-backup."""
    return re.fullmatch(r"\..+" + re.escape(EXTENSION) + r"\.[0-9a-f]{8}\.partial", path.name) is not None


class Schedules:
    def __init__(self, storage: Storage, backups: BackupService, audit: AuditLog, data_dir: Path) -> None:
        self._storage = storage
        self._backups = backups
        self._audit = audit
        self._data_dir = data_dir
        self._schedules: dict[str, dict[str, Any]] = {}  # folded name -> definition
        self._status: dict[str, dict[str, Any]] = {}
        self._next: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def load(self) -> None:
        stored = await self._storage.get_setting(SETTING) or {}
        self._schedules = {k: v for k, v in stored.items()}
        now = time.monotonic()
        self._next = {k: now + v["IntervalSeconds"] for k, v in self._schedules.items()}
        for schedule in self._schedules.values():
            self._remove_partials(self._folder(schedule["Folder"]))

    async def reload(self) -> None:
        """Another worker changed the schedules (``roost.cluster.changes``): take them, keeping the timers of those
        that did not change, and leave the folders alone (a backup may be being written)."""
        stored = await self._storage.get_setting(SETTING) or {}
        now = time.monotonic()
        self._next = {k: self._next[k] if k in self._next and self._schedules.get(k) == v
                      else now + v["IntervalSeconds"] for k, v in stored.items()}
        self._schedules = dict(stored)

    def _remove_partials(self, folder: Path) -> None:
        """At start-up nothing is being written: partial files in a schedule's folder are left by a crash."""
        try:
            leftovers = [p for p in folder.iterdir() if _partial(p)]
        except OSError:
            return  # the folder is gone or unreadable: the next run reports it
        for path in leftovers:
            try:
                path.unlink()
                log.warning("Removed %s, left by a backup that did not finish (the server stopped).", path)
            except OSError as exc:
                log.warning("Could not remove the partial backup %s: %s", path, exc.strerror)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._running.values()):
            try:
                await task
            except Exception:  # already reported by the run
                pass

    def _folder(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self._data_dir / path

    async def put(self, body: dict[str, Any], *, actor: Identity | None) -> dict[str, Any]:
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise BadRequestError(f"Unknown field(s): {', '.join(map(repr, unknown))[:200]}. Allowed: "
                                  f"{', '.join(sorted(_FIELDS))}.")
        if "Passphrase" in body:
            raise BadRequestError("Schedules encrypt to public keys only.")
        name = database_name(body.get("Database"))
        names = await self._backups.database_names([name])
        interval, retention = body.get("IntervalSeconds"), body.get("Retention")
        if isinstance(interval, bool) or not isinstance(interval, int) or not MIN_INTERVAL <= interval <= 366 * 86400:
            raise BadRequestError(f"IntervalSeconds must be a whole number of seconds between {MIN_INTERVAL} and "
                                  f"{366 * 86400}.")
        if isinstance(retention, bool) or not isinstance(retention, int) or not 1 <= retention <= MAX_RETENTION:
            raise BadRequestError(f"Retention must be how many backups to keep, between 1 and {MAX_RETENTION}.")
        folder = body.get("Folder")
        if not isinstance(folder, str) or not folder.strip():
            raise BadRequestError("Folder is required: where on the server the backups go (relative to the data "
                                  "directory, or absolute).")
        if len(folder) > 4096 or "\0" in folder or not folder.isprintable() or not _encodable(folder):
            raise BadRequestError("Folder must be a path of at most 4096 printable characters.")
        lock = Lock.parse(body.get("Recipients"), None)
        try:
            path = self._folder(folder.strip())
        except RuntimeError:  # "~someone/..." for a user without a home
            raise BadRequestError(f"Folder {folder[:80]!r} names a home directory that does not exist.") from None
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadRequestError(f"Cannot create the backup folder {str(path)!r}: {exc.strerror}.") from None
        schedule = {"Database": names[0], "IntervalSeconds": interval, "Retention": retention,
                    "Folder": folder.strip(), "Recipients": list(lock.recipients)}
        updated = {**self._schedules, names[0].casefold(): schedule}
        await self._storage.put_setting(SETTING, updated)
        self._schedules = updated
        self._next[names[0].casefold()] = time.monotonic() + interval
        self._audit.record(Event.BACKUP_SCHEDULE_SET, actor=actor, **schedule)
        return schedule

    async def delete(self, name: str, *, actor: Identity | None) -> None:
        key = name.casefold()
        if key not in self._schedules:
            raise NotFoundError(f"There is no backup schedule for '{name}'.")
        updated = {k: v for k, v in self._schedules.items() if k != key}
        await self._storage.put_setting(SETTING, updated)
        self._schedules = updated
        self._next.pop(key, None)
        self._audit.record(Event.BACKUP_SCHEDULE_DELETED, actor=actor, Database=name)

    def describe(self) -> list[dict[str, Any]]:
        return [{**schedule, "Status": self._status.get(key, {})} for key, schedule in sorted(self._schedules.items())]

    async def run_now(self, name: str, *, wait: bool) -> dict[str, Any]:
        key = name.casefold()
        if key not in self._schedules:
            raise NotFoundError(f"There is no backup schedule for '{name}'.")
        task = self._running.get(key) or self._launch(key)
        if wait:
            await asyncio.shield(task)
        return self._status.get(key, {})

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for key, due in list(self._next.items()):
                if due <= now and key not in self._running and key in self._schedules:
                    self._next[key] = now + self._schedules[key]["IntervalSeconds"]
                    self._launch(key, scheduled=True)

    def _launch(self, key: str, *, scheduled: bool = False) -> asyncio.Task[dict[str, Any]]:
        task = asyncio.create_task(self._run(key, scheduled=scheduled))
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))
        return task

    async def _claimed(self, key: str, interval: int) -> bool:
        """Whether this node does this interval's run: the nodes of a cluster share the schedules, and the first
        whose timer fires takes a lease on the run for most of the interval, so the others skip it."""
        now = clock.now().timestamp()
        try:
            return await self._storage.take_lease(f"backups.schedule.{key}", now, now + interval * LEASE_SHARE)
        except Exception as exc:  # storage unreachable: no run this time, the next timer asks again
            log.warning("Scheduled backup of %s skipped: cannot take its lease (%s)", key, exc)
            return False

    async def _run(self, key: str, *, scheduled: bool = False) -> dict[str, Any]:
        schedule = self._schedules[key]
        name = schedule["Database"]
        status = self._status.setdefault(key, {"Runs": 0, "ConsecutiveFailures": 0})
        if scheduled and not await self._claimed(key, schedule["IntervalSeconds"]):
            status["Skipped"] = status.get("Skipped", 0) + 1  # another node ran (or runs) this interval's backup
            return status
        started = clock.now()
        status["LastRun"] = started.isoformat(timespec="seconds").replace("+00:00", "Z")
        folder = self._folder(schedule["Folder"])
        target = folder / f"{file_prefix(name)}-{started:%Y%m%dT%H%M%S%fZ}{EXTENSION}"
        lock = Lock(tuple(schedule["Recipients"]))
        try:
            names = await self._backups.database_names([name])
            folder.mkdir(parents=True, exist_ok=True)
            result = await asyncio.to_thread(self._backups.write_file, target, names, lock, scope="database")
        except Exception as exc:  # every failure is reported, none is fatal to the server
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            status.update(LastError=message, ConsecutiveFailures=status["ConsecutiveFailures"] + 1,
                          LastFailure=status["LastRun"])
            status["Runs"] += 1
            log.error("Scheduled backup of %s to %s failed: %s", name, folder, message)
            self._audit.record(Event.BACKUP_FAILED, Databases=[name], Target=str(folder), Error=message, Scheduled=True)
            return status
        status.update(LastError=None, ConsecutiveFailures=0, LastSuccess=status["LastRun"], LastFile=str(target),
                      LastBytes=result.bytes, LastSeconds=round(result.seconds, 3), LastDocuments=result.documents)
        status["Runs"] += 1
        self._backups.audit_created(None, result, lock, str(target), Scheduled=True)
        removed = self._apply_retention(folder, name, schedule["Retention"])
        status["Removed"] = removed
        return status

    def _apply_retention(self, folder: Path, name: str, keep: int) -> list[str]:
        """Only after a good run: the oldest complete backups beyond ``keep`` (names sort by time)."""
        pattern = re.compile(re.escape(file_prefix(name)) + r"-\d{8}T\d{12}Z" + re.escape(EXTENSION))
        backups = sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name))
        removed = []
        for old in backups[: max(0, len(backups) - keep)]:
            try:
                old.unlink()
                removed.append(old.name)
            except OSError as exc:
                log.warning("Could not remove old backup %s: %s", old, exc.strerror)
        return removed
