"""Webhooks (issue 18): certificate events and expiry notices delivered to a local receiver over real HTTP, signed
with HMAC-SHA256, retried after a failure; what a receiver must refuse (a wrong secret, a changed body) does not
verify."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from certtools import issue, roost_ca
from conftest import RunningServer, start_server

SECRET = "webhook-secret-" + "x" * 16


class Receiver:
    """A webhook receiver on 127.0.0.1: records every delivery; answers 500 to the first ``failures`` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = receiver.failures > 0
                receiver.failures -= 1
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.deliveries]

    def wait_for(self, event: str, count: int = 1, timeout: float = 30.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [(h, b) for h, b in list(self.deliveries) if json.loads(b)["Event"] == event]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {count} x {event} in {self.events()}")

    def close(self) -> None:
        self._server.shutdown()


def verifies(headers: dict[str, str], body: bytes, secret: str) -> bool:
    """What a receiver does: recompute the signature over '<timestamp>.<body>' and compare in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), headers["x-roost-timestamp"].encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-roost-signature"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _hooked(data_dir: Path, receiver: Receiver, *args: str) -> RunningServer:
    return start_server(data_dir, f"--Notifications.Webhook.Url={receiver.url}",
                        f"--Notifications.Webhook.Secret={SECRET}", *args)


def test_certificate_events_are_delivered_signed_and_hold_no_secret(receiver: Receiver, tmp_path: Path) -> None:
    server = _hooked(tmp_path / "data", receiver)
    try:
        secret = server.admin().get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
        cert = server.generate("hooked", "ValidUser", {"hook-db": "Read"}, TwoFactorAuthenticationKey=secret)
        assert server.admin().delete(f"{server.url}/admin/certificates",
                                     params={"thumbprint": cert.thumbprint}).status_code == 204
        (headers, body), = receiver.wait_for("certificate.deleted")
        generated, _ = receiver.wait_for("certificate.generated")[-1]
    finally:
        server.stop()
    delivery = json.loads(body)
    assert delivery["Node"] and delivery["Id"] == headers["x-roost-delivery"]
    assert headers["x-roost-event"] == "certificate.deleted" and generated["x-roost-event"] == "certificate.generated"
    assert cert.thumbprint in body.decode()
    assert verifies(headers, body, SECRET)
    # What a receiver must refuse does not verify: another secret, a changed body, a replayed old timestamp.
    assert not verifies(headers, body, SECRET + "!")
    assert not verifies(headers, body.replace(b"hooked", b"hookee"), SECRET)
    assert not verifies({**headers, "x-roost-timestamp": "1"}, body, SECRET)
    everything = b"".join(b for _, b in receiver.deliveries)
    assert secret.encode() not in everything and b"PRIVATE KEY" not in everything
    assert SECRET not in "\n".join(server.output)


def test_a_failed_delivery_is_retried_with_the_same_id(tmp_path: Path) -> None:
    receiver = Receiver(failures=2)
    try:
        server = _hooked(tmp_path / "data", receiver)
        try:
            server.generate("retried")
            attempts = receiver.wait_for("certificate.generated", count=3, timeout=30)
        finally:
            server.stop()
    finally:
        receiver.close()
    ids = {headers["x-roost-delivery"] for headers, _ in attempts}
    assert len(ids) == 1  # one delivery, three attempts: 500, 500, then 204
    assert all(verifies(h, b, SECRET) for h, b in attempts)
    assert any("Webhook delivery" in line and "answered 500" in line for line in server.output)


def test_expiring_certificates_are_announced_and_others_are_not(receiver: Receiver, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    try:
        soon = issue(roost_ca(first.certs_dir), "expires-soon", days=5)
        upload = first.admin().put(f"{first.url}/admin/certificates", json={
            "Name": "expires-soon", "SecurityClearance": "ValidUser", "Permissions": {},
            "Certificate": base64.b64encode(soon.certificate.public_bytes(serialization.Encoding.DER)).decode()})
        assert upload.status_code == 201, upload.text
    finally:
        first.stop()
    server = _hooked(data_dir, receiver)
    try:
        (headers, body), = receiver.wait_for("certificate.expiring")
        time.sleep(0.5)  # anything else announced at start would have arrived by now
    finally:
        server.stop()
    data = json.loads(body)["Data"]
    assert data["Thumbprint"] == soon.thumbprint and data["Type"] == "CertificateExpiring"
    assert 3 <= data["DaysLeft"] <= 5
    assert verifies(headers, body, SECRET)
    expiring = [e for e in receiver.events() if e["Event"] == "certificate.expiring"]
    assert len(expiring) == 1  # the admin certificate (years left) and the server certificate are not announced


def test_without_a_webhook_nothing_is_sent(receiver: Receiver, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        server.generate("not-hooked")
    finally:
        server.stop()
    assert receiver.deliveries == []
