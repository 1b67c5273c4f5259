"""Streaming HTTPS for the hosted-security commands (allowlist, audit, backups): uploads and downloads of any
size in bounded chunks, which ``roost.cli.client`` (one request, whole body in memory) is not made for.

Options shared by every command that talks to a server (``--url``, ``--cert``, ``--ca``, ``--data-dir``). On the
server machine ``--data-dir`` alone is enough: the initial admin certificate, the CA and the port come from it.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar
from urllib.parse import urlencode, urlsplit

import click

from roost.tls import client_context

F = TypeVar("F", bound=Callable[..., Any])

CHUNK = 256 * 1024


def connection_options(func: F) -> F:
    options = [
        click.option("--url", envvar="ROOST_URL", default=None,
                     help="The server, e.g. https://db.example.com:8443 (env ROOST_URL)."),
        click.option("--cert", envvar="ROOST_CERT", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Client certificate + key PEM (env ROOST_CERT; default: the data dir's admin.client.pem)."),
        click.option("--ca", envvar="ROOST_CA", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="CA that signed the server certificate (env ROOST_CA; default: the data dir's ca.crt)."),
        click.option("--data-dir", "conn_data_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                     envvar="ROOST_DATA_DIR", help="A local server's data directory, to find the above."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@dataclass
class Client:
    url: str
    cert: Path | None
    ca: Path | None

    @classmethod
    def from_options(cls, url: str | None, cert: Path | None, ca: Path | None, data_dir: Path | None) -> Client:
        certs = data_dir / "certificates" if data_dir else None
        if cert is None and certs is not None and (certs / "admin.client.pem").exists():
            cert = certs / "admin.client.pem"
        if ca is None and certs is not None and (certs / "ca.crt").exists():
            ca = certs / "ca.crt"
        if url is None and data_dir is not None and (data_dir / "server.url").exists():
            url = (data_dir / "server.url").read_text().strip()
        if url is None:
            url = "https://localhost:8443"
        if cert is None:
            fail("No client certificate: give --cert FILE.pem (certificate + key), or --data-dir on the server.", 2)
        return cls(url.rstrip("/"), cert, ca)

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname or "localhost", parts.port or 443, timeout=timeout,
                                               context=client_context(self.cert, self.ca))
        return http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 80, timeout=timeout)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None,
                body: BinaryIO | Iterable[bytes] | None = None, headers: dict[str, str] | None = None,
                length: int | None = None, timeout: float | None = 300) -> http.client.HTTPResponse:
        """Send; on a 4xx/5xx print the server's message and exit 1. The caller reads the response."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = path + ("?" + urlencode(query, doseq=True) if query else "")
        all_headers = dict(headers or {})
        payload: Any = None
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        elif body is not None:
            payload = body
            if length is not None:
                all_headers["Content-Length"] = str(length)
        try:
            connection = self._connection(timeout)
            connection.request(method, target, body=payload, headers=all_headers,
                               encode_chunked=body is not None and length is None)
            response = connection.getresponse()
        except OSError as exc:
            fail(f"Cannot reach {self.url}: {exc}. Is the server running, and is your address allowed?")
        if response.status >= 400:
            text = response.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("Message") or text
            except ValueError:
                message = text
            fail(f"{response.status}: {message}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        data = response.read()
        return json.loads(data) if data.strip() else None


def client_from(ctx_values: dict[str, Any]) -> Client:
    return Client.from_options(ctx_values.pop("url"), ctx_values.pop("cert"), ctx_values.pop("ca"),
                               ctx_values.pop("conn_data_dir"))


def environ_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
