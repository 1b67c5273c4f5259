"""The one middleware on the request path. In order, for every request:

1. refuse invalid Unicode anywhere in the head (path, query, headers) and, on an unsecured server, foreign Host
   names (DNS rebinding);
2. CSRF: refuse cross-site browser requests that could change state (before authorization, before any body);
3. answer CORS preflights for configured origins; unknown paths get RavenDB's 404;
4. a trusted proxy's forwarded client (roost.security.proxy), then the IP allowlist, for connections opened before
   an address left it (and for every client behind a proxy);
5. identify (peer certificate, or the one a trusted proxy forwarded -> Identity; implicit trust by pinning hash),
   after catching up with the cluster's certificate changes when behind (fail closed);
6. the 2FA gate, then authorize against the route's declared level (refusals audited, rate-limited);
7. note the certificate's last use, and set this caller's body limit and deadline before the handler reads;
8. run the handler, rendering every RoostError (and any bug) into RavenDB's error shape;
9. add the header policy (roost.http.headers), Raven-Server-Version and Refresh-Topology to every answer.

Order of 5-6 is ARCHITECTURE.md's "One request, end to end" (identify -> 2FA gate -> authorize -> handler, RavenDB's
order). Handlers never look at certificates; they read ``request[IDENTITY]``.

Steps 5-7's security part (identify, 2FA gate, authorize, last used) is one function, ``security_path``; the
middleware is ``request_middleware(security_path)``. The benchmark (bench/bare_server.py, figure 4) builds the
same middleware around a path that does none of it, to measure what exactly the security path costs; the product
has no setting or branch for that.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from roost import RAVEN_SERVER_VERSION, clock
from roost.errors import (
    AuthorizationError,
    BadRequestError,
    RoostError,
    RouteNotFoundError,
)
from roost.http import errors
from roost.http.body import BODY_LIMIT, BODY_TIMEOUT, SMALL_BODY, is_valid_unicode, too_large
from roost.http.browsers import BROWSERS
from roost.http.counters import METRICS
from roost.http.routing import LEVELS, Handler
from roost.names import database_name
from roost.security import authz
from roost.security.identity import UNSECURED, AuthStatus, Identity, thumbprint_of_der
from roost.security.proxy import FORWARDED_FOR, TrustedProxy, forwarded_address
from roost.security.twofactor import COOKIE_NAME
from roost.services import Services
from roost.types import Thumbprint

log = logging.getLogger("roost.http")

SERVICES = web.AppKey("services", Services)
PROXY = web.AppKey("proxy", TrustedProxy)
IDENTITY = "roost.identity"
CLIENT_ADDRESS = "roost.client_address"  # set for a request a trusted proxy forwarded: the client's, not the proxy's


def _ssl_object(request: web.Request) -> ssl.SSLObject | None:
    transport = request.transport
    if transport is None:
        return None
    ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    return ssl_object


def peer_certificate(request: web.Request) -> bytes | None:
    ssl_object = _ssl_object(request)
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der


def peer_thumbprint(request: web.Request) -> tuple[bytes | None, Thumbprint | None]:
    """The peer certificate and its thumbprint, computed once per TLS connection.

    A connection's peer certificate cannot change (renegotiation is off, see tls.py), so the DER and its SHA-1
    are kept on the connection's ``SSLObject`` (a Python object on both event loops; uvloop's transport takes no
    attributes). What they *mean* is still looked up in the registry on every request.
    """
    ssl_object = _ssl_object(request)
    if ssl_object is None:
        return None, None
    cached: tuple[bytes | None, Thumbprint | None] | None = getattr(ssl_object, "_roost_peer", None)
    if cached is None:
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        cached = (der, thumbprint_of_der(der) if der else None)
        ssl_object._roost_peer = cached  # type: ignore[attr-defined]
    return cached


def identity_of(request: web.Request) -> Identity:
    identity: Identity = request[IDENTITY]
    return identity


# Steps 5-7's security part: given the request (its route matched), the Identity the handler runs as, or a
# RoostError raised.
SecurityPath = Callable[[web.Request, Services], Awaitable[Identity]]


async def security_path(request: web.Request, services: Services) -> Identity:
    """Identify (after catching up with the cluster's certificate changes), the 2FA gate, authorize against the
    route's declared level (refusals audited), and note the certificate's last use."""
    match_info = request.match_info
    level = request.app[LEVELS][match_info.handler]
    if services.tls is None:
        return UNSECURED
    if services.registry.stale:  # behind the cluster's certificate changes: catch up first (fail closed)
        await services.registry.refresh()
    now = clock.now()
    forwarded = CLIENT_ADDRESS in request  # the request came from the trusted proxy (see _from_trusted_proxy)
    proxy = request.app[PROXY]
    if forwarded:
        der, thumbprint = proxy.forwarded_certificate(request.headers.get(proxy.header))
    else:
        der, thumbprint = peer_thumbprint(request)
        if proxy.header in request.headers:  # a client's own copy of the header means nothing
            proxy.note_ignored(peer_address(request), time.monotonic())
    identity = services.identifier.identify(der, now, thumbprint)
    if identity.status is AuthStatus.UNFAMILIAR_ISSUER and der is not None and not forwarded:
        # (Not for a forwarded certificate: no handshake with Roost proved its chain; register it instead.)
        # Rare path (a renewed certificate with a registered key): may register it (reference section 9).
        identity = await services.certificates.implicit_trust(der, identity)
    definition = identity.definition
    # The 2FA gate (identify -> 2FA gate -> authorize). A certificate without a key pays
    # one attribute check.
    if definition is not None and definition.two_factor_key and identity.status.authenticated:
        identity = await services.two_factor.gate(identity, request.cookies.get(COOKIE_NAME), now)
    error = authz.refusal(level, identity, match_info.get("db"))
    if error is not None:
        if errors.wants_html(request):  # browsers get the private-window hint too
            error = authz.refusal(level, identity, match_info.get("db"), browser=True) or error
        _audit_refusal(request, services, identity, error)
        raise error
    if identity.status.authenticated and identity.definition is not None:
        services.registry.touch(identity.definition.thumbprint, now)
    return identity


def request_middleware(secure: SecurityPath) -> Any:
    """The middleware of the nine steps above, with ``secure`` as the security path."""

    @web.middleware
    async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        app = request.app
        services = app[SERVICES]
        browsers = app[BROWSERS]
        failure: RoostError | None = None  # for the counters (/metrics)
        try:
            # Invalid Unicode anywhere in the head is refused here, once for every route, before anything reads it.
            _ensure_clean_head(request)
            if services.tls is None:
                browsers.check_host(request)  # unsecured mode: DNS rebinding
            # CSRF first: before authorization, before any body is read (docs/security-model.md, Browsers).
            browsers.check_csrf(request, services.url, services.port)
            match_info = request.match_info
            if request.method == "OPTIONS" and (preflight := browsers.preflight(request)) is not None:
                preflight.headers["Raven-Server-Version"] = RAVEN_SERVER_VERSION
                browsers.add_headers(request, preflight.headers)
                return preflight
            if match_info.http_exception is not None:
                # RavenDB echoes the query string too; Roost does not, since a query may carry something secret.
                raise RouteNotFoundError(f"There is no handler for path: {request.method} {request.path}")
            proxy = app[PROXY]
            if proxy.enabled:
                _from_trusted_proxy(request, proxy)
            if not services.allowlist.everyone:
                _ensure_address_allowed(request, services)
            identity = await secure(request, services)
            if "db" in match_info:  # every {db} route: a name that could never exist is a 400 before any handler
                database_name(match_info["db"])
            request[IDENTITY] = identity
            settings = services.settings
            _limit_body(request, identity, settings.max_body_bytes, settings.http_body_timeout_seconds)
            response = await handler(request)
        except RoostError as error:
            failure = error
            response = errors.render(request, error)
            if error.http_status in (408, 413):
                # The rest of the body is not wanted: after the answer aiohttp reads and drops it for at most the
                # lingering time (timeouts.LINGER_SECONDS: the client may still be sending and would otherwise miss the
                # answer), then the connection closes.
                response.force_close()
        except web.HTTPException as exc:
            if exc.status == 413:
                response = errors.render(request, _too_large(request))
            else:
                browsers.add_headers(request, exc.headers)  # redirects and aiohttp's own answers get them too
                raise
        except Exception:
            log.exception("Unhandled error on %s %s", request.method, request.path)
            response = errors.render(request, RoostError(
                "The server failed to handle this request; the error has been logged. Please report it."))
        headers = response.headers
        headers["Raven-Server-Version"] = RAVEN_SERVER_VERSION
        if not response.prepared and services.cluster.stale_topology(request.headers.get("Topology-Etag")):
            headers["Refresh-Topology"] = "true"  # the nodes changed since the client's topology (RavenDB's header)
        if not response.prepared:  # a handler that streamed its answer has set its own headers (browsers.add_headers)
            browsers.add_headers(request, headers)
        app[METRICS].observe(request, response.status, failure)
        return response

    return security_middleware


security_middleware = request_middleware(security_path)


def _from_trusted_proxy(request: web.Request, proxy: TrustedProxy) -> bool:
    """The request came from the trusted proxy (its Unix socket, or its listed certificate): the client is the one
    it forwards, and the client's address the right-most X-Forwarded-For entry (``request[CLIENT_ADDRESS]``)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    unix_socket = sock is not None and sock.family == socket.AF_UNIX
    if not proxy.trusts(unix_socket=unix_socket, peer_thumbprint=None if unix_socket else peer_thumbprint(request)[1]):
        return False
    request[CLIENT_ADDRESS] = forwarded_address(request.headers.get(FORWARDED_FOR))
    return True


def peer_address(request: web.Request) -> str | None:
    """The client's address: the TCP peer's, or the one a trusted proxy forwarded (None when it forwarded none)."""
    if CLIENT_ADDRESS in request:
        forwarded: str | None = request[CLIENT_ADDRESS]
        return forwarded
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return peer[0] if isinstance(peer, tuple) else None


def _ensure_address_allowed(request: web.Request, services: Services) -> None:
    """A connection opened before its address left Security.AllowedIPs: refused from its next request on."""
    address = peer_address(request)
    if not services.allowlist.allows(address):
        raise AuthorizationError(
            f"The address {address} is not allowed to connect to this server (Security.AllowedIPs). "
            "Ask an administrator to add it to the allowed IP addresses.", reason="AddressNotAllowed"
        )


def _audit_refusal(request: web.Request, services: Services, identity: Identity, error: RoostError) -> None:
    """Authentication refusals (not mere lack of clearance) go to the audit log, rate-limited per certificate."""
    if identity.status.authenticated or identity.status is AuthStatus.TWO_FACTOR_REQUIRED:
        return
    address = peer_address(request)
    services.audit.record_refusal(identity.thumbprint or f"address:{address}", identity, error.message, address)


def _ensure_clean_head(request: web.Request) -> None:
    """400 for a URL or header that is not valid UTF-8 (aiohttp keeps undecodable header bytes as lone
    surrogates, yarl turns bad query bytes into U+FFFD silently) and for control characters in the path (a NUL, a
    CR/LF that a handler might echo into a header). Costs an ``isascii`` per header on the common path."""
    raw = request.raw_path
    if "%" in raw or not raw.isascii():
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):
            raise BadRequestError("The URL is not valid UTF-8 once percent-decoded; encode text as UTF-8.") from None
        path = request.path
        if any(unicodedata.category(ch) == "Cc" for ch in path):
            raise BadRequestError("The URL path holds a control character (such as NUL, CR or LF).")
    for name, value in request.headers.items():
        if not (value.isascii() or is_valid_unicode(value)) or not (name.isascii() or is_valid_unicode(name)):
            raise BadRequestError(f"The header '{errors.safe_text(name)[:60]}' is not valid UTF-8.")


def _limit_body(request: web.Request, identity: Identity, max_body: int, timeout: float) -> None:
    """How much body this caller may send, decided before the handler reads a byte: only an authenticated caller
    may send up to max_body_bytes; anyone else (no certificate, unknown, 2FA pending) gets SMALL_BODY, and a
    Content-Length beyond the limit is refused at once, without reading the body."""
    trusted = identity.status.authenticated or identity.status is AuthStatus.NONE  # NONE: unsecured, loopback only
    limit = max_body if trusted else min(SMALL_BODY, max_body)
    request[BODY_LIMIT] = limit
    request[BODY_TIMEOUT] = timeout
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(length, limit)


def _too_large(request: web.Request) -> RoostError:
    return too_large(None, request.client_max_size)
