"""Render every error in one place: RavenDB's JSON for clients, a readable page for browsers.

Rendering can never fail: a message may echo hostile request text (a lone surrogate, an undecodable header
byte, CR/LF), so text is made encodable and header values are made single-line before anything is written.
"""

from __future__ import annotations

import html
import json
import re

from aiohttp import web

from roost.errors import AuthorizationError, RoostError, TwoFactorCodeError
from roost.http import headers as headers_policy

# Characters a header value cannot carry (CR/LF would split it: response splitting) and that are shown as '?'.
_NOT_IN_A_HEADER = re.compile(r"[\x00-\x1f\x7f]")


def safe_text(text: str) -> str:
    """``text`` with every character UTF-8 cannot encode (lone surrogates) written as a ``\\udcff`` escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def safe_headers(headers: dict[str, str]) -> dict[str, str]:
    """One line of Latin-1 per header (what HTTP/1.1 can carry): hostile bytes become '?', never a new header."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        cleaned = _NOT_IN_A_HEADER.sub("?", value)
        out[name] = cleaned.encode("latin-1", "replace").decode("latin-1")
    return out

def wants_html(request: web.Request) -> bool:
    """A browser navigating (not the Studio's fetch, not an API client) asks for text/html first."""
    accept = request.headers.get("Accept", "")
    return accept.startswith("text/html") or (
        "text/html" in accept and request.headers.get("Sec-Fetch-Mode") == "navigate"
    )


def render(request: web.Request, error: RoostError) -> web.Response:
    try:
        return _render(request, error)
    except Exception:  # a bug here must still answer: the plainest possible response, no request text in it
        return web.Response(
            body=json.dumps({"Type": error.error_type, "Message": "The request was refused."}).encode(),
            status=error.http_status, content_type="application/json", charset="utf-8",
            headers=headers_policy.fallback())


def _render(request: web.Request, error: RoostError) -> web.Response:
    headers = safe_headers(error.headers)
    message = safe_text(error.message)
    if isinstance(error, AuthorizationError) and wants_html(request):
        return _html_page(error.http_status, message, error.reason, headers)
    body: dict[str, str | int]
    if isinstance(error, AuthorizationError):
        body = {"Type": error.error_type, "Message": message, "Reason": error.reason}
    else:
        body = {"Url": safe_text(request.path), "Type": error.error_type, "Message": message, "Error": message}
        if isinstance(error, TwoFactorCodeError) and error.tries_left is not None:
            body["TriesLeft"] = error.tries_left  # wrong codes left before the lockout (the Studio shows it)
    for name, value in headers_policy.NO_STORE.items():
        headers.setdefault(name, value)
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=error.http_status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


# What a person in a browser can do about each refusal (the Reason of the refusal; roost.errors.REFUSAL_REASONS).
_REMEDIES = {
    "NoCertificate": "Install your Roost client certificate in the browser (the .pfx from your package), then open "
                     "this address in a new private window so that the browser asks which certificate to use.",
    "Unknown": "This server does not know the certificate your browser sent: it may have been deleted, or it is not "
               "the one you meant. Ask a Roost administrator for a certificate; if you have another one, open this "
               "address in a new private window so that the browser asks which to use.",
    "Expired": "Ask a Roost administrator for a new certificate: this one has expired.",
    "NotYetValid": "Wait until the certificate becomes valid, or ask a Roost administrator for one valid now.",
    "Disabled": "Ask a Roost administrator to enable the certificate again, or to give you a new one.",
    "UnfamiliarIssuer": "Ask a Roost administrator to register this certificate or to trust its issuer.",
    "TwoFactorRequired": "Open the Studio (/studio/) and enter the code from your authenticator app.",
    "TwoFactorInvalidLimit": "Open the Studio (/studio/) in this browser and enter the code from your authenticator "
                             "app: the two-factor session of this certificate is for another browser.",
    "AddressNotAllowed": "Ask a Roost administrator to add your address to the allowed IP addresses.",
    "InsufficientClearance": "You are signed in, but this needs more clearance than your certificate has. Ask a Roost "
                             "administrator to do it, or for a certificate with that clearance.",
    "NoAccessToDatabase": "You are signed in, but your certificate has no access to this database. Ask a Roost "
                          "administrator for access; the Studio lists the databases you can open.",
    "ReadOnlyAccess": "You are signed in, but your certificate may only read this database. Ask a Roost "
                      "administrator for ReadWrite access.",
}
_DEFAULT_REMEDY = "Open the Studio (/studio/) to see what your certificate may do, or ask a Roost administrator."


def _html_page(status: int, text: str, reason: str, headers: dict[str, str]) -> web.Response:
    message = html.escape(text)
    what_to_do = _REMEDIES.get(reason, _DEFAULT_REMEDY)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Roost: access denied</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>Access denied</h1><p>{message}</p><h2>What to do</h2><p>{html.escape(what_to_do)}</p>
<p><a href="/studio/">Go to the Studio</a></p></main></body></html>
"""
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8",
                        headers={**headers, **headers_policy.ERROR_PAGE})
