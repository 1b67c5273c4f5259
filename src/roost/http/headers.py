"""The one header policy: every security and cache header Roost sends is named here, and only here.

tests/test_contracts.py holds it: no other module writes one of these header names. Routes pick a policy by name
(``NO_STORE``, ``STUDIO``, ``SVG``); the security middleware adds the rest to every response (``add_security``).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

# The headers this module owns.
CONTENT_SECURITY_POLICY = "Content-Security-Policy"
CACHE_CONTROL = "Cache-Control"
NOSNIFF = "X-Content-Type-Options"
REFERRER_POLICY = "Referrer-Policy"
STRICT_TRANSPORT_SECURITY = "Strict-Transport-Security"
OWNED = (CONTENT_SECURITY_POLICY, CACHE_CONTROL, NOSNIFF, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY)

# Sent on every response (cheap, harmless for API clients): never sniff a type, never leak the URL in a Referer.
ALWAYS: Mapping[str, str] = {NOSNIFF: "nosniff", REFERRER_POLICY: "no-referrer"}
# HTTPS only: browsers must never try plain HTTP for this host again (RFC 6797). No includeSubDomains: Roost
# speaks for its own host, not for the domain it lives in.
HSTS_VALUE = "max-age=31536000"

# Any document (HTML, SVG, XML) that does not bring its own policy, Roost's error page included: no script, no
# form target, nothing from elsewhere, not framable. One policy: the error page and aiohttp's own answers agree.
DOCUMENT_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                "form-action 'none'; object-src 'none'")
# The Studio: its own scripts, styles and API only; not framable (docs/security-model.md, Browsers).
STUDIO_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
              "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'")
# An SVG (the 2FA QR code) opened on its own is a document that could run script: none at all.
SVG_CSP = "default-src 'none'; frame-ancestors 'none'"

# Types a browser renders as a document that can run script (an SVG opened on its own is one): they get a CSP.
DOCUMENT_TYPES = ("text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml")

# API answers carry certificates, permissions, documents, keys: no cache keeps them (the default, see below).
NO_STORE: Mapping[str, str] = {CACHE_CONTROL: "no-store", **ALWAYS}
# Roost's HTML error page.
ERROR_PAGE: Mapping[str, str] = {**NO_STORE, CONTENT_SECURITY_POLICY: DOCUMENT_CSP}
# The Studio's static files: revalidated on every load, so an upgrade is seen at once.
STUDIO: Mapping[str, str] = {CONTENT_SECURITY_POLICY: STUDIO_CSP, CACHE_CONTROL: "no-cache", **ALWAYS}
# The 2FA QR code (it encodes a TOTP key).
SVG: Mapping[str, str] = {**NO_STORE, CONTENT_SECURITY_POLICY: SVG_CSP}


def add_security(headers: MutableMapping[str, str], *, secure: bool) -> None:
    """The security headers of one response: ALWAYS, HSTS on HTTPS, no-store unless the route chose a cache
    policy, and the document CSP on a document that brought none."""
    for name, value in ALWAYS.items():
        headers[name] = value
    if CACHE_CONTROL not in headers:
        headers[CACHE_CONTROL] = "no-store"
    if secure:
        headers[STRICT_TRANSPORT_SECURITY] = HSTS_VALUE
    if CONTENT_SECURITY_POLICY not in headers and headers.get("Content-Type", "").startswith(DOCUMENT_TYPES):
        headers[CONTENT_SECURITY_POLICY] = DOCUMENT_CSP


def fallback() -> dict[str, str]:
    """For the answer of last resort (the error renderer's own failure): no sniffing, no caching."""
    return dict(NO_STORE)
