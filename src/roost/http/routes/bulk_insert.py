"""Bulk insert, as the clients' ``BulkInsertOperation`` drives it: ``GET /databases/{db}/operations/next-operation-id``,
then ``POST /databases/{db}/bulk_insert?id=<that id>`` with one streamed JSON array of commands, and
``POST /databases/{db}/operations/kill?id=`` to stop it (``GET /operations/state?id=`` tells how it ended).

The stream is parsed as it arrives (``roost.documents.bulk_insert``) and stored in batches, one storage transaction
each: memory stays flat for any number of documents. A bad command stops the stream with a 400 that says how many
commands were stored: every command before it, nothing from it on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from roost.documents.bulk_insert import CommandStream, batch_command
from roost.errors import (
    BadRequestError,
    BulkInsertAbortedError,
    ConflictError,
    NotFoundError,
    RequestTimeoutError,
    RoostError,
)
from roost.http.body import BODY_LIMIT, BODY_TIMEOUT, MIN_BODY_RATE, json_response, query_int
from roost.http.middleware import SERVICES
from roost.http.routing import RouteTable
from roost.storage.base import BatchCommand
from roost.types import Level

routes = RouteTable()

BATCH_COMMANDS = 1000  # commands per storage transaction
BATCH_BYTES = 4 * 1024 * 1024  # or fewer, when their text reaches this
CHUNK = 256 * 1024
_MAX_ID = (1 << 53) - 1


def _requested_operation(request: web.Request, *, required: bool = True) -> int:
    """The operation id of ``?id=``; -1 when it is absent and not required."""
    operation_id = query_int(request, "id", -1, 0, _MAX_ID)
    if operation_id < 0 and required:
        raise BadRequestError("The query parameter 'id' is required: the operation id from next-operation-id.")
    return operation_id


@routes.get("/databases/{db}/operations/next-operation-id", level=Level.DATABASE_READ)
async def next_operation_id(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    await services.documents.ensure_exists(request.match_info["db"])
    return json_response({"Id": services.operations.next_id(), "NodeTag": "A"})


@routes.post("/databases/{db}/operations/kill", level=Level.DATABASE_WRITE)
async def kill_operation(request: web.Request) -> web.StreamResponse:
    db, operation_id = request.match_info["db"], _requested_operation(request)
    await request.app[SERVICES].documents.ensure_exists(db)
    if not request.app[SERVICES].operations.kill(db, operation_id):
        raise NotFoundError(f"Operation {operation_id} is not running on this server for database '{db}'.")
    return web.Response(status=204)


@routes.get("/databases/{db}/operations/state", level=Level.DATABASE_READ)
async def operation_state(request: web.Request) -> web.StreamResponse:
    db, operation_id = request.match_info["db"], _requested_operation(request)
    await request.app[SERVICES].documents.ensure_exists(db)
    operation = request.app[SERVICES].operations.find(db, operation_id)
    if operation is None:
        raise NotFoundError(f"Operation {operation_id} is not known to this server for database '{db}'.")
    return json_response(operation.state())


class _Insert:
    """One bulk insert: commands parsed and not yet stored, and how many are."""

    def __init__(self, request: web.Request, db: str) -> None:
        self.documents = request.app[SERVICES].documents
        self.db = db
        self.pending: list[BatchCommand] = []
        self.pending_bytes = 0
        self.stored = 0

    def add(self, raw: list[dict[str, Any]], first_index: int) -> None:
        for offset, command in enumerate(raw):
            self.pending.append(batch_command(self.documents, command, first_index + offset))

    async def flush(self) -> None:
        if self.pending:
            await self.documents.batch(self.db, self.pending)
            self.stored += len(self.pending)
            self.pending, self.pending_bytes = [], 0


def _told(error: RoostError, stored: int) -> RoostError:
    """The same error, saying what the client may rely on: the first ``stored`` commands were stored."""
    error.message = (f"{error.message} The first {stored} command(s) of the stream were stored (each batch of up "
                     f"to {BATCH_COMMANDS} commits as it arrives), nothing after them.")
    error.args = (error.message,)
    return error


@routes.post("/databases/{db}/bulk_insert", level=Level.DATABASE_WRITE)
async def bulk_insert(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    db = request.match_info["db"]
    await services.documents.ensure_exists(db)
    operation_id = _requested_operation(request, required=False)
    if operation_id < 0:
        operation_id = services.operations.next_id()
    operation = services.operations.start(operation_id, db, "BulkInsert")
    if operation is None:
        raise ConflictError(f"Operation {operation_id} is already running; take a new id from next-operation-id.")
    stream = CommandStream(request.get(BODY_LIMIT, request.client_max_size))
    insert = _Insert(request, db)
    timeout: float | None = request.get(BODY_TIMEOUT)
    try:
        while True:
            if operation.killed:
                raise BulkInsertAbortedError(f"Bulk insert {operation_id} was killed (operations/kill).")
            try:
                async with asyncio.timeout(timeout):
                    chunk = await request.content.readany()
            except TimeoutError:
                raise RequestTimeoutError(f"The bulk insert stream sent nothing for {timeout:g} seconds "
                                          f"(http_body_timeout_seconds); at least {MIN_BODY_RATE // 1024} KiB/s "
                                          "keeps it open.") from None
            first = stream.commands_read + 1
            try:
                insert.add(stream.feed(chunk) if chunk else stream.finish(), first)
                stream.check()
            except RoostError:
                await insert.flush()  # every command before the bad one was valid: stored, and the client told
                raise
            insert.pending_bytes += len(chunk)
            if not chunk or len(insert.pending) >= BATCH_COMMANDS or insert.pending_bytes >= BATCH_BYTES:
                await insert.flush()
            if not chunk:
                break
    except RoostError as exc:
        services.operations.finish(operation, "Faulted", {"Error": exc.message, "Type": exc.error_type})
        raise _told(exc, insert.stored) from None
    except BaseException:
        services.operations.finish(operation, "Faulted", {"Error": "The bulk insert stream was interrupted."})
        raise
    services.operations.finish(operation, "Completed", {"Total": insert.stored})
    return web.Response(status=201)  # no body: the client's command reads none
