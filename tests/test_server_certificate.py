"""The server certificate: replace it without a restart, renew Roost's own, keep both trusted, survive a restart."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from conftest import RunningServer, start_server
from roost.pki import packages
from roost.pki.authority import CertificateAuthority, default_server_hosts


def _authority(server: RunningServer) -> CertificateAuthority:
    return CertificateAuthority.from_pem(server.ca_pem.read_bytes(), (server.certs_dir / "ca.key").read_bytes())


def new_server_pfx(server: RunningServer, password: str | None = "s3cret") -> tuple[bytes, str]:
    """A new server certificate from the server's own CA (so clients keep verifying it), as a .pfx."""
    authority = _authority(server)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = authority.issue_server(key, default_server_hosts())
    pfx = packages.pfx_bytes("server", cert, key, password, [authority.certificate])
    return pfx, hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def served_thumbprint(server: RunningServer) -> str:
    """The thumbprint of the certificate a new TLS connection is offered."""
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    with socket.create_connection(("localhost", server.port)) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha1(der).hexdigest().upper()


def _replace(server: RunningServer, pfx: bytes, password: str | None = "s3cret", session=None):  # type: ignore[no-untyped-def]
    body = {"Certificate": base64.b64encode(pfx).decode()}
    if password:
        body["Password"] = password
    return (session or server.admin()).post(f"{server.url}/admin/certificates/replace-cluster-cert",
                                            params={"replaceImmediately": "true"}, json=body)


def test_replace_while_a_client_holds_a_keep_alive_connection(fresh_server: RunningServer) -> None:
    server = fresh_server
    old_thumbprint = served_thumbprint(server)
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    context.load_cert_chain(str(server.admin_pem))
    connection = http.client.HTTPSConnection("localhost", server.port, context=context)
    connection.request("GET", "/certificates/whoami")
    first = connection.getresponse()
    assert first.status == 200
    first.read()
    sock_before = connection.sock

    pfx, new_thumbprint = new_server_pfx(server)
    response = _replace(server, pfx)
    assert response.status_code == 201, response.text
    assert response.json() == {"OldThumbprint": old_thumbprint, "Thumbprint": new_thumbprint}

    # The open connection keeps working, on the same socket, with the certificate it negotiated.
    connection.request("GET", "/certificates/whoami")
    second = connection.getresponse()
    assert second.status == 200 and json.loads(second.read())["Name"] == "admin.client"
    assert connection.sock is sock_before
    peer = connection.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    assert hashlib.sha1(peer).hexdigest().upper() == old_thumbprint
    # A new connection sees the new certificate.
    assert served_thumbprint(server) == new_thumbprint

    # Both are trusted as ClusterNode under their own thumbprints, and the list names the loaded one.
    listed = server.admin().get(f"{server.url}/admin/certificates").json()
    assert listed["LoadedServerCert"] == new_thumbprint
    by_thumbprint = {e["Thumbprint"]: e for e in listed["Results"]}
    assert by_thumbprint[new_thumbprint]["Name"] == "Server Certificate"
    assert by_thumbprint[old_thumbprint]["Name"] == "Old Server Certificate - can delete"
    assert {by_thumbprint[t]["SecurityClearance"] for t in (old_thumbprint, new_thumbprint)} == {"ClusterNode"}
    assert [e["Thumbprint"] for e in listed["Results"]].count(new_thumbprint) == 1
    # The registered entry of the certificate in use cannot be edited down or deleted; the old one can go.
    demoted = server.admin().post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": new_thumbprint, "Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}})
    assert demoted.status_code == 403
    assert demoted.json()["Message"] == (f"Cannot edit the server certificate {new_thumbprint} through this API. Use "
                                         "replace-cluster-cert or refresh.")
    assert server.admin().delete(f"{server.url}/admin/certificates",
                                 params={"thumbprint": new_thumbprint}).status_code == 403

    # A restart serves the replacement, and the passphrase of the upload is nowhere in the data directory.
    server.stop()
    again = start_server(server.data_dir)
    try:
        assert served_thumbprint(again) == new_thumbprint
        assert again.admin().get(f"{again.url}/certificates/whoami").status_code == 200
    finally:
        again.stop()
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path


