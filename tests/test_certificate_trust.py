"""Trust beyond registration: well-known admin certificates, trusted issuers, implicit trust by pinning hash, and
two Roost servers trusting each other through exported server certificates."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certtools import issue, outside_ca, pinning_hash, roost_ca
from conftest import RunningServer, start_server


def _whoami(server: RunningServer, pem: Path) -> requests.Response:
    return server.session(pem).get(f"{server.url}/certificates/whoami")


def test_well_known_admin_by_file_and_by_thumbprint(tmp_path: Path) -> None:
    outside = outside_ca("Well-known Outside CA")
    by_file = issue(outside, "wk-file")
    by_file_path = tmp_path / "wk-file.crt"
    by_file_path.write_bytes(by_file.pem)
    # A thumbprint alone, of a certificate whose issuer the server does not trust: TLS cannot accept it.
    unreachable = issue(outside, "wk-unreachable")
    # A file whose certificate has expired: configured, but it can never pass TLS.
    expired = issue(outside, "wk-expired", days=-1, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    expired_path = tmp_path / "wk-expired.crt"
    expired_path.write_bytes(expired.pem)
    server = start_server(tmp_path / "data", "--Security.WellKnownCertificates.Admin="
                          f"{by_file_path},{unreachable.thumbprint.lower()},{expired_path}")
    try:
        warnings = [line for line in server.output if line.startswith("Warning: Security.WellKnownCertificates")]
        assert len(warnings) == 1 and unreachable.thumbprint in warnings[0]
        assert "add its issuer's certificate file to Security.TrustedIssuers" in warnings[0]
        assert by_file.thumbprint not in warnings[0]

        me = _whoami(server, by_file.write_pem(tmp_path / "wk-file.pem"))
        assert me.status_code == 200
        assert me.json()["Name"] == "Well Known Admin Certificate"
        assert me.json()["SecurityClearance"] == "ClusterAdmin"
        with pytest.raises(requests.exceptions.ConnectionError):
            _whoami(server, unreachable.write_pem(tmp_path / "wk-unreachable.pem"))

        listed = server.admin().get(f"{server.url}/admin/certificates").json()
        assert listed["WellKnownAdminCerts"] == sorted([by_file.thumbprint, unreachable.thumbprint,
                                                        expired.thumbprint])
        details = {d["Thumbprint"]: d for d in listed["WellKnownAdminCertDetails"]}
        assert "CN=wk-file" in details[by_file.thumbprint]["Subject"] and details[by_file.thumbprint]["NotAfter"]
        assert "Unusable" not in details[by_file.thumbprint] and "Unverified" not in details[by_file.thumbprint]
        assert "Subject" not in details[unreachable.thumbprint]
        assert "thumbprint only" in details[unreachable.thumbprint]["Unverified"]
        assert details[expired.thumbprint]["Unusable"].startswith("it expired on ")
        deleted = server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": by_file.thumbprint})
        assert deleted.status_code == 403
        assert deleted.json()["Message"] == (
            f"Cannot delete the well-known admin certificate {by_file.thumbprint}: it is configured by the server's "
            "Security.WellKnownCertificates.Admin setting, not through the API.")
        edited = server.admin().post(f"{server.url}/admin/certificates/edit", json={
            "Thumbprint": by_file.thumbprint, "Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}})
        assert edited.status_code == 403 and "Cannot edit the well-known admin certificate" in edited.json()["Message"]
    finally:
        server.stop()


def test_trusted_issuers_let_a_well_known_thumbprint_through(tmp_path: Path) -> None:
    outside = outside_ca("Trusted Issuer CA")
    admin = issue(outside, "wk-trusted")
    issuer_path = tmp_path / "issuer.crt"
    issuer_path.write_bytes(outside.certificate_pem())
    server = start_server(tmp_path / "data", f"--Security.WellKnownCertificates.Admin={admin.thumbprint}",
                          f"--Security.TrustedIssuers={issuer_path}")
    try:
        me = _whoami(server, admin.write_pem(tmp_path / "wk.pem"))
        assert me.status_code == 200 and me.json()["SecurityClearance"] == "ClusterAdmin"
        # The issuer is trusted, its other certificates are not admins: a clear 403, not a failed handshake.
        other = _whoami(server, issue(outside, "not-well-known").write_pem(tmp_path / "other.pem"))
        assert other.status_code == 403 and "is unknown to the server" in other.json()["Message"]
    finally:
        server.stop()


def test_a_bad_trusted_issuer_file_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    garbage = tmp_path / "issuer.crt"
    garbage.write_text("not a certificate")
    with pytest.raises(RuntimeError) as failure:
        start_server(tmp_path / "data", f"--Security.TrustedIssuers={garbage}")
    assert f"Error: Security.TrustedIssuers: '{garbage}' holds no certificate Roost can read" in str(failure.value)


def test_a_renewed_certificate_with_the_same_key_and_issuer_is_registered_implicitly(fresh_server: RunningServer,
                                                                                     tmp_path: Path) -> None:
    server = fresh_server
    ca = roost_ca(server.certs_dir)
    original = issue(ca, "renewing-app")
    body = {"Name": "renewing-app", "Certificate": original.b64, "SecurityClearance": "ValidUser",
            "Permissions": {"appdb": "ReadWrite"}}
    assert server.admin().put(f"{server.url}/admin/certificates", json=body).status_code == 201
    renewed = issue(ca, "renewing-app", key=original.key, days=90)
    assert renewed.thumbprint != original.thumbprint
    me = _whoami(server, renewed.write_pem(tmp_path / "renewed.pem"))
    assert me.status_code == 200, me.text
    assert me.json()["Thumbprint"] == renewed.thumbprint
    assert me.json()["Name"] == "renewing-app" and me.json()["Permissions"] == {"appdb": "ReadWrite"}
    listed = server.admin().get(f"{server.url}/admin/certificates", params={"thumbprint": renewed.thumbprint})
    assert listed.status_code == 200
    assert any("Registered" in line and renewed.thumbprint in line and "automatically" in line
               for line in server.output)
    # The same key from another (but TLS-trusted) issuer is refused: the issuer is not known for this key.
    outside = outside_ca("Other Issuer")
    upload_ca = {"Name": "anchor-only", "Certificate": base64.b64encode(pkcs12.serialize_key_and_certificates(
        None, None, None, [issue(outside, "someone").certificate, outside.certificate],
        serialization.NoEncryption())).decode(), "SecurityClearance": "ValidUser", "Permissions": {}}
    assert server.admin().put(f"{server.url}/admin/certificates", json=upload_ca).status_code == 201
    impostor = issue(outside, "renewing-app", key=original.key)
    refused = _whoami(server, impostor.write_pem(tmp_path / "impostor.pem"))
    assert refused.status_code == 403
    assert refused.json()["Message"].startswith(
        f"The supplied client certificate 'CN=renewing-app (Thumbprint: {impostor.thumbprint})' is unknown to the "
        "server but has a known Public Key Pinning Hash. Will not use it to authenticate because the issuer is unknown.")
    missing = server.admin().get(f"{server.url}/admin/certificates", params={"thumbprint": impostor.thumbprint})
    assert missing.status_code == 404
    assert any("Security.WellKnownIssuerHashes.Admin" in line and pinning_hash(outside.certificate) in line
               for line in server.output)


def test_well_known_issuer_hashes_admit_a_renewal_from_a_new_issuer(tmp_path: Path) -> None:
    new_issuer = outside_ca("New Intermediate")
    issuer_path = tmp_path / "new-issuer.crt"
    issuer_path.write_bytes(new_issuer.certificate_pem())
    server = start_server(tmp_path / "data", f"--Security.TrustedIssuers={issuer_path}",
                          f"--Security.WellKnownIssuerHashes.Admin={pinning_hash(new_issuer.certificate)}")
    try:
        original = issue(roost_ca(server.certs_dir), "cross-cluster")
        assert server.admin().put(f"{server.url}/admin/certificates", json={
            "Name": "cross-cluster", "Certificate": original.b64, "SecurityClearance": "Operator",
            "Permissions": {}}).status_code == 201
        renewed = issue(new_issuer, "cross-cluster", key=original.key)
        me = _whoami(server, renewed.write_pem(tmp_path / "renewed.pem"))
        assert me.status_code == 200 and me.json()["SecurityClearance"] == "Operator"
    finally:
        server.stop()


def test_two_servers_trust_each_other_through_exported_server_certificates(tmp_path: Path) -> None:
    a = start_server(tmp_path / "a")
    b = start_server(tmp_path / "b")
    try:
        a_server_pem = tmp_path / "a-server.pem"
        a_server_pem.write_bytes((a.certs_dir / "server.crt").read_bytes() + (a.certs_dir / "server.key").read_bytes())
        # Before: B's TLS layer has never heard of A's CA or certificate.
        with pytest.raises(requests.exceptions.ConnectionError):
            b.session(a_server_pem).get(f"{b.url}/admin/certificates")

        exported = a.admin().get(f"{a.url}/admin/certificates/export")
        assert exported.status_code == 200
        bundle = pkcs12.load_pkcs12(exported.content, None)
        assert bundle.key is None and len(bundle.additional_certs) == 1
        a_server = bundle.additional_certs[0].certificate
        a_thumbprint = hashlib.sha1(a_server.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
        uploaded = b.admin().put(f"{b.url}/admin/certificates", json={
            "Name": "Server A", "Certificate": base64.b64encode(exported.content).decode(),
            "SecurityClearance": "Operator", "Permissions": {}})
        assert uploaded.status_code == 201, uploaded.text

        from_a = b.session(a_server_pem).get(f"{b.url}/admin/certificates")
        assert from_a.status_code == 200
        me = b.session(a_server_pem).get(f"{b.url}/certificates/whoami").json()
        assert me["Name"] == "Server A" and me["Thumbprint"] == a_thumbprint
        # Operator, not ClusterAdmin: B's ClusterAdmin routes stay closed to A.
        refused = b.session(a_server_pem).post(f"{b.url}/admin/certificates/refresh")
        assert refused.status_code == 403

        assert b.admin().delete(f"{b.url}/admin/certificates", params={"thumbprint": a_thumbprint}).status_code == 204
        after = b.session(a_server_pem).get(f"{b.url}/admin/certificates")
        assert after.status_code == 403
        assert f"'{x509_subject(a_server)} (Thumbprint: {a_thumbprint})' is unknown to the server" in after.json()["Message"]
    finally:
        a.stop()
        b.stop()


def x509_subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()
