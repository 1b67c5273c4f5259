"""Certificates whose private key never reaches the server (sign a request, renew oneself), and the notifications
of what will expire (issue 18).

Both answer the signed certificate as PEM (``application/x-pem-file``), registered before the answer is sent;
the client already holds the key.
"""

from __future__ import annotations

from aiohttp import web

from roost.http.body import json_response, read_json
from roost.http.headers import NO_STORE
from roost.http.middleware import SERVICES, identity_of
from roost.http.routing import RouteTable
from roost.pki.inspect import describe_der
from roost.security.registry import CertificateDefinition
from roost.types import Level

routes = RouteTable()


def _pem_response(definition: CertificateDefinition, status: int) -> web.Response:
    pem = describe_der(definition.certificate_der).pem.encode()
    return web.Response(status=status, body=pem, content_type="application/x-pem-file",
                        headers={"X-Roost-Thumbprint": definition.thumbprint, **NO_STORE})


@routes.post("/admin/certificates/csr", level=Level.OPERATOR)
async def sign_request(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    definition = await services.certificates.sign_request(identity_of(request), await read_json(request))
    return _pem_response(definition, 201)


@routes.post("/certificates/renew", level=Level.VALID_USER)
async def renew(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    definition = await services.certificates.renew(identity_of(request), await read_json(request))
    return _pem_response(definition, 201)


@routes.get("/admin/notifications", level=Level.OPERATOR)
async def notifications(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    result = services.certificates.notifications(identity_of(request),
                                                 services.settings.certificate_expiry_notice_days)
    return json_response(result, headers=NO_STORE)
