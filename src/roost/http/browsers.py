"""What Roost does because some of its callers are web browsers: CSRF, CORS and the security headers.

A browser that holds a client certificate presents it to Roost on every request to Roost's origin, whoever's page
started the request: ambient authority, like a cookie. So a state-changing request that carries a browser's
provenance signals must come from Roost's own origin (RavenDB runs the same kind of check before authorization,
reference ravendb-certificates.md section 1.3). Requests without those signals (RavenDB clients, curl, the CLI)
cannot be forged by a web page and pass. docs/security-model.md, "Browsers", tells the whole story.

Everything here runs on every request, so the checks are a few header lookups and one set membership.
"""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict

from roost.errors import CrossOriginRequestError, MisdirectedRequestError
from roost.http.headers import add_security
from roost.http.routing import Handler
from roost.settings import Settings, origin_of

# Methods that may change state. GET, HEAD and OPTIONS must not (and Roost's GET routes do not).
UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
# Fetch Metadata (https://www.w3.org/TR/fetch-metadata/): the browser's own statement of who started the request.
# "same-site" is refused too: another port or subdomain of the same site is another application.
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})

_PREFLIGHT_METHODS = "GET, HEAD, POST, PUT, DELETE, PATCH"
# Set on GET handlers that change state anyway because RavenDB's clients call them with GET (HiLo's next range).
_CHANGES_STATE = "__roost_changes_state__"


def changes_state(handler: Handler) -> Handler:
    """Mark a GET route that changes state: browsers' cross-site requests to it are refused like a POST's
    (a foreign page's ``<img src=...>`` would otherwise spend the user's certificate on it)."""
    setattr(handler, _CHANGES_STATE, True)
    return handler


