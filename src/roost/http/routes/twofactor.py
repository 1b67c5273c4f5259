"""Two-factor authentication routes (reference ravendb-certificates.md, section 3 rows 20-23, and section 6).

The ``/authentication/2fa*`` routes are Unauthenticated, as in RavenDB: a certificate waiting for its code
must reach them. They do their own checks (``TwoFactor.enrolled``). Enrolment routes are Operator.
"""

from __future__ import annotations

from aiohttp import web

from roost.errors import BadRequestError
from roost.http.body import SMALL_BODY, json_response, query_bool, query_int, read_json, read_object
from roost.http.headers import NO_STORE, SVG
from roost.http.middleware import SERVICES, identity_of, peer_address
from roost.http.routing import RouteTable
from roost.security import twofactor
from roost.types import Level

routes = RouteTable()

# A base32 key of 512 bits (RFC 4226 asks for 128 at least, Roost generates 160): anything longer is not a TOTP key.
_MAX_SECRET = 104


def _cookie(value: str, max_age: int) -> str:
    # HttpOnly: no script can read it. Secure: never sent over plain HTTP. SameSite=Strict: no other site can
    # make the browser send it (the session cannot be ridden by a cross-site request). Path=/: every route
    # checks it.
    return f"{twofactor.COOKIE_NAME}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"


@routes.get("/admin/certificates/2fa/generate", level=Level.OPERATOR)
async def generate_secret(request: web.Request) -> web.StreamResponse:
    # Stateless: the key is saved only when it comes back in a generate, upload or edit of a certificate.
    return json_response({"Secret": twofactor.generate_secret()}, headers=NO_STORE)


@routes.post("/admin/certificates/2fa/qr", level=Level.OPERATOR)
async def qr(request: web.Request) -> web.StreamResponse:
    """The otpauth:// URI of ``Secret`` for ``Name`` as an SVG QR code (issuer: ``Issuer``, else the host).

    A POST with a JSON body, not a GET with query parameters: a TOTP key in a URL would be kept by browser
    history, proxies and access logs.
    """
    body = await read_object(request, limit=SMALL_BODY)
    unknown = sorted(set(body) - {"Secret", "Name", "Issuer"})
    if unknown:
        raise BadRequestError(f"Unknown field(s): {', '.join(unknown)}. Allowed: Issuer, Name, Secret.")
    secret = twofactor.parse_secret(body.get("Secret"))
    name = body.get("Name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequestError("Name is required: the certificate name shown in the app.")
    name = name.strip()
    if len(name) > twofactor.MAX_NAME:
        raise BadRequestError(f"The name is longer than {twofactor.MAX_NAME} characters.")
    issuer_value = body.get("Issuer")
    if issuer_value is not None and not isinstance(issuer_value, str):
        raise BadRequestError("Issuer must be a string.")
    issuer = (issuer_value or "").strip() or twofactor.issuer_for_host(request.host)
    if len(issuer) > twofactor.MAX_NAME:
        raise BadRequestError(f"The issuer is longer than {twofactor.MAX_NAME} characters.")
    if len(secret) > _MAX_SECRET:
        raise BadRequestError(f"The secret is longer than {_MAX_SECRET} characters; use the one from "
                              "GET /admin/certificates/2fa/generate (32 characters).")
    try:
        svg = twofactor.qr_svg(twofactor.otpauth_uri(secret, name, issuer))
    except ValueError:  # segno's DataOverflowError: more than a QR code holds (long non-ASCII name and issuer)
        raise BadRequestError(
            "The name, issuer and secret together are too long for a QR code; shorten them.") from None
    return web.Response(body=svg, content_type="image/svg+xml", headers=SVG)


@routes.get("/admin/certificates/2fa/sessions", level=Level.OPERATOR)
async def sessions(request: web.Request) -> web.StreamResponse:
    """Every certificate with a 2FA key: its open session and its key's lockout (issue 17's 2FA control)."""
    return json_response({"Certificates": await request.app[SERVICES].two_factor.overview()}, headers=NO_STORE)


@routes.delete("/admin/certificates/2fa/sessions", level=Level.OPERATOR)
async def end_session(request: web.Request) -> web.StreamResponse:
    """End a certificate's 2FA session for every client: its next request asks for a code again."""
    services = request.app[SERVICES]
    caller = identity_of(request)
    definition = services.certificates.editable(caller, request.query.get("thumbprint"))
    ended = await services.two_factor.end_session(definition, caller)
    return json_response({"Thumbprint": definition.thumbprint, "Ended": ended}, headers=NO_STORE)


@routes.delete("/admin/certificates/2fa/lockout", level=Level.OPERATOR)
async def lift_lockout(request: web.Request) -> web.StreamResponse:
    """Lift the lockout of a certificate's 2FA key after too many wrong codes."""
    services = request.app[SERVICES]
    caller = identity_of(request)
    definition = services.certificates.editable(caller, request.query.get("thumbprint"))
    lifted = await services.two_factor.lift_lockout(definition, caller)
    return json_response({"Thumbprint": definition.thumbprint, "Lifted": lifted}, headers=NO_STORE)


@routes.post("/authentication/2fa", level=Level.UNAUTHENTICATED)
async def login(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICES].two_factor
    has_limits = query_bool(request, "hasLimits", True)  # RavenDB's default: only this browser
    minutes = (
        query_int(request, "sessionDurationInMin", 0, 1)
        if request.query.get("sessionDurationInMin")
        else None
    )
    identity = identity_of(request)
    address = peer_address(request)
    # The service audits every outcome (the refusal of a caller that cannot use 2FA, each failure, lockout and
    # success); the body is read only once the caller passed ``admit``.
    service.admit(identity, address)
    result = await service.login(identity, read_json(request, required=False, limit=SMALL_BODY),
                                 has_limits=has_limits, minutes=minutes, address=address)
    response = web.Response(status=202, headers=NO_STORE)
    if result.cookie is not None:
        response.headers["Set-Cookie"] = _cookie(result.cookie, result.max_age)
    return response


@routes.get("/authentication/2fa/configuration", level=Level.UNAUTHENTICATED)
async def configuration(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICES].two_factor
    return json_response(
        {
            "DefaultTwoFactorSessionDurationInMin": service.default_minutes,
            "MaxTwoFactorSessionDurationInMin": service.max_minutes,
        }
    )


@routes.delete("/authentication/2fa", level=Level.UNAUTHENTICATED)
async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[SERVICES].two_factor.logout(identity_of(request))
    # Also drop this browser's cookie: it names a session that no longer exists.
    return web.Response(status=204, headers={"Set-Cookie": _cookie("", 0)})