def test_the_old_server_certificate_authenticates_as_cluster_node_until_deleted(fresh_server: RunningServer,
                                                                                 tmp_path: Path) -> None:
    server = fresh_server
    old_pem = tmp_path / "old-server.pem"
    old_pem.write_bytes((server.certs_dir / "server.crt").read_bytes() + (server.certs_dir / "server.key").read_bytes())
    old_thumbprint = served_thumbprint(server)
    pfx, _ = new_server_pfx(server, password=None)
    assert _replace(server, pfx, password=None).status_code == 201
    as_old = server.session(old_pem).get(f"{server.url}/certificates/whoami")
    assert as_old.status_code == 200
    assert as_old.json()["Name"] == "Old Server Certificate - can delete"
    assert as_old.json()["SecurityClearance"] == "ClusterNode"
    deleted = server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": old_thumbprint})
    assert deleted.status_code == 204
    refused = server.session(old_pem).get(f"{server.url}/certificates/whoami")
    assert refused.status_code == 403
    assert "is unknown to the server" in refused.json()["Message"]


def test_garbage_wrong_password_and_operator_are_refused_and_change_nothing(server: RunningServer) -> None:
    before = served_thumbprint(server)
    garbage = server.admin().post(f"{server.url}/admin/certificates/replace-cluster-cert",
                                  json={"Certificate": base64.b64encode(b"not a pfx at all").decode()})
    assert garbage.status_code == 400
    assert garbage.json()["Message"].startswith("Unable to load the provided certificate")
    not_base64 = server.admin().post(f"{server.url}/admin/certificates/replace-cluster-cert",
                                     json={"Certificate": "%%%"})
    assert not_base64.status_code == 400
    assert not_base64.json()["Message"].startswith("Unable to load the provided certificate")
    pfx, _ = new_server_pfx(server)
    wrong = _replace(server, pfx, password="wrong")
    assert wrong.status_code == 400
    assert wrong.json()["Message"] == "Unable to load the provided certificate: the .pfx passphrase is wrong."
    missing = server.admin().post(f"{server.url}/admin/certificates/replace-cluster-cert", json={})
    assert missing.status_code == 400
    assert missing.json()["Message"].startswith("Certificate is a mandatory property")
    operator = server.session(server.generate("replace-op", "Operator").pem_path)
    refused = _replace(server, pfx, session=operator)
    assert refused.status_code == 403
    assert refused.json()["Message"].endswith("ClusterAdmin access is required but not given to this certificate")
    refused_refresh = operator.post(f"{server.url}/admin/certificates/refresh")
    assert refused_refresh.status_code == 403
    assert served_thumbprint(server) == before
    assert server.admin().get(f"{server.url}/admin/certificates").json()["LoadedServerCert"] == before


def test_a_client_certificate_is_not_a_server_certificate(server: RunningServer) -> None:
    """clientAuth-only certificates (what Roost issues to clients) cannot serve TLS: 400, nothing changes."""
    authority = _authority(server)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = authority.issue_client("not-a-server", key)
    pfx = packages.pfx_bytes("x", cert, key, None)
    response = _replace(server, pfx, password=None)
    assert response.status_code == 400
    assert "is not valid for server authentication" in response.json()["Message"]
    key_less = pkcs12.serialize_key_and_certificates(None, None, None, [cert], serialization.NoEncryption())
    no_key = _replace(server, key_less, password=None)
    assert no_key.status_code == 400
    assert "must hold a certificate and its private key" in no_key.json()["Message"]


def test_refresh_renews_the_generated_certificate_now(fresh_server: RunningServer) -> None:
    server = fresh_server
    before = served_thumbprint(server)
    response = server.admin().post(f"{server.url}/admin/certificates/refresh")
    assert response.status_code == 200, response.text
    assert response.json()["OldThumbprint"] == before
    after = served_thumbprint(server)
    assert after == response.json()["Thumbprint"] != before
    # A client of the old certificate keeps working: the CA did not change.
    assert server.admin().get(f"{server.url}/certificates/whoami").status_code == 200
    server.stop()
    again = start_server(server.data_dir)
    try:
        assert served_thumbprint(again) == after
    finally:
        again.stop()


def test_refresh_refuses_a_certificate_roost_did_not_generate(fresh_server: RunningServer) -> None:
    server = fresh_server
    pfx, new = new_server_pfx(server)
    assert _replace(server, pfx).status_code == 201
    response = server.admin().post(f"{server.url}/admin/certificates/refresh")
    assert response.status_code == 400
    assert "was not generated by Roost, so Roost cannot renew it" in response.json()["Message"]
    assert served_thumbprint(server) == new
    # A second replacement: the first replacement's private key leaves the data directory.
    first_key = server.certs_dir / f"server.{new.lower()}.key"
    assert first_key.exists() and (first_key.stat().st_mode & 0o777) == 0o600
    pfx2, newer = new_server_pfx(server)
    assert _replace(server, pfx2).status_code == 201
    assert not first_key.exists() and (server.certs_dir / f"server.{newer.lower()}.key").exists()
    assert served_thumbprint(server) == newer


