"""Encrypted backups over HTTP: download a backup, restore an uploaded one, manage automated schedules."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from roost import clock
from roost.backups import crypto
from roost.backups.service import EXTENSION, Lock
from roost.errors import BadRequestError
from roost.http.body import json_response, query_bool, read_object
from roost.http.headers import NO_STORE
from roost.http.middleware import SERVICES, identity_of
from roost.http.routing import RouteTable
from roost.names import database_name
from roost.types import Level

routes = RouteTable()
log = logging.getLogger("roost.backups")

_QUEUE_DEPTH = 4
_WRITE_BUFFER = 1024 * 1024


class _ResponseWriter:
    """Called from the backup thread; hands ~1 MiB pieces to the event loop through a bounded queue (the thread
    waits when the client reads slowly: backpressure, flat memory)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
        self._loop = loop
        self._queue = queue
        self._buffer = bytearray()
        self.cancelled = False

    def write(self, data: bytes) -> int:
        if self.cancelled:
            raise OSError("the client went away")
        self._buffer += data
        if len(self._buffer) >= _WRITE_BUFFER:
            self._send()
        return len(data)

    def flush(self) -> None:
        pass

    def _send(self) -> None:
        if self._buffer:
            piece = bytes(self._buffer)
            self._buffer.clear()
            asyncio.run_coroutine_threadsafe(self._queue.put(piece), self._loop).result()

    def close(self) -> None:
        self._send()


async def _stream_backup(request: web.Request, databases: list[str], lock: Lock, scope: str,
                         label: str) -> web.StreamResponse:
    services = request.app[SERVICES]
    service = services.backups
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUE_DEPTH)
    writer = _ResponseWriter(loop, queue)

    def work() -> Any:
        try:
            result = service.write(writer, databases, lock, scope=scope)
            writer.close()
            return result
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    response = web.StreamResponse(headers={
        "Content-Type": "application/octet-stream", **NO_STORE,
        "Content-Disposition": f'attachment; filename="{label}-{stamp}{EXTENSION}"',
    })
    await response.prepare(request)
    job = loop.run_in_executor(None, work)
    try:
        while (piece := await queue.get()) is not None:
            await response.write(piece)
        result = await job
    except BaseException as exc:
        writer.cancelled = True
        while not job.done():  # let the thread see the flag and end
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
        if not job.cancelled() and job.exception() is not None:
            log.warning("Backup of %s broke off: %s", ", ".join(databases), job.exception())
        service.audit_failed(identity_of(request), databases, getattr(exc, "message", type(exc).__name__))
        # The status line is already sent: cut the connection so the client sees an incomplete download (and an
        # incomplete age file never authenticates), rather than a short file that looks finished.
        if request.transport is not None:
            request.transport.abort()
        return response
    service.audit_created(identity_of(request), result, lock, "download", Scope=scope)
    await response.write_eof()
    return response


@routes.post("/databases/{db}/admin/backups", level=Level.DATABASE_ADMIN)
async def backup_database(request: web.Request) -> web.StreamResponse:
    """Body ``{"Recipients": ["age1..."]}`` or ``{"Passphrase": "..."}``; the response is the encrypted backup."""
    body = await read_object(request)
    _only(body, {"Recipients", "Passphrase"})
    lock = Lock.parse(body.get("Recipients"), body.get("Passphrase"))
    names = await request.app[SERVICES].backups.database_names([database_name(request.match_info["db"])])
    return await _stream_backup(request, names, lock, "database", names[0])


@routes.post("/admin/backups", level=Level.OPERATOR)
async def backup_all(request: web.Request) -> web.StreamResponse:
    """Every database plus the certificate registry (public certificates and settings only)."""
    body = await read_object(request)
    _only(body, {"Recipients", "Passphrase"})
    lock = Lock.parse(body.get("Recipients"), body.get("Passphrase"))
    names = await request.app[SERVICES].backups.database_names(None)
    return await _stream_backup(request, names, lock, "all", "roost-all")


@routes.post("/admin/backups/restore", level=Level.OPERATOR)
async def restore(request: web.Request) -> web.StreamResponse:
    """The body is the backup file. ``?database=`` target (new or empty), ``?from=`` the database inside the backup
    when it holds several. The key travels in a header, never in the URL: ``Roost-Backup-Identity`` (an age secret
    key) or ``Roost-Backup-Passphrase``."""
    services = request.app[SERVICES]
    target = database_name(request.query.get("database"))
    source = request.query.get("from") or None
    identity_text = request.headers.get("Roost-Backup-Identity")
    passphrase = request.headers.get("Roost-Backup-Passphrase")
    if not identity_text and not passphrase:
        raise BadRequestError("Give the key to open the backup: the Roost-Backup-Identity header (AGE-SECRET-KEY-1...) "
                              "or Roost-Backup-Passphrase.")
    identities = crypto.parse_identities(identity_text) if identity_text else None
    service = services.backups
    staged = service.staged_path()
    actor = identity_of(request)
    try:
        # Stream the upload to disk first: nothing is decrypted or applied until all of it is here.
        with staged.open("xb") as f:
            async for chunk in request.content.iter_chunked(256 * 1024):
                f.write(chunk)
        source_name, count = await service.restore_staged(staged, target, source, actor=actor,
                                                          identities=identities, passphrase=passphrase)
    finally:
        staged.unlink(missing_ok=True)
    return json_response({"Database": target, "From": source_name, "Documents": count}, status=201)


# Schedules -------------------------------------------------------------------------------------------------


@routes.get("/admin/backups/schedules", level=Level.OPERATOR)
async def list_schedules(request: web.Request) -> web.StreamResponse:
    return json_response({"Schedules": request.app[SERVICES].backup_schedules.describe()})


@routes.put("/admin/backups/schedules", level=Level.OPERATOR)
async def put_schedule(request: web.Request) -> web.StreamResponse:
    """``{"Database", "IntervalSeconds", "Retention", "Folder", "Recipients"}``; public keys only (the server
    never keeps what opens a backup)."""
    services = request.app[SERVICES]
    body = await read_object(request)
    await services.backup_schedules.put(body, actor=identity_of(request))
    return json_response({"Schedules": services.backup_schedules.describe()})


@routes.delete("/admin/backups/schedules", level=Level.OPERATOR)
async def delete_schedule(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    name = database_name(request.query.get("database"))
    await services.backup_schedules.delete(name, actor=identity_of(request))
    return json_response({"Schedules": services.backup_schedules.describe()})


@routes.post("/admin/backups/schedules/run", level=Level.OPERATOR)
async def run_schedule(request: web.Request) -> web.StreamResponse:
    """Run a database's schedule now (for testing a new schedule); answers with its status after the run."""
    services = request.app[SERVICES]
    name = database_name(request.query.get("database"))
    wait = query_bool(request, "wait", True)
    status = await services.backup_schedules.run_now(name, wait=wait)
    return json_response(status)


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        # repr(): ASCII whatever the names hold, so the error response can always be rendered.
        raise BadRequestError(f"Unknown field(s): {', '.join(map(repr, unknown))[:200]}. Allowed: "
                              f"{', '.join(sorted(allowed))}.")

