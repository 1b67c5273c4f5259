"""Attachments: ``PUT|GET|HEAD|DELETE /databases/{db}/attachments?id=&name=`` (RavenDB's routes and headers).

Content streams both ways in chunks: an upload is hashed and written chunk by chunk under a fresh token, then linked
to the document in one transaction (``@metadata.@attachments`` lists Name, Hash, ContentType and Size); a download
reads one chunk at a time. Server memory stays flat whatever the size. The body limit is the server's
(``Http.MaxBodySize``). The hash is RavenDB's: base64 of BLAKE2b-256.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from roost import clock
from roost.errors import BadRequestError, DocumentDoesNotExistError, NotFoundError, PayloadTooLargeError
from roost.http.body import BODY_LIMIT, BODY_TIMEOUT, json_response
from roost.http.middleware import SERVICES
from roost.http.routing import RouteTable
from roost.names import document_id
from roost.storage.base import ATTACHMENTS, InvalidAttachment
from roost.types import Level

routes = RouteTable()

CHUNK = 1024 * 1024
MAX_NAME = 512


def _target(request: web.Request) -> tuple[str, str, str]:
    db = request.match_info["db"]
    doc_id = document_id(request.query.get("id"))
    name = request.query.get("name", "")
    if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise BadRequestError(f"The query parameter 'name' must be 1 to {MAX_NAME} printable characters.")
    return db, doc_id, name


async def _entry(request: web.Request, db: str, doc_id: str, name: str) -> tuple[dict[str, Any], str]:
    [document] = await request.app[SERVICES].documents.get(db, [doc_id])
    if document is None:
        raise DocumentDoesNotExistError(f"Document {doc_id} does not exist.")
    for entry in document.metadata.get(ATTACHMENTS) or []:
        if str(entry.get("Name", "")).casefold() == name.casefold():
            return entry, document.change_vector
    raise NotFoundError(f"Document {doc_id} has no attachment named '{name[:100]}'.")


@contextlib.contextmanager
def malformed_multipart() -> Iterator[None]:
    """aiohttp's multipart reader raises ValueError (and asserts) on a body that is not what its Content-Type says
    (no boundary, a part cut short): that is the client's error, a 400, never a 500."""
    try:
        yield
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
        raise BadRequestError(f"The multipart body is malformed ({str(exc)[:80] or type(exc).__name__}); send "
                              "multipart/form-data with a boundary, each part complete.") from None


class Upload:
    """Hashes and stores the body chunk by chunk under a fresh token, within the caller's body limit."""

    def __init__(self, request: web.Request, db: str) -> None:
        self.storage = request.app[SERVICES].storage
        self.db = db
        self.token = secrets.token_hex(16)
        self.limit: int = request.get(BODY_LIMIT, request.client_max_size)
        self.timeout: float | None = request.get(BODY_TIMEOUT)
        self.hash = hashlib.blake2b(digest_size=32)
        self.size = 0
        self.seq = 0
        self.pending = bytearray()

    async def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLargeError(f"The attachment is larger than the limit of {self.limit} bytes "
                                       "(Http.MaxBodySize).")
        self.hash.update(data)
        self.pending += data
        while len(self.pending) >= CHUNK:
            await self._flush(bytes(self.pending[:CHUNK]))
            del self.pending[:CHUNK]

    async def finish(self) -> None:
        if self.pending:
            await self._flush(bytes(self.pending))
            self.pending.clear()

    async def _flush(self, data: bytes) -> None:
        await self.storage.write_attachment_chunk(self.db, self.token, self.seq, data)
        self.seq += 1


async def _receive(request: web.Request, upload: Upload) -> str | None:
    """Stream the body into ``upload``; the content type a multipart body names (the Python client sends bytes as
    a form with one file), else None."""
    if request.content_type.startswith("multipart/"):
        with malformed_multipart():
            reader = await request.multipart()
            part = await reader.next()
            if not isinstance(part, BodyPartReader):
                raise BadRequestError("A multipart attachment upload must hold one file part.")
            while chunk := await _timed(part.read_chunk(CHUNK), upload.timeout):
                await upload.add(chunk)
            return part.headers.get("Content-Type")
    while chunk := await _timed(request.content.read(CHUNK), upload.timeout):
        await upload.add(chunk)
    return None


async def _timed(read: Any, timeout: float | None) -> bytes:
    async with asyncio.timeout(timeout):
        data: bytes = await read
        return data


@routes.put("/databases/{db}/attachments", level=Level.DATABASE_WRITE)
async def put_attachment(request: web.Request) -> web.StreamResponse:
    db, doc_id, name = _target(request)
    documents = request.app[SERVICES].documents
    if (await documents.get(db, [doc_id]))[0] is None:  # before reading a byte of a possibly large body
        raise DocumentDoesNotExistError(f"Document {doc_id} does not exist: store it before its attachments.")
    upload = Upload(request, db)
    try:
        part_type = await _receive(request, upload)
        await upload.finish()
        content_type = request.query.get("contentType") or part_type or ""
        entry = {"Name": name, "Hash": base64.b64encode(upload.hash.digest()).decode(), "ContentType": content_type,
                 "Size": upload.size, "Token": upload.token}
        stored = await request.app[SERVICES].storage.attach(db, doc_id, entry, clock.wire_date(clock.now()))
    except InvalidAttachment:
        await request.app[SERVICES].storage.discard_attachment_chunks(db, upload.token)
        raise DocumentDoesNotExistError(f"Document {doc_id} was deleted during the upload.") from None
    except BaseException:
        await request.app[SERVICES].storage.discard_attachment_chunks(db, upload.token)
        raise
    return json_response({"Name": name, "DocumentId": stored.id, "ContentType": content_type, "Hash": entry["Hash"],
                          "Size": upload.size, "ChangeVector": stored.change_vector}, status=201)


@routes.get("/databases/{db}/attachments", level=Level.DATABASE_READ)
async def get_attachment(request: web.Request) -> web.StreamResponse:
    db, doc_id, name = _target(request)
    entry, change_vector = await _entry(request, db, doc_id, name)
    headers = {"Content-Type": str(entry.get("ContentType") or "application/octet-stream"),
               "Attachment-Hash": str(entry["Hash"]), "Attachment-Size": str(entry["Size"]),
               "ETag": f'"{change_vector}"', "Content-Length": str(entry["Size"])}
    if request.method == "HEAD":
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    async for chunk in request.app[SERVICES].storage.read_attachment_chunks(db, str(entry["Token"])):
        await response.write(chunk)
    await response.write_eof()
    return response


@routes.delete("/databases/{db}/attachments", level=Level.DATABASE_WRITE)
async def delete_attachment(request: web.Request) -> web.StreamResponse:
    db, doc_id, name = _target(request)
    await request.app[SERVICES].documents.ensure_exists(db)
    await request.app[SERVICES].storage.detach(db, doc_id, name, clock.wire_date(clock.now()))
    return web.Response(status=204)  # RavenDB: deleting what is not there is not an error
