"""The CLI's one HTTPS client: the user's client certificate, one request per call, one-line errors.

Every command that talks to a server takes the same options (``server_options``) and reaches the server through
``Endpoint``: small JSON calls (``request``, ``json``) and streams of any size (``open`` with a file or an
iterable of chunks as the body, and the raw response to read in chunks). Every failure is a ``CliError`` whose
message says what to do and whose ``exit_code`` tells scripts what kind of failure it was (docs/certificates.md,
"Exit codes"); ``roost.cli.main`` prints it as one line.

Where the server is, first match wins: ``--url``, ``$ROOST_URL``, ``<data-dir>/server.url`` (written by
``roost serve``), then https://localhost:8443.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlencode, urlsplit

import click

from roost.errors import RoostError
from roost.pki.inspect import CertificateInfo, load_pem_bundle
from roost.tls import client_context

DEFAULT_URL = "https://localhost:8443"
DEFAULT_DATA_DIR = Path("roost-data")
SERVER_URL_FILE = "server.url"  # written by `roost serve` in its data directory
CHUNK = 256 * 1024  # streamed uploads and downloads move in pieces of this size

EXIT_OK = 0
EXIT_REFUSED = 1  # the server answered with an error (4xx/5xx), or a checked file is bad: the message says which
EXIT_USAGE = 2  # bad arguments or local files (click uses 2 for usage errors too)
EXIT_CONNECTION = 3  # no answer: server down, TLS handshake failed, server certificate not trusted

F = TypeVar("F", bound=Callable[..., Any])
Body = bytes | BinaryIO | Iterable[bytes]


class CliError(Exception):
    """What the user sees (one line) and the exit code; raised anywhere in a command, printed by ``main``."""

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


def discover_url(url: str | None, data_dir: Path | None) -> str:
    """``--url``, then ``$ROOST_URL``, then the data directory's ``server.url``, then the default."""
    if url:
        return url
    if env := os.environ.get("ROOST_URL"):
        return env
    recorded = (data_dir or DEFAULT_DATA_DIR) / SERVER_URL_FILE
    try:
        text = recorded.read_text().strip()
    except OSError:
        text = ""
    return text or DEFAULT_URL


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
        """Fill in the defaults from the data directory: its admin certificate, its CA, its server.url."""
        certs = (data_dir or DEFAULT_DATA_DIR) / "certificates"
        if cert is None and (certs / "admin.client.pem").exists():
            cert = certs / "admin.client.pem"
        if ca is None and (certs / "ca.crt").exists():
            ca = certs / "ca.crt"
        for label, path in (("--cert", cert), ("--ca", ca)):
            if path is not None and not path.is_file():
                raise CliError(f"{label} {path} does not exist or is not a file.")
        target = discover_url(url, data_dir).rstrip("/")
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

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        if parts.scheme != "https":
            return http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 80, timeout=timeout)
        try:
            context = client_context(self.cert, self.ca, verify=not self.insecure)
        except ssl.SSLError as exc:
            raise CliError(
                f"Cannot use {self.cert}: it must hold a PEM certificate and its unencrypted private key "
                f"({exc.reason or exc})."
            ) from exc
        except OSError as exc:
            raise CliError(f"Cannot read {self.cert or self.ca}: {exc.strerror}.") from exc
        return http.client.HTTPSConnection(parts.hostname or "localhost", parts.port or 443, context=context,
                                           timeout=timeout)

    def open(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
             content: Body | None = None, length: int | None = None, headers: dict[str, str] | None = None,
             expect: tuple[int, ...] = (200, 201, 204), timeout: float | None = 60) -> http.client.HTTPResponse:
        """Send a request and return the response unread (the caller streams it and closes it).

        ``body`` is sent as JSON; ``content`` as it is (a file or chunks: chunked unless ``length`` is given).
        A status outside ``expect`` becomes a ``CliError`` with the server's message (exit code 1).
        """
        query = {key: value for key, value in (params or {}).items() if value is not None}
        target = f"{urlsplit(self.url).path}{path}" + (f"?{urlencode(query, doseq=True)}" if query else "")
        all_headers = {"Accept": "application/json", "User-Agent": "roost-cli", **(headers or {})}
        payload: Any = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        elif content is not None:
            payload = content
            if length is not None:
                all_headers["Content-Length"] = str(length)
        connection = self._connection(timeout)
        try:
            connection.request(method, target, body=payload, headers=all_headers,
                               encode_chunked=content is not None and not isinstance(content, bytes)
                               and length is None)
            raw = connection.getresponse()
        except ssl.SSLCertVerificationError as exc:
            connection.close()
            raise CliError(
                f"Cannot verify the server certificate of {self.url}: {exc.verify_message}. Pass the server's CA "
                "with --ca (a local server's is roost-data/certificates/ca.crt), or --insecure while testing.",
                EXIT_CONNECTION,
            ) from exc
        except ConnectionRefusedError as exc:
            connection.close()
            raise CliError(f"No server answers at {self.url}: is Roost running there?", EXIT_CONNECTION) from exc
        except (ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError) as exc:
            connection.close()
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
            connection.close()
            raise CliError(f"Cannot reach {self.url}: {exc.strerror or exc}.", EXIT_CONNECTION) from exc
        if raw.status not in expect:
            try:
                response = Response(raw.status, _headers(raw), raw.read())
            except OSError:  # the error answer itself broke off: the status is still worth saying
                response = Response(raw.status, _headers(raw), b"")
            finally:
                connection.close()
            message = _server_message(response)
            if response.status == 428:  # RavenDB's words say "POST the TOTP value"; on the command line it is this
                message += (f" Open a two-factor session first: roost auth 2fa --cert {self.cert or 'YOUR.pem'} "
                            "--code <the 6 digits of your authenticator app>.")
            raise CliError(message, EXIT_REFUSED)
        return raw

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        """Send a request and read the whole answer (see ``open`` for the arguments)."""
        raw = self.open(method, path, **kwargs)
        try:
            return Response(raw.status, _headers(raw), raw.read())
        except OSError as exc:
            raise CliError(f"The answer from {self.url} broke off: {exc}.", EXIT_CONNECTION) from exc
        finally:
            raw.close()

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