def test_a_generated_certificate_near_expiry_is_renewed_at_start(fresh_server: RunningServer) -> None:
    server = fresh_server
    server.stop()
    authority = _authority(server)
    key = ec.generate_private_key(ec.SECP256R1())
    short = authority.issue_server(key, default_server_hosts(), lifetime_days=10)
    (server.certs_dir / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (server.certs_dir / "server.crt").write_bytes(packages.certificate_pem(short) + authority.certificate_pem())
    short_thumbprint = hashlib.sha1(short.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    again = start_server(server.data_dir)
    try:
        served = served_thumbprint(again)
        assert served != short_thumbprint
        warning = next(line for line in again.output if line.startswith("Warning: The generated server certificate"))
        assert short_thumbprint in warning and f"renewed it: now {served}" in warning
    finally:
        again.stop()
    # Its twin: a certificate with more than 30 days left is kept as it is.
    kept = authority.issue_server(key, default_server_hosts(), lifetime_days=45)
    (server.certs_dir / "server.crt").write_bytes(packages.certificate_pem(kept) + authority.certificate_pem())
    (server.certs_dir / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    third = start_server(server.data_dir)
    try:
        assert served_thumbprint(third) == hashlib.sha1(kept.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    finally:
        third.stop()


def test_the_hourly_check_renews_a_generated_certificate_within_30_days_of_expiry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, with the clock moved forward (the one thing tests may mock) and the hour shortened."""
    import asyncio
    import datetime as dt

    from roost import clock
    from roost import server as server_module
    from roost.server import Server
    from roost.settings import load_settings

    async def scenario() -> None:
        settings, _ = load_settings({"data_dir": tmp_path / "data", "port": 0}, environ={})
        server = await Server.create(settings)
        await server.start()
        try:
            assert server.services.server_certificate is not None
            before = server.services.server_certificate.info
            await asyncio.sleep(0.3)
            assert server.services.server_certificate.info.thumbprint == before.thumbprint  # not due yet: kept
            later = before.not_after - dt.timedelta(days=20)
            monkeypatch.setattr(clock, "now", lambda: later)
            for _ in range(100):
                if server.services.server_certificate.info.thumbprint != before.thumbprint:
                    break
                await asyncio.sleep(0.05)
            after = server.services.server_certificate.info
            assert after.thumbprint != before.thumbprint
            old = server.services.registry.get(before.thumbprint)
            assert old is not None and old.name == "Old Server Certificate - can delete"
        finally:
            await server.stop()

    monkeypatch.setattr(server_module, "RENEWAL_CHECK_SECONDS", 0.05)
    asyncio.run(scenario())


def _listing(server: RunningServer, **params: object) -> dict:  # type: ignore[type-arg]
    response = server.admin().get(f"{server.url}/admin/certificates", params={"metadataOnly": "true", **params})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_server_entry_is_listed_once_and_never_counted(fresh_server: RunningServer) -> None:
    """Paging counts only rows that are pages' rows: the server's own entry (shown apart by the Studio) is listed
    once at the top of the first page, with what only the server knows, and TotalResults never includes it; also
    after a renewal or replacement, when the server certificate is a registered ClusterNode entry too."""
    server = fresh_server
    for i in range(3):
        server.generate(f"paging-{i}")
    for when in ("before", "after a renewal"):
        listed = _listing(server, start=0, pageSize=100)
        loaded = listed["LoadedServerCert"]
        server_rows = [r for r in listed["Results"] if r["Thumbprint"] == loaded]
        assert len(server_rows) == 1, when
        assert server_rows[0]["Name"] == "Server Certificate" and server_rows[0]["Generated"] is True, when
        others = [r for r in listed["Results"] if r["Thumbprint"] != loaded]
        assert listed["TotalResults"] == len(others), when
        # Paging through with a small page visits every counted row once and ends where TotalResults says.
        seen = []
        for start in range(0, listed["TotalResults"] + 2, 2):
            seen += [r["Thumbprint"] for r in _listing(server, start=start, pageSize=2)["Results"]
                     if r["Thumbprint"] != loaded]
        assert sorted(seen) == sorted(r["Thumbprint"] for r in others), when
        assert server.admin().post(f"{server.url}/admin/certificates/refresh").status_code == 200
