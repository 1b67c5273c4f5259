"""Real TLS against a real server: who gets in, who does not, and the message each refusal carries."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import RunningServer
from roost.pki.authority import CertificateAuthority


def _ca(server: RunningServer) -> CertificateAuthority:
    return CertificateAuthority.from_pem((server.certs_dir / "ca.crt").read_bytes(),
                                         (server.certs_dir / "ca.key").read_bytes())


def _pem_with_validity(server: RunningServer, tmp: Path, name: str, not_before: dt.datetime,
                       not_after: dt.datetime) -> tuple[Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca(server).issue_client(name, key, not_before=not_before, not_after=not_after)
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path, cert.public_bytes(serialization.Encoding.DER)


def _upload(server: RunningServer, name: str, der: bytes, clearance: str = "ValidUser",
            permissions: dict[str, str] | None = None) -> None:
    import base64

    response = server.admin().put(f"{server.url}/admin/certificates", json={
        "Name": name, "Certificate": base64.b64encode(der).decode(), "SecurityClearance": clearance,
        "Permissions": permissions or {}})
    assert response.status_code == 201, response.text


def test_admin_gets_in_and_no_certificate_does_not(server: RunningServer) -> None:
    ok = server.admin().get(f"{server.url}/certificates/whoami")
    assert ok.status_code == 200
    assert ok.json()["SecurityClearance"] == "ClusterAdmin"
    refused = server.session(None).get(f"{server.url}/certificates/whoami")
    assert refused.status_code == 403
    assert refused.json() == {
        "Type": "InvalidAuth",
        "Message": "This server requires client certificate for authentication, but none was provided by the client. "
                   "Did you forget to install the certificate?",
        "Reason": "NoCertificate",  # Roost's addition to RavenDB's shape: what tools dispatch on
    }


def test_browser_gets_a_readable_page(server: RunningServer) -> None:
    page = server.session(None).get(f"{server.url}/certificates/whoami", headers={"Accept": "text/html"})
    assert page.status_code == 403
    assert page.headers["Content-Type"].startswith("text/html")
    assert "none was provided" in page.text and "What to do" in page.text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_unknown_certificate_from_a_trusted_issuer_is_refused_with_its_name(server: RunningServer, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    pem, _ = _pem_with_validity(server, tmp_path, "stranger", now - dt.timedelta(days=1), now + dt.timedelta(days=9))
    response = server.session(pem).get(f"{server.url}/certificates/whoami")
    assert response.status_code == 403
    assert "The supplied client certificate 'CN=stranger (Thumbprint: " in response.json()["Message"]
    assert "is unknown to the server" in response.json()["Message"]


def test_expired_registered_certificate_gets_has_expired(server: RunningServer, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    pem, der = _pem_with_validity(server, tmp_path, "old", now - dt.timedelta(days=400), now - dt.timedelta(days=2))
    _upload(server, "old", der, "Operator")
    response = server.session(pem).get(f"{server.url}/certificates/whoami")
    assert response.status_code == 403
    message = response.json()["Message"]
    assert "The supplied client certificate 'CN=old (Thumbprint:" in message
    assert f"has expired on {(now - dt.timedelta(days=2)):%A, %B %d, %Y}" in message
    # Its twin: the same registration path with a valid certificate gets in.
    pem_ok, der_ok = _pem_with_validity(server, tmp_path, "current", now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    _upload(server, "current", der_ok, "Operator")
    assert server.session(pem_ok).get(f"{server.url}/certificates/whoami").status_code == 200


def test_not_yet_valid_certificate_is_refused(server: RunningServer, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    pem, der = _pem_with_validity(server, tmp_path, "future", now + dt.timedelta(days=3), now + dt.timedelta(days=30))
    _upload(server, "future", der)
    response = server.session(pem).get(f"{server.url}/certificates/whoami")
    assert response.status_code == 403
    assert "cannot be used before" in response.json()["Message"]


def test_certificate_from_an_unknown_issuer_fails_the_handshake(server: RunningServer, tmp_path: Path) -> None:
    """The documented limit (ARCHITECTURE.md): no HTTP answer at all for an issuer the server never saw."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Rogue CA")])).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    pem = tmp_path / "rogue.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(requests.exceptions.ConnectionError):
        server.session(pem).get(f"{server.url}/certificates/whoami")


