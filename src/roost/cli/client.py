"""A small HTTPS client for the CLI: one request per call, the user's client certificate, one-line errors.

It speaks to a running Roost server with ``roost.tls.client_context`` and the standard library's ``http.client``.
Every failure becomes a ``CliError`` whose message says what to do and whose ``exit_code`` tells scripts what
kind of failure it was (see ``docs/certificates.md``, "Exit codes").
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from roost.errors import RoostError
from roost.pki.inspect import CertificateInfo, load_pem_bundle
from roost.tls import client_context

DEFAULT_URL = "https://localhost:8443"
DEFAULT_DATA_DIR = Path("roost-data")

EXIT_OK = 0
EXIT_REFUSED = 1  # the server answered with an error (4xx/5xx): the message is the server's
EXIT_USAGE = 2  # bad arguments or local files (click uses 2 for usage errors too)
EXIT_CONNECTION = 3  # no answer: server down, TLS handshake failed, server certificate not trusted


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Endpoint:
    """Where the server is and how to talk to it."""

    url: str
    cert: Path | None
    ca: Path | None
    insecure: bool = False

    @classmethod
    def resolve(cls, url: str | None, cert: Path | None, ca: Path | None, data_dir: Path | None,
                insecure: bool = False) -> Endpoint:
        """Fill in the defaults: the local data directory's admin certificate and CA, https://localhost:8443."""
        certs = (data_dir or DEFAULT_DATA_DIR) / "certificates"
        if cert is None and (certs / "admin.client.pem").exists():
            cert = certs / "admin.client.pem"
        if ca is None and (certs / "ca.crt").exists():
            ca = certs / "ca.crt"
        for label, path in (("--cert", cert), ("--ca", ca)):
            if path is not None and not path.is_file():
                raise CliError(f"{label} {path} does not exist or is not a file.")
        target = (url or os.environ.get("ROOST_URL") or DEFAULT_URL).rstrip("/")
        parts = urlsplit(target)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise CliError(f"--url {target} must look like https://host:port.")
        return cls(target, cert, ca, insecure)

    def _describe_cert(self) -> str:
        if self.cert is None:
            return "no client certificate"
        try:
            info: CertificateInfo = load_pem_bundle(self.cert.read_bytes())[0]
        except (OSError, RoostError):  # only a description for an error message: the file may be anything
            return f"the client certificate in {self.cert}"
        return f"the client certificate {self.cert} ({info.subject}, issued by {info.issuer})"

    def request(self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None,
                expect: tuple[int, ...] = (200, 201, 204)) -> Response:
        parts = urlsplit(self.url)
        query = f"?{urlencode(params)}" if params else ""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": "roost-cli"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if parts.scheme == "https":
            try:
                context = client_context(self.cert, self.ca, verify=not self.insecure)
            except ssl.SSLError as exc:
                raise CliError(
                    f"Cannot use {self.cert}: it must hold a PEM certificate and its unencrypted private key "
                    f"({exc.reason or exc})."
                ) from exc
            except OSError as exc:
                raise CliError(f"Cannot read {self.cert or self.ca}: {exc.strerror}.") from exc
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "localhost", parts.port or 443, context=context, timeout=60)
        else:
            connection = http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 80, timeout=60)
        try:
            connection.request(method, f"{parts.path}{path}{query}", body=data, headers=headers)
            raw = connection.getresponse()
            response = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
        except ssl.SSLCertVerificationError as exc:
            raise CliError(
                f"Cannot verify the server certificate of {self.url}: {exc.verify_message}. Pass the server's CA "
                "with --ca (a local server's is roost-data/certificates/ca.crt), or --insecure while testing.",
                EXIT_CONNECTION,
            ) from exc
        except ConnectionRefusedError as exc:
            raise CliError(f"No server answers at {self.url}: is Roost running there?", EXIT_CONNECTION) from exc
        except (ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError) as exc:
            # The design's known limit: a certificate whose issuer the server does not trust fails inside the
            # handshake and the server closes without an HTTP answer (or a TLS alert).
            raise CliError(
                f"The server at {self.url} closed the connection during the TLS handshake: it did not accept "
                f"{self._describe_cert()}. The likely cause: the certificate comes from an issuer this server does "
                "not know. Fix: have an administrator upload it (roost certs upload), or add its issuer to the "
                "server's Security.TrustedIssuers; check that --cert names the right file.",
                EXIT_CONNECTION,
            ) from exc
        except OSError as exc:
            raise CliError(f"Cannot reach {self.url}: {exc.strerror or exc}.", EXIT_CONNECTION) from exc
        finally:
            connection.close()
        if response.status not in expect:
            raise CliError(_server_message(response), EXIT_REFUSED)
        return response


def _server_message(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("Message"):
        return f"{body['Message']} (HTTP {response.status})"
    if response.status == 404:
        return "Not found (HTTP 404)."
    return f"The server answered HTTP {response.status}."
