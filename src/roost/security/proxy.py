"""TLS at a proxy: the client certificate that a trusted proxy forwards (docs/deployment.md).

A proxy that terminates TLS (nginx, Envoy, a Kubernetes ingress) proves in its handshake that the client holds the
key of its certificate, and forwards the certificate in a header. Roost believes that header only from a proxy it
trusts:

- a connection on the Unix socket Roost listens on for the proxy (``Security.TrustedProxy.Socket``; its file mode
  decides who may connect, 0600 by default), or
- a TLS connection whose own client certificate is listed in ``Security.TrustedProxy.Thumbprints`` (a proxy on
  another machine that authenticates to Roost by its certificate).

From anyone else the header is ignored (and logged): a direct client is identified by the certificate of its own
handshake, whatever it sends. What the forwarded certificate *means* is then decided exactly as for direct TLS: the
registry lookup on every request (revocation on the next request), its validity, the 2FA gate, authorization. The
client's address is the right-most ``X-Forwarded-For`` entry (the one the trusted proxy appended), used by the
allowlist and the audit log.

Two header formats: nginx's ``$ssl_client_escaped_cert`` (URL-encoded PEM, in the header named by
``Security.TrustedProxy.Header``, ``X-SSL-Client-Cert`` by default) and Envoy's ``X-Forwarded-Client-Cert``
(``Cert="<URL-encoded PEM>"`` in the last element: the one the nearest proxy added). Only the configured header is
read: the proxy must set (overwrite) it on every request, so that a client cannot send its own.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote

from roost.errors import BadRequestError, ConfigurationError
from roost.pki.inspect import CertificateLoadError, load_pem_bundle
from roost.types import Thumbprint

log = logging.getLogger("roost.proxy")

DEFAULT_HEADER = "X-SSL-Client-Cert"
ENVOY_HEADER = "x-forwarded-client-cert"
FORWARDED_FOR = "X-Forwarded-For"
MAX_HEADER_CHARS = 16 * 1024  # an RSA-4096 certificate, URL-encoded, is about 3 KB
_CACHE_SIZE = 1024  # parsed headers kept (a forwarded certificate is parsed once, not on every request)
_IGNORED_LOG_SECONDS = 60.0


class TrustedProxy:
    """Which connections may forward a client certificate, and how to read what they forward."""

    def __init__(self, *, header: str = DEFAULT_HEADER, socket_path: Path | None = None,
                 thumbprints: tuple[str, ...] = ()) -> None:
        self.header = header
        self.socket_path = socket_path
        self.thumbprints = frozenset(t.upper() for t in thumbprints)
        self._envoy = header.casefold() == ENVOY_HEADER
        self._parsed: OrderedDict[str, tuple[bytes, Thumbprint]] = OrderedDict()
        self._ignored_logged_at = -_IGNORED_LOG_SECONDS
        self._ignored_count = 0

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None or bool(self.thumbprints)

    def trusts(self, *, unix_socket: bool, peer_thumbprint: Thumbprint | None) -> bool:
        """A connection on Roost's proxy socket, or one authenticated by a listed proxy certificate."""
        if unix_socket:
            return self.socket_path is not None
        return peer_thumbprint is not None and peer_thumbprint in self.thumbprints

    def forwarded_certificate(self, value: str | None) -> tuple[bytes | None, Thumbprint | None]:
        """The DER and thumbprint of the certificate in the header's value; (None, None) when the proxy forwarded
        none (the client sent no certificate). A value that is not one certificate is a 400."""
        if value is None or not value.strip():
            return None, None
        cached = self._parsed.get(value)
        if cached is not None:
            self._parsed.move_to_end(value)
            return cached
        if len(value) > MAX_HEADER_CHARS:
            raise BadRequestError(f"The forwarded client certificate ({self.header}) is longer than "
                                  f"{MAX_HEADER_CHARS} characters.")
        pem = _envoy_certificate(value) if self._envoy else value
        try:
            certificates = load_pem_bundle(unquote(pem.strip()).encode("utf-8", "surrogateescape"))
        except (CertificateLoadError, UnicodeError):
            certificates = []
        if len(certificates) != 1:
            raise BadRequestError(f"The forwarded client certificate ({self.header}) is not one URL-encoded PEM "
                                  "certificate. Configure the proxy to forward $ssl_client_escaped_cert (nginx) "
                                  "or the Cert element (Envoy).")
        parsed = (certificates[0].der, certificates[0].thumbprint)
        self._parsed[value] = parsed
        if len(self._parsed) > _CACHE_SIZE:
            self._parsed.popitem(last=False)
        return parsed

    def note_ignored(self, address: str | None, now: float) -> None:
        """The header arrived on a connection that is not a trusted proxy's: ignored; logged at most once a minute."""
        self._ignored_count += 1
        if now - self._ignored_logged_at >= _IGNORED_LOG_SECONDS:
            log.warning("Ignored %s from %s, which is not a trusted proxy (%d such requests since the last warning)",
                        self.header, address or "an unknown address", self._ignored_count)
            self._ignored_logged_at = now
            self._ignored_count = 0


def forwarded_address(value: str | None) -> str | None:
    """The right-most address of X-Forwarded-For (the one the trusted proxy appended), or None when it is not an
    IP address."""
    if not value:
        return None
    last = value.rsplit(",", 1)[-1].strip()
    if last.startswith("[") and "]" in last:  # [v6]:port
        last = last[1:last.index("]")]
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


def _envoy_certificate(value: str) -> str:
    """The Cert="..." of the last element of an X-Forwarded-Client-Cert value (elements are comma-separated,
    key=value pairs semicolon-separated; a quoted value may hold both)."""
    elements: list[dict[str, str]] = [{}]
    key, token, quoted, in_value = "", [], False, False
    for ch in value + ",":
        if quoted:
            if ch == '"':
                quoted = False
            else:
                token.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == "=" and not in_value:
            key, token, in_value = "".join(token).strip().casefold(), [], True
        elif ch in ";,":
            if in_value:
                elements[-1][key] = "".join(token)
            key, token, in_value = "", [], False
            if ch == ",":
                elements.append({})
        else:
            token.append(ch)
    last = next((element for element in reversed(elements) if element), {})
    return last.get("cert", "")


def bind_socket(path: Path, mode: int) -> socket.socket:
    """The proxy's Unix socket, created with ``mode`` from the start (no moment in which others may connect). A
    stale socket file from an earlier run is replaced; any other file at the path is refused."""
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise ConfigurationError(f"Security.TrustedProxy.Socket '{path}' exists and is not a socket.")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"Cannot listen on Security.TrustedProxy.Socket '{path}': {exc.strerror}.") from exc
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(1024)
    sock.setblocking(False)
    return sock