def _client_context(server: RunningServer, pem: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    context.load_cert_chain(str(pem))
    return context


def _connection(server: RunningServer, context: ssl.SSLContext,
                session: ssl.SSLSession | None = None) -> http.client.HTTPSConnection:
    connection = http.client.HTTPSConnection("localhost", server.port, context=context)
    if session is None:
        connection.connect()
    else:
        connection.sock = context.wrap_socket(socket.create_connection(("localhost", server.port)),
                                              server_hostname="localhost", session=session)
    return connection


def _get(connection: http.client.HTTPSConnection, path: str) -> tuple[int, dict[str, object]]:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    return response.status, (json.loads(body) if body else {})


def test_deleted_certificate_is_refused_on_the_same_keep_alive_connection(server: RunningServer) -> None:
    client = server.generate("short-lived", "Operator")
    connection = _connection(server, _client_context(server, client.pem_path))
    status, _ = _get(connection, "/certificates/whoami")
    assert status == 200
    sock_before = connection.sock
    deleted = server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": client.thumbprint})
    assert deleted.status_code == 204
    status, body = _get(connection, "/certificates/whoami")
    assert connection.sock is sock_before, "the request must travel on the same TLS connection"
    assert status == 403
    assert "is unknown to the server" in str(body["Message"])


def test_deleted_certificate_is_refused_on_a_resumed_tls_session(server: RunningServer) -> None:
    client = server.generate("resumer", "Operator")
    context = _client_context(server, client.pem_path)
    first = _connection(server, context)
    assert _get(first, "/certificates/whoami")[0] == 200
    session = first.sock.session  # type: ignore[union-attr]
    first.close()
    server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": client.thumbprint})
    second = _connection(server, context, session=session)
    assert second.sock.session_reused  # type: ignore[union-attr]
    status, body = _get(second, "/certificates/whoami")
    assert status == 403 and "unknown" in str(body["Message"])


def test_user_with_read_reads_but_cannot_write_or_see_other_databases(server: RunningServer) -> None:
    admin = server.admin()
    for db in ("readdb1", "readdb2"):
        assert admin.put(f"{server.url}/admin/databases", params={"name": db}).status_code == 201
    assert admin.put(f"{server.url}/databases/readdb1/docs", params={"id": "items/1"},
                     json={"Value": 1}).status_code == 201
    reader = server.session(server.generate("reader", "ValidUser", {"readdb1": "Read"}).pem_path)
    ok = reader.get(f"{server.url}/databases/readdb1/docs", params={"id": "items/1"})
    assert ok.status_code == 200 and ok.json()["Results"][0]["Value"] == 1
    write = reader.put(f"{server.url}/databases/readdb1/docs", params={"id": "items/2"}, json={"Value": 2})
    assert write.status_code == 403
    assert "writing needs ReadWrite or Admin" in write.json()["Message"]
    other = reader.get(f"{server.url}/databases/readdb2/docs", params={"id": "items/1"})
    assert other.status_code == 403
    assert other.json()["Message"].startswith("Could not authorize access to readdb2")
    # Nothing was written by the refused call.
    assert admin.get(f"{server.url}/databases/readdb1/docs", params={"id": "items/2"}).status_code == 404
    names = reader.get(f"{server.url}/databases", params={"namesOnly": "true"}).json()["Databases"]
    assert "readdb1" in names and "readdb2" not in names


def test_operator_creates_databases_but_cannot_mint_a_cluster_admin(server: RunningServer) -> None:
    operator = server.session(server.generate("op", "Operator").pem_path)
    assert operator.put(f"{server.url}/admin/databases", params={"name": "opdb"}).status_code == 201
    refused = operator.post(f"{server.url}/admin/certificates",
                            json={"Name": "evil", "SecurityClearance": "ClusterAdmin", "Permissions": {}})
    assert refused.status_code == 403
    assert refused.json()["Message"] == (
        "Cannot generate the client certificate 'evil' with 'Cluster Admin' security clearance because the current "
        "client certificate being used has a lower clearance: Operator")
    listed = server.admin().get(f"{server.url}/admin/certificates", params={"name": "evil"}).json()["Results"]
    assert listed == []
    allowed = operator.post(f"{server.url}/admin/certificates",
                            json={"Name": "fine", "SecurityClearance": "ValidUser", "Permissions": {"opdb": "Read"}})
    assert allowed.status_code == 200


def test_user_cannot_reach_operator_routes(server: RunningServer) -> None:
    user = server.session(server.generate("plain", "ValidUser").pem_path)
    response = user.get(f"{server.url}/admin/certificates")
    assert response.status_code == 403
    assert response.json()["Message"].endswith("Operator/ClusterAdmin access is required but not given to this certificate")
    assert user.get(f"{server.url}/certificates/whoami").status_code == 200