def _host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:8080`` -> ``::1``, ``Example:80`` -> ``example``)."""
    host = host.strip().casefold()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host
_MAX_ORIGIN_IN_MESSAGE = 200


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BrowserPolicy:
    """Roost's own origins, the administrator's CORS origins, and the checks and headers built on them."""

    def __init__(self, settings: Settings) -> None:
        self.secure = settings.secured
        self.cors_origins = frozenset(settings.cors_allowed_origins)  # normalized by Settings
        self._settings = settings
        self._own: frozenset[str] | None = None
        self._own_for = ""
        # Unsecured mode answers only to its own names: a DNS name an attacker controls that resolves to 127.0.0.1
        # (DNS rebinding) would otherwise give any web page the unsecured server's ClusterAdmin access.
        names = {"localhost", settings.host.casefold()}
        if settings.public_url:
            names.add((urlsplit(settings.public_url).hostname or "").casefold())
        self._own_hosts = frozenset(name for name in names if name)

    def check_host(self, request: web.Request) -> None:
        """Unsecured mode: 421 unless the Host header names a loopback address, localhost or the configured host."""
        host = request.headers.get("Host", "")
        name = _host_name(host)
        if not name or name in self._own_hosts or _loopback(name):
            return  # no Host at all (HTTP/1.0 tools): not a browser, so not a rebinding
        raise MisdirectedRequestError(
            f"This unsecured Roost server answers only to its own names (localhost, a loopback address or "
            f"{self._settings.host}), not to the Host '{host[:_MAX_ORIGIN_IN_MESSAGE]}'. Use one of those, or set "
            "PublicServerUrl to the name you use."
        )

    def own_origins(self, server_url: str, port: int) -> frozenset[str]:
        """The origins the Studio can be loaded from: the server's URL, its public URL, and on a loopback address
        every loopback name with the real port (a browser may be pointed at localhost, 127.0.0.1 or [::1])."""
        if self._own is not None and self._own_for == server_url:
            return self._own
        origins: set[str] = set()
        for url in (server_url, self._settings.public_url):
            if url and (origin := origin_of(url)) is not None:
                origins.add(origin)
        bind = self._settings.host
        url_host = (urlsplit(server_url).hostname or "") if server_url else ""
        if port and (_loopback(bind) or (bind in ("0.0.0.0", "::", "") and _loopback(url_host))):
            scheme = "https" if self.secure else "http"
            for host in ("localhost", "127.0.0.1", "[::1]"):
                origin = origin_of(f"{scheme}://{host}:{port}")
                assert origin is not None
                origins.add(origin)
        if server_url:
            self._own, self._own_for = frozenset(origins), server_url
        return frozenset(origins)

    def check_csrf(self, request: web.Request, server_url: str, port: int) -> None:
        """Refuse a state-changing request (or a WebSocket upgrade) that a page of another origin made the browser send.

        Runs before authorization and before the body is read. A request with neither ``Origin`` nor
        ``Sec-Fetch-Site`` is not from a browser's cross-origin machinery and passes.
        """
        headers = request.headers
        if request.method not in UNSAFE_METHODS and "Upgrade" not in headers and not (
            getattr(request.match_info.handler, _CHANGES_STATE, False)
        ):
            # A WebSocket handshake is a GET, but no same-origin policy protects what it reads afterwards
            # (cross-site WebSocket hijacking): upgrades are checked like state-changing requests, and so are the
            # GET routes marked with changes_state.
            return
        origin = headers.get("Origin")
        site = headers.get("Sec-Fetch-Site")
        if origin is None:
            if site in _FOREIGN_SITES:
                raise self._refusal(request, f"it was started by a page of another site (Sec-Fetch-Site: {site})",
                                    server_url)
            return
        if origin in self.cors_origins:
            return  # the administrator allowed this origin to call Roost with the user's certificate
        if origin not in self.own_origins(server_url, port):
            if origin == "null" and site == "same-origin":
                # Roost's own Referrer-Policy (no-referrer) makes Chromium send "Origin: null" on a same-origin form
                # POST; Sec-Fetch-Site, which no page can set, says who started it.
                return
            raise self._refusal(request, f"it was started by a page of the origin '{origin[:_MAX_ORIGIN_IN_MESSAGE]}'",
                                server_url)
        if site in _FOREIGN_SITES:  # an own Origin with a foreign Sec-Fetch-Site: a redirect chain; trust the browser
            raise self._refusal(request, f"it was started by a page of another site (Sec-Fetch-Site: {site})",
                                server_url)

    def _refusal(self, request: web.Request, why: str, server_url: str) -> CrossOriginRequestError:
        return CrossOriginRequestError(
            f"Roost refused this {request.method} request because {why}, and a browser holding a client "
            f"certificate may only change things from Roost's own Studio ({server_url or 'this server'}/studio/). "
            "If this page is Roost's Studio reached by another address, set PublicServerUrl to that address; "
            "to let another web application call Roost, list its origin in Security.Cors.AllowedOrigins."
        )

    def preflight(self, request: web.Request) -> web.Response | None:
        """Answer a CORS preflight (OPTIONS with Access-Control-Request-Method), or None if it is not one.

        Preflights carry no credentials, so they skip authorization (as in RavenDB); only configured origins get
        the Access-Control-Allow-* headers, and always the exact origin with credentials, never ``*``.
        """
        headers = request.headers
        method = headers.get("Access-Control-Request-Method")
        origin = headers.get("Origin")
        if method is None or origin is None:
            return None
        if origin not in self.cors_origins:
            raise CrossOriginRequestError(
                f"Roost does not allow cross-origin requests from '{origin[:_MAX_ORIGIN_IN_MESSAGE]}'. An "
                "administrator can allow a web application's origin with Security.Cors.AllowedOrigins."
            )
        allow: CIMultiDict[str] = CIMultiDict()
        allow["Access-Control-Allow-Origin"] = origin
        allow["Access-Control-Allow-Credentials"] = "true"
        allow["Access-Control-Allow-Methods"] = _PREFLIGHT_METHODS
        requested = headers.get("Access-Control-Request-Headers")
        if requested and all(_is_token(h.strip()) for h in requested.split(",")):
            allow["Access-Control-Allow-Headers"] = requested
        allow["Access-Control-Max-Age"] = "600"
        allow["Vary"] = "Origin"
        return web.Response(status=204, headers=allow)

    def add_headers(self, request: web.Request, headers: CIMultiDict[str]) -> None:
        """The security headers on one response (roost.http.headers) and CORS for allowed origins."""
        add_security(headers, secure=self.secure)
        if self.cors_origins:
            origin = request.headers.get("Origin")
            if origin is not None and origin in self.cors_origins:
                headers["Access-Control-Allow-Origin"] = origin
                headers["Access-Control-Allow-Credentials"] = "true"
                headers["Access-Control-Expose-Headers"] = "Content-Disposition, ETag, Raven-Server-Version"
                headers.add("Vary", "Origin")


BROWSERS = web.AppKey("browsers", BrowserPolicy)

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(value: str) -> bool:
    return bool(value) and all(ch in _TOKEN_CHARS for ch in value)