def _headers(raw: http.client.HTTPResponse) -> dict[str, str]:
    return {key.lower(): value for key, value in raw.getheaders()}


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


def server_options(command: F) -> F:
    """--url, --cert, --ca, --data-dir and --insecure on every command that talks to a server.

    The command receives the resolved ``Endpoint`` as its first argument.
    """

    @click.option("--url", default=None,
                  help="The server (default $ROOST_URL, then <data-dir>/server.url, then https://localhost:8443).")
    @click.option("--cert", "cert", envvar="ROOST_CERT", type=click.Path(path_type=Path), default=None,
                  help="PEM file with your client certificate and its unencrypted key "
                       "(env ROOST_CERT; default <data-dir>/certificates/admin.client.pem).")
    @click.option("--ca", "ca", envvar="ROOST_CA", type=click.Path(path_type=Path), default=None,
                  help="CA certificate that signed the server's certificate "
                       "(env ROOST_CA; default <data-dir>/certificates/ca.crt).")
    @click.option("--data-dir", "data_dir", envvar="ROOST_DATA_DIR", type=click.Path(path_type=Path), default=None,
                  help="A local server's data directory, where the defaults above come from (default ./roost-data).")
    @click.option("--insecure", is_flag=True, help="Do not verify the server's certificate (testing only).")
    @functools.wraps(command)
    def wrapper(url: str | None, cert: Path | None, ca: Path | None, data_dir: Path | None, insecure: bool,
                **kwargs: Any) -> Any:
        return command(Endpoint.resolve(url, cert, ca, data_dir, insecure), **kwargs)

    return wrapper  # type: ignore[return-value]
