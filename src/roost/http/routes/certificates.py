"""RavenDB's certificate API (reference ravendb-certificates.md, section 3)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from roost.errors import BadRequestError
from roost.http.body import json_response, query_bool, query_int, read_json
from roost.http.headers import NO_STORE
from roost.http.middleware import SERVICES, identity_of
from roost.http.routing import RouteTable
from roost.security import history
from roost.types import Level

routes = RouteTable()



def _attachment(filename: str) -> dict[str, str]:
    # RFC 6266: an ASCII fallback plus the exact UTF-8 name.
    fallback = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in filename)
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}",
        **NO_STORE,
    }


@routes.get("/certificates/whoami", level=Level.VALID_USER)
async def whoami(request: web.Request) -> web.StreamResponse:
    entry = request.app[SERVICES].certificates.whoami(identity_of(request))
    if entry is None:
        return web.Response(status=204, headers=NO_STORE)
    return json_response(entry, headers=NO_STORE)


@routes.get("/admin/certificates", level=Level.OPERATOR)
async def list_certificates(request: web.Request) -> web.StreamResponse:
    q = request.query
    result = request.app[SERVICES].certificates.list(
        start=query_int(request, "start", 0),
        page_size=query_int(request, "pageSize", 1 << 30, 1),
        thumbprint=q.get("thumbprint"),
        name=q.get("name"),
        metadata_only=query_bool(request, "metadataOnly"),
        secondary=query_bool(request, "secondary"),
        text=q.get("filter"),
        clearance=q.get("clearance") or None,
        state=q.get("state") or None,
        sort=q.get("sort") or "name",
    )
    return json_response(result, headers=NO_STORE)


@routes.get("/admin/certificates/history", level=Level.OPERATOR)
async def certificate_history(request: web.Request) -> web.StreamResponse:
    """The certificate's history from this node's audit log: creation, each change as a diff, renewal, deletion."""
    thumbprint = request.query.get("thumbprint", "").strip()
    if len(thumbprint) != 40 or any(c not in "0123456789abcdefABCDEF" for c in thumbprint):
        raise BadRequestError("The query parameter 'thumbprint' must be a certificate thumbprint (40 hexadecimal "
                              "digits).")
    audit = request.app[SERVICES].audit
    entries = await asyncio.to_thread(lambda: history.certificate_history(audit.entries(), thumbprint))
    return json_response({"Thumbprint": thumbprint.upper(), "History": entries}, headers=NO_STORE)


@routes.post("/admin/certificates", level=Level.OPERATOR)
async def generate(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    filename, data, _ = await services.certificates.generate(identity_of(request), await read_json(request))
    return web.Response(body=data, content_type="application/octet-stream", headers=_attachment(filename))


@routes.post("/admin/certificates/rotate", level=Level.OPERATOR)
async def rotate(request: web.Request) -> web.StreamResponse:
    """A successor with the same settings as a new package; the old certificate is retired once unused."""
    services = request.app[SERVICES]
    filename, data, successor = await services.certificates.rotate(identity_of(request), await read_json(request))
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={**_attachment(filename), "X-Roost-Thumbprint": successor.thumbprint})


@routes.put("/admin/certificates", level=Level.OPERATOR)
async def upload(request: web.Request) -> web.StreamResponse:
    await request.app[SERVICES].certificates.upload(identity_of(request), await read_json(request))
    return web.Response(status=201, headers=NO_STORE)


@routes.post("/admin/certificates/edit", level=Level.OPERATOR)
async def edit(request: web.Request) -> web.StreamResponse:
    await request.app[SERVICES].certificates.edit(
        identity_of(request), await read_json(request),
        delete_two_factor=query_bool(request, "deleteTwoFactorConfiguration"),
    )
    return web.Response(status=201, headers=NO_STORE)


@routes.delete("/admin/certificates", level=Level.OPERATOR)
async def delete(request: web.Request) -> web.StreamResponse:
    await request.app[SERVICES].certificates.delete(identity_of(request), request.query.get("thumbprint"))
    return web.Response(status=204)


@routes.delete("/admin/certificates/purge", level=Level.OPERATOR)
async def purge(request: web.Request) -> web.StreamResponse:
    purged = await request.app[SERVICES].certificates.purge(identity_of(request))
    return json_response({"Deleted": [{"Name": d.name, "Thumbprint": d.thumbprint} for d in purged]},
                         headers=NO_STORE)


@routes.get("/admin/certificates/export", level=Level.OPERATOR)
async def export(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    # Every node's server certificate (roost.cluster.nodes), as RavenDB exports every ClusterNode of the cluster.
    data = services.certificates.export_server_certificates(await services.cluster.certificates())
    return web.Response(body=data, content_type="application/octet-stream",
                        headers=_attachment("ClusterCertificatesCollection.pfx"))


@routes.post("/admin/certificates/replace-cluster-cert", level=Level.CLUSTER_ADMIN)
async def replace_cluster_cert(request: web.Request) -> web.StreamResponse:
    # RavenDB's protocol across the nodes (roost.cluster.replacement): every node confirms, then all swap, or at
    # once with replaceImmediately. A single node confirms at once, so it swaps before answering.
    started = await request.app[SERVICES].replacement.start(
        identity_of(request), await read_json(request), immediately=query_bool(request, "replaceImmediately"))
    return json_response(started, status=201, headers=NO_STORE)


@routes.get("/admin/certificates/replacement/status", level=Level.CLUSTER_ADMIN)
async def replacement_status(request: web.Request) -> web.StreamResponse:
    """Per-node progress of the replacement under way (404 when there is none)."""
    return json_response(await request.app[SERVICES].replacement.status(), headers=NO_STORE)


@routes.post("/admin/certificates/replacement/reset", level=Level.CLUSTER_ADMIN)
async def replacement_reset(request: web.Request) -> web.StreamResponse:
    """Abandon the replacement under way (RavenDB's reset): nodes not swapped yet keep their certificate."""
    await request.app[SERVICES].replacement.reset(identity_of(request))
    return web.Response(status=204, headers=NO_STORE)


@routes.post("/admin/certificates/refresh", level=Level.CLUSTER_ADMIN)
async def refresh(request: web.Request) -> web.StreamResponse:
    query_bool(request, "replaceImmediately")
    old, new = await request.app[SERVICES].server_certificates.refresh(identity_of(request))
    return json_response({"OldThumbprint": old, "Thumbprint": new}, headers=NO_STORE)
