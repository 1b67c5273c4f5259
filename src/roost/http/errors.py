"""Render every error in one place: RavenDB's JSON for clients, a readable page for browsers."""

from __future__ import annotations

import html
import json

from aiohttp import web

from roost.errors import AuthorizationError, RoostError

# Every HTML response: no script, no style from anywhere, not framable (see docs/security-model.md, Browsers).
HTML_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def wants_html(request: web.Request) -> bool:
    """A browser navigating (not the Studio's fetch, not an API client) asks for text/html first."""
    accept = request.headers.get("Accept", "")
    return accept.startswith("text/html") or (
        "text/html" in accept and request.headers.get("Sec-Fetch-Mode") == "navigate"
    )


def render(request: web.Request, error: RoostError) -> web.Response:
    headers = dict(error.headers)
    if isinstance(error, AuthorizationError) and wants_html(request):
        return _html_page(error, headers)
    if isinstance(error, AuthorizationError):
        body = {"Type": error.error_type, "Message": error.message}
    else:
        body = {"Url": request.path, "Type": error.error_type, "Message": error.message, "Error": error.message}
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Cache-Control", "no-store")
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=error.http_status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _html_page(error: RoostError, headers: dict[str, str]) -> web.Response:
    message = html.escape(error.message)
    what_to_do = (
        "Make sure your browser has your Roost client certificate installed (the .pfx from your package), then "
        "open this address in a new private window so that the browser asks which certificate to use. If the "
        "certificate was deleted, disabled or has expired, ask a Roost administrator for a new one."
    )
    if error.http_status == 428:
        what_to_do = "Open the Studio (/studio/) and enter the code from your authenticator app."
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Roost: access denied</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>Access denied</h1><p>{message}</p><h2>What to do</h2><p>{html.escape(what_to_do)}</p>
<p><a href="/studio/">Go to the Studio</a></p></main></body></html>
"""
    return web.Response(text=page, status=error.http_status, content_type="text/html", charset="utf-8",
                        headers={**headers, **HTML_SECURITY_HEADERS})
