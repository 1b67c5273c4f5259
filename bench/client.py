"""A small synchronous HTTPS client with a client certificate: one kept-alive connection, timed calls."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float

    def json(self) -> object:
        return json.loads(self.body)


class Client:
    def __init__(self, base_url: str, cert: Path, key: Path | None = None, ca: Path | None = None) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 443
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if ca is not None:
            ctx.load_verify_locations(cafile=str(ca))
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(str(cert), str(key) if key else None)
        self.ctx = ctx
        self.conn: http.client.HTTPSConnection | None = None

    def _connection(self) -> http.client.HTTPSConnection:
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)
        return self.conn

    def request(self, method: str, path: str, body: object | bytes | None = None) -> Reply:
        data = body if isinstance(body, bytes | bytearray) or body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            conn = self._connection()
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
                resp = conn.getresponse()
                payload = resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if attempt == 2:
                    raise
                continue
            elapsed = time.perf_counter() - t0
            if resp.will_close:
                self.close()
            return Reply(resp.status, payload, elapsed)
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: object | bytes | None = None) -> Reply:
        r = self.request(method, path, body)
        if r.status >= 300:
            raise RuntimeError(f"{method} {path} -> {r.status}: {r.body[:300]!r}")
        return r

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
