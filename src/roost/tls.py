"""The server's TLS configuration: one place builds SSL contexts, adds trust anchors and swaps certificates.

Roost authenticates by certificate *thumbprint*, looked up on every request (``roost.security.identity``).
The TLS layer only has to get the peer's certificate to the application, which with stdlib ``ssl`` means
the certificate must verify against some anchor: see the anchors paragraph of ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio.sslproto
import ssl
import threading
from collections.abc import Iterable
from pathlib import Path

# What other modules may hold and pass on (the listener starts TLS with it) but never build: only this module does.
ListeningContext = ssl.SSLContext

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (not exported by the ssl module): an expired or not-yet-valid client
# certificate still completes the handshake, so Roost can answer "has expired on ..." instead of a reset.
# Roost checks validity itself on every request.
_VERIFY_NO_CHECK_TIME = 0x200000

# TLS 1.2 suites: ECDHE only (forward secrecy) and AEAD only (GCM, ChaCha20-Poly1305). TLS 1.3 suites are all
# forward-secret AEAD already.
_TLS12_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"


def _server_context(cert_path: Path, key_path: Path, password: str | None, anchors: list[bytes]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.0/1.1 are deprecated (RFC 8996)
    ctx.set_ciphers(_TLS12_CIPHERS)
    # Renegotiation would let a client swap certificates mid-connection; compression invites CRIME.
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # Ask for a client certificate but do not require one: a request without one gets a clear 403 from Roost
    # ("none was provided") instead of a failed handshake. Unauthenticated routes work without one.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    # Partial chain: a registered leaf may be its own trust anchor (uploaded self-signed certificates).
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | _VERIFY_NO_CHECK_TIME
    ctx.load_cert_chain(str(cert_path), str(key_path), password)
    if anchors:
        ctx.load_verify_locations(cadata=b"".join(anchors))
    return ctx


class ServerTLS:
    """The listening context plus the newest server-certificate context, swapped without a restart.

    asyncio binds the *listening* context to the socket for good. Its ``sni_callback`` (which OpenSSL runs for
    every ClientHello, with or without SNI) moves each new connection onto the newest context, so a replaced
    server certificate is served to new connections at once and open connections keep theirs.
    """

    def __init__(self, cert_path: Path, key_path: Path, anchors: Iterable[bytes], password: str | None = None):
        self._lock = threading.Lock()
        self._anchors: list[bytes] = []
        self._anchor_set: set[bytes] = set()
        self._remember(anchors)
        self._current = _server_context(cert_path, key_path, password, self._anchors)
        self._contexts = [self._current]
        self.listening_context = _server_context(cert_path, key_path, password, self._anchors)
        self.listening_context.sni_callback = self._select_context
        self._contexts.append(self.listening_context)

    @property
    def anchors(self) -> tuple[bytes, ...]:
        """Every certificate the handshake accepts as an anchor (DER), for implicit trust's issuer lookup."""
        return tuple(self._anchors)

    def _remember(self, ders: Iterable[bytes]) -> list[bytes]:
        new = [d for d in ders if d not in self._anchor_set]
        self._anchor_set.update(new)
        self._anchors.extend(new)
        return new

    def _select_context(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        if self._current is not ctx:
            sslobj.context = self._current
        return None

    def add_anchors(self, ders: Iterable[bytes]) -> None:
        """Trust more certificates as anchors (only ever added: deletion is enforced per request)."""
        with self._lock:
            new = self._remember(ders)
            if not new:
                return
            blob = b"".join(new)
            for ctx in self._contexts:
                ctx.load_verify_locations(cadata=blob)

    def replace_certificate(self, cert_path: Path, key_path: Path, password: str | None = None) -> None:
        """Serve a new server certificate to new connections; open ones keep working."""
        with self._lock:
            ctx = _server_context(cert_path, key_path, password, self._anchors)
            self._contexts.append(ctx)
            self._current = ctx
            # Keep the listening context and the newest two; older contexts have no new connections.
            if len(self._contexts) > 3:
                self._contexts = [self.listening_context, *self._contexts[-2:]]


# asyncio's TLS transport gives every connection a zero-filled read buffer of SSLProtocol.max_size (256 KiB), the
# bulk of what an idle TLS connection costs (figure 11: 294 KB each). A TLS record holds at most 16 KiB, so 32 KiB
# still takes two records per read; larger bodies just take more reads.
READ_BUFFER_BYTES = 32 * 1024


def use_small_read_buffers() -> None:
    """Make asyncio's TLS connections allocate READ_BUFFER_BYTES instead of 256 KiB (process-wide: the class
    attribute is the only knob asyncio offers, and the server is the only TLS user in its process)."""
    asyncio.sslproto.SSLProtocol.max_size = READ_BUFFER_BYTES


def client_context(cert_path: Path | None, ca_path: Path | None, *, verify: bool = True) -> ssl.SSLContext:
    """For the CLI and tools: present ``cert_path`` (certificate + key PEM) and verify the server with ``ca_path``."""
    ctx = ssl.create_default_context(cafile=str(ca_path) if ca_path else None)
    if not verify:
        # Only when the user asked for it (--insecure): no server verification.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_path is not None:
        ctx.load_cert_chain(str(cert_path))
    return ctx
