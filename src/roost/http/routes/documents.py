"""Documents: load, store, delete, batches (RavenDB's /databases/{db}/docs and /bulk_docs)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from roost import clock, json_codec
from roost.documents.includes import referenced_by_all
from roost.documents.store import counters_command, render
from roost.errors import BadRequestError, DocumentDoesNotExistError
from roost.http.body import BODY_LIMIT, json_response, query_int, read_json, read_object, too_large
from roost.http.middleware import SERVICES
from roost.http.routes.attachments import CHUNK, MAX_NAME, Upload, malformed_multipart
from roost.http.routes.counters import counters_detail
from roost.http.routing import RouteTable
from roost.names import document_id, is_document_id
from roost.storage.base import BatchCommand, BatchResult, DeleteCommand, InvalidAttachment, PutCommand, StoredDocument
from roost.types import Level

routes = RouteTable()


def _if_match(request: web.Request) -> str | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    return value.strip().strip('"')


def _if_none_match(request: web.Request) -> str | None:
    # The client quotes it on cached GETs ("A:1-x") and sends it bare on HEAD: RavenDB strips the quotes.
    value = request.headers.get("If-None-Match")
    return value.strip().strip('"') if value is not None else None


def _etag(found: list[StoredDocument | None], included: list[StoredDocument | None], single: bool) -> str:
    """RavenDB's ETag for a load: the change vector of one document loaded alone, otherwise a hash over every
    result and include (what the client caches under the URL must change whenever any of them does)."""
    if single and not included and found[0] is not None:
        return found[0].change_vector
    digest = hashlib.sha256()
    for document in [*found, None, *included]:
        digest.update(f"{document.id}\0{document.change_vector}\0".encode() if document else b"\1")
    return "H:" + digest.hexdigest()[:32]


async def _load(request: web.Request, db: str, ids: list[str]) -> web.StreamResponse:
    documents = request.app[SERVICES].documents
    found = await documents.get(db, ids)
    if len(ids) == 1 and found[0] is None:
        return web.Response(status=404)
    includes: dict[str, Any] = {}
    included: list[StoredDocument | None] = []
    paths = request.query.getall("include", [])
    if paths:
        # Values that could never be ids are not includes; they must not turn the load into a 400.
        wanted = [i for i in referenced_by_all([d.body for d in found if d], paths) if is_document_id(i)]
        if wanted:
            included = await documents.get(db, wanted)
            for doc_id, doc in zip(wanted, included, strict=True):
                includes[doc_id] = render(doc) if doc else None
    etag = _etag(found, included, len(ids) == 1)
    headers = {"ETag": f'"{etag}"'}
    if _if_none_match(request) == etag:
        return web.Response(status=304, headers=headers)  # the client answers from its cache: no body
    response = json_response({"Results": [render(d) if d else None for d in found], "Includes": includes})
    response.headers.update(headers)
    return response


@routes.get("/databases/{db}/docs", level=Level.DATABASE_READ)
async def get_docs(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    ids = request.query.getall("id", [])
    if ids:
        return await _load(request, db, ids)
    documents = request.app[SERVICES].documents
    start = query_int(request, "start", 0)
    size = query_int(request, "pageSize", 25, 1, 1024)
    docs, total = await documents.page(db, start, size)  # RavenDB's order: the most recently changed first
    return json_response({"Results": [render(d) for d in docs], "TotalResults": total})


@routes.post("/databases/{db}/docs", level=Level.DATABASE_READ)
async def post_docs(request: web.Request) -> web.StreamResponse:
    """Load many ids (the client switches to POST when the ids would not fit a URL)."""
    body = await read_object(request)
    ids = body.get("Ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BadRequestError("Ids must be a non-empty list of document ids.")
    return await _load(request, request.match_info["db"], ids)


@routes.put("/databases/{db}/docs", level=Level.DATABASE_WRITE)
async def put_doc(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    doc_id = document_id(request.query.get("id"))
    body = await read_json(request)
    result = await request.app[SERVICES].documents.put(db, doc_id, body, _if_match(request))
    return json_response({"Id": result.id, "ChangeVector": result.change_vector}, status=201)


@routes.delete("/databases/{db}/docs", level=Level.DATABASE_WRITE)
async def delete_doc(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    doc_id = document_id(request.query.get("id"))
    await request.app[SERVICES].documents.delete(db, doc_id, _if_match(request))
    return web.Response(status=204)


@dataclass
class _AttachmentPut:
    """An AttachmentPUT of a multipart batch: its content arrived as the next stream part."""

    index: int
    id: str
    name: str
    content_type: str
    upload: Upload | None = None


async def _multipart_batch(request: web.Request, db: str) -> tuple[dict[str, Any], list[Upload]]:
    """RavenDB's batch with attachments (``session.advanced.attachments.store`` then save_changes): a multipart
    body whose first part is the JSON batch and whose next parts are the attachments' contents, in command order.
    Each content is stored chunk by chunk under a fresh token (linked to its document only after the batch)."""
    reader = await request.multipart()
    main = await reader.next()
    if not isinstance(main, BodyPartReader):
        raise BadRequestError("A multipart batch starts with its JSON part ('main').")
    limit: int = request.get(BODY_LIMIT, request.client_max_size)
    raw = bytearray()
    while chunk := await main.read_chunk(CHUNK):
        raw += chunk
        if len(raw) > limit:
            raise too_large(None, limit)
    try:
        body = json_codec.loads(bytes(raw))
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("The 'main' part of a multipart batch must be the JSON batch.") from None
    if not isinstance(body, dict):
        raise BadRequestError("The 'main' part of a multipart batch must be a JSON object.")
    uploads: list[Upload] = []
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadRequestError("An attachment part of a multipart batch must hold the content itself.")
            upload = Upload(request, db)
            uploads.append(upload)
            while chunk := await part.read_chunk(CHUNK):
                await upload.add(chunk)
            await upload.finish()
    except BaseException:
        await _discard(request, db, uploads)
        raise
    return body, uploads


async def _discard(request: web.Request, db: str, uploads: list[Upload]) -> None:
    for upload in uploads:
        await request.app[SERVICES].storage.discard_attachment_chunks(db, upload.token)


@routes.post("/databases/{db}/bulk_docs", level=Level.DATABASE_WRITE)
async def bulk_docs(request: web.Request) -> web.StreamResponse:
    db = request.match_info["db"]
    documents = request.app[SERVICES].documents
    uploads: list[Upload] = []
    if request.content_type.startswith("multipart/"):
        await documents.ensure_exists(db)
        with malformed_multipart():
            body, uploads = await _multipart_batch(request, db)
    else:
        body = await read_object(request)
    try:
        return await _apply_batch(request, db, body, uploads)
    except BaseException:
        await _discard(request, db, uploads)  # nothing links them (linked ones are not discarded: see below)
        raise


async def _apply_batch(request: web.Request, db: str, body: dict[str, Any],
                       uploads: list[Upload]) -> web.StreamResponse:
    documents = request.app[SERVICES].documents
    storage = request.app[SERVICES].storage
    raw_commands = body.get("Commands")
    if not isinstance(raw_commands, list):
        raise BadRequestError("Commands must be a list of commands.")
    commands: list[BatchCommand] = []
    attachment_puts: list[_AttachmentPut] = []
    attachment_deletes: list[tuple[int, str, str]] = []
    for index, raw in enumerate(raw_commands):
        if not isinstance(raw, dict):
            raise BadRequestError(f"Command #{index} must be a JSON object.")
        kind = raw.get("Type")
        change_vector = raw.get("ChangeVector")
        if change_vector is not None and not isinstance(change_vector, str):
            raise BadRequestError(f"Command #{index}: ChangeVector must be a string or null.")
        raw_id = raw.get("Id")
        if kind == "PUT":
            if raw_id is not None and not isinstance(raw_id, str):
                raise BadRequestError(f"Command #{index}: Id must be a string.")
            if "Document" not in raw:
                raise BadRequestError(f"Command #{index}: a PUT needs a Document.")
            commands.append(documents.put_command(raw_id, raw["Document"], change_vector))
        elif kind == "DELETE":
            commands.append(DeleteCommand(document_id(raw_id), change_vector))
        elif kind == "Counters":
            counters = raw.get("Counters")
            if not isinstance(counters, dict):
                raise BadRequestError(f"Command #{index}: a Counters command needs Counters, a JSON object.")
            commands.append(counters_command(raw_id if raw_id is not None else counters.get("DocumentId"),
                                             counters.get("Operations"), f"Command #{index}"))
        elif kind in ("AttachmentPUT", "AttachmentDELETE"):
            name, content_type = raw.get("Name"), raw.get("ContentType") or ""
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
                raise BadRequestError(f"Command #{index}: Name must be 1 to {MAX_NAME} printable characters.")
            if not isinstance(content_type, str):
                raise BadRequestError(f"Command #{index}: ContentType must be a string.")
            if kind == "AttachmentDELETE":
                attachment_deletes.append((index, document_id(raw_id), name))
            else:
                attachment_puts.append(_AttachmentPut(index, document_id(raw_id), name, content_type))
        else:
            raise BadRequestError(
                f"Command #{index}: Type '{kind}' is not supported by Roost; use PUT, DELETE, Counters, AttachmentPUT "
                "or AttachmentDELETE."
            )
    if len(attachment_puts) != len(uploads):
        raise BadRequestError(f"The batch has {len(attachment_puts)} AttachmentPUT command(s) and {len(uploads)} "
                              "attachment stream(s): each AttachmentPUT needs its content as the next multipart part.")
    await _ensure_attachment_documents(request, db, commands, [a.id for a in attachment_puts])
    for attachment, stream in zip(attachment_puts, uploads, strict=True):
        attachment.upload = stream
    results = await documents.batch(db, commands)
    out: dict[int, dict[str, Any]] = {}
    positions = [i for i, raw in enumerate(raw_commands) if raw.get("Type") in ("PUT", "DELETE", "Counters")]
    for position, result in zip(positions, results, strict=True):
        out[position] = _batch_result(result)
    now = clock.wire_date(clock.now())
    for attachment in attachment_puts:
        upload = attachment.upload
        assert upload is not None
        entry = {"Name": attachment.name, "Hash": base64.b64encode(upload.hash.digest()).decode(),
                 "ContentType": attachment.content_type, "Size": upload.size, "Token": upload.token}
        try:
            stored = await storage.attach(db, attachment.id, entry, now)
        except InvalidAttachment:
            raise DocumentDoesNotExistError(f"Document {attachment.id} was deleted during the batch; its attachment "
                                            f"'{attachment.name[:100]}' was not stored.") from None
        uploads.remove(upload)  # linked: no longer to discard
        out[attachment.index] = {"Type": "AttachmentPUT", "Id": stored.id, "Name": attachment.name,
                                 "DocumentChangeVector": stored.change_vector, "ChangeVector": stored.change_vector,
                                 "Hash": entry["Hash"], "ContentType": attachment.content_type, "Size": upload.size}
    for index, doc_id, name in attachment_deletes:
        await storage.detach(db, doc_id, name, now)
        [document] = await documents.get(db, [doc_id])
        out[index] = {"Type": "AttachmentDELETE", "@id": doc_id, "Id": doc_id, "Name": name,
                      "DocumentChangeVector": document.change_vector if document else None}
    return json_response({"Results": [out[i] for i in sorted(out)], "TransactionIndex": 0}, status=201)


async def _ensure_attachment_documents(request: web.Request, db: str, commands: list[BatchCommand],
                                       ids: list[str]) -> None:
    """Every attachment's document exists after the batch (stored before, or by it): checked before anything is
    written, so that a batch naming a missing document changes nothing."""
    after: dict[str, bool] = {}
    for command in commands:
        if isinstance(command, PutCommand):
            after[command.id.casefold()] = True
        elif isinstance(command, DeleteCommand):
            after[command.id.casefold()] = False
    unknown = [i for i in dict.fromkeys(ids) if i.casefold() not in after]
    existing = await request.app[SERVICES].documents.get(db, unknown) if unknown else []
    after.update({i.casefold(): d is not None for i, d in zip(unknown, existing, strict=True)})
    for doc_id in ids:
        if not after[doc_id.casefold()]:
            raise DocumentDoesNotExistError(f"Document {doc_id} does not exist: store it before its attachments "
                                            "(in this batch or before).")


def _batch_result(result: BatchResult) -> dict[str, Any]:
    if result.kind == "Counters" and result.document is not None:
        return {"Type": "Counters", "Id": result.id, "DocumentChangeVector": result.document.change_vector,
                "CountersDetail": counters_detail(result.id, tuple(
                    (name, value) for name, value in result.counters if value is not None))}
    if result.document is not None:
        d = result.document
        entry: dict[str, Any] = {"Type": "PUT", "@id": d.id, "@change-vector": d.change_vector,
                                 "@last-modified": d.last_modified}
        if d.collection:
            entry["@collection"] = d.collection
        return entry
    return {"Type": "DELETE", "@id": result.id, "Id": result.id, "Deleted": result.deleted}
