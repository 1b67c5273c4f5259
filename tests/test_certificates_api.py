"""Every certificate operation of the API against a real server, each refusal with its message (reference 2.1, 3)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import sqlite3
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from certtools import Issued, collection_pfx, issue, outside_ca, roost_ca, server_auth_only
from conftest import RunningServer, start_server

LOWER = "because the current client certificate being used has a lower clearance: Operator"


def _list(server: RunningServer, **params: str) -> dict:  # type: ignore[type-arg]
    response = server.admin().get(f"{server.url}/admin/certificates", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _names(server: RunningServer) -> set[str]:
    return {e["Name"] for e in _list(server, secondary="true")["Results"]}


def _put(session: requests.Session, server: RunningServer, **body: object) -> requests.Response:
    body.setdefault("SecurityClearance", "ValidUser")
    body.setdefault("Permissions", {})
    return session.put(f"{server.url}/admin/certificates", json=body)


def _message(response: requests.Response) -> str:
    return str(response.json()["Message"])


@pytest.fixture(scope="module")
def operator(server: RunningServer) -> requests.Session:
    return server.session(server.generate("the-operator", "Operator").pem_path)


# Generate ------------------------------------------------------------------------------------------------------


def test_generate_returns_a_zip_of_pfx_crt_key_and_readme_with_owner_only_entries(server: RunningServer) -> None:
    response = server.admin().post(f"{server.url}/admin/certificates", json={
        "Name": "pkg", "SecurityClearance": "ValidUser", "Permissions": {}})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert 'filename="pkg.zip"' in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = set(archive.namelist())
        assert {"pkg.pfx", "pkg.crt", "pkg.key", "README.txt"} <= names
        for info in archive.infolist():
            assert stat.S_IMODE(info.external_attr >> 16) == 0o600, info.filename
        key, cert, extra = pkcs12.load_key_and_certificates(archive.read("pkg.pfx"), None)
        readme = archive.read("README.txt").decode()
        crt = x509.load_pem_x509_certificate(archive.read("pkg.crt"))
    assert key is not None and cert == crt
    assert [c.subject for c in extra] == [roost_ca(server.certs_dir).certificate.subject]  # Roost's CA inside
    assert "Chrome" in readme and "Firefox" in readme and "Windows" in readme and "macOS" in readme
    assert "curl --cert" in readme and "DocumentStore" in readme
    assert crt.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]  # EC-P256 by default


def test_generate_with_a_password_protects_the_pfx_and_key_and_stores_no_password(server: RunningServer) -> None:
    password = "correct horse battery staple"
    response = server.admin().post(f"{server.url}/admin/certificates", json={
        "Name": "locked", "SecurityClearance": "ValidUser", "Permissions": {}, "Password": password})
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        pfx, key_pem = archive.read("locked.pfx"), archive.read("locked.key")
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(pfx, None)
    assert pkcs12.load_key_and_certificates(pfx, password.encode())[0] is not None
    assert b"ENCRYPTED" in key_pem
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(key_pem, None)
    database = (server.data_dir / "roost.db").read_bytes()
    wal = server.data_dir / "roost.db-wal"
    assert password.encode() not in database + (wal.read_bytes() if wal.exists() else b"")


def test_generate_rsa_and_expiration_months(server: RunningServer) -> None:
    response = server.admin().post(f"{server.url}/admin/certificates", json={
        "Name": "rsa", "SecurityClearance": "ValidUser", "Permissions": {}, "KeyType": "RSA-2048",
        "ExpirationMonths": 3})
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        cert = x509.load_pem_x509_certificate(archive.read("rsa.crt"))
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    assert 88 <= days <= 92


@pytest.mark.parametrize(("body", "message"), [
    ({"SecurityClearance": "ValidUser", "Permissions": {}}, "Name is a required field in the certificate definition"),
    ({"Name": "x", "SecurityClearance": "ValidUser"}, "Permissions is a required field in the certificate definition"),
    ({"Name": "x", "SecurityClearance": "ValidUser", "Permissions": {"": "Read"}},
     "Error in permissions in the certificate definition, database name is empty"),
    ({"Name": "x", "SecurityClearance": "ValidUser", "Permissions": {"db": "Write"}},
     "Error in permissions in the certificate definition, invalid access Write for database db. Use Admin, "
     "ReadWrite or Read."),
    ({"Name": "x", "SecurityClearance": "ValidUser", "Permissions": {"bad/name": "Read"}},
     "Error in permissions in the certificate definition:"),
    ({"Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}, "NotAfter": "2001-01-01T00:00:00Z"},
     "The certificate expiration date must be in the future."),
    ({"Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}, "KeyType": "DSA"},
     "Unknown KeyType 'DSA'. Use one of: EC-P256, RSA-2048, RSA-4096."),
    ({"Name": "x", "SecurityClearance": "Root", "Permissions": {}},
     "Invalid SecurityClearance 'Root'. Use one of: ClusterAdmin, Operator, ValidUser."),
    ({"Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}, "ExpirationMonths": 0},
     "ExpirationMonths must be a whole number of months between 1 and 1200."),
    ({"Name": "../x", "SecurityClearance": "ValidUser", "Permissions": {}}, "contains a path separator"),
    ({"Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}, "Colour": "red"},
     "Unknown field(s) in the certificate definition: Colour."),
])
def test_generate_validation_refuses_with_ravendbs_messages(server: RunningServer, body: dict, message: str) -> None:  # type: ignore[type-arg]
    before = _names(server)
    response = server.admin().post(f"{server.url}/admin/certificates", json=body)
    assert response.status_code == 400
    assert message in _message(response)
    assert _names(server) == before


def test_operator_cannot_generate_cluster_node_but_can_generate_operator(server: RunningServer,
                                                                          operator: requests.Session) -> None:
    refused = operator.post(f"{server.url}/admin/certificates", json={
        "Name": "sneaky-node", "SecurityClearance": "ClusterNode", "Permissions": {}})
    assert refused.status_code == 403
    assert _message(refused) == f"Cannot generate the client certificate 'sneaky-node' with 'ClusterNode' security " \
                                f"clearance {LOWER}"
    assert "sneaky-node" not in _names(server)
    allowed = operator.post(f"{server.url}/admin/certificates", json={
        "Name": "fellow-operator", "SecurityClearance": "Operator", "Permissions": {}})
    assert allowed.status_code == 200


def test_a_user_cannot_generate(server: RunningServer) -> None:
    user = server.session(server.generate("gen-user", "ValidUser").pem_path)
    refused = user.post(f"{server.url}/admin/certificates", json={
        "Name": "nope", "SecurityClearance": "ValidUser", "Permissions": {}})
    assert refused.status_code == 403
    assert _message(refused).endswith("Operator/ClusterAdmin access is required but not given to this certificate")


# Upload --------------------------------------------------------------------------------------------------------


def test_upload_der_pem_and_pfx_then_each_authenticates(server: RunningServer, tmp_path: Path) -> None:
    ca = roost_ca(server.certs_dir)
    der_cert, pem_cert, pfx_cert = (issue(ca, n) for n in ("up-der", "up-pem", "up-pfx"))
    assert _put(server.admin(), server, Name="up-der", Certificate=der_cert.b64).status_code == 201
    assert _put(server.admin(), server, Name="up-pem",
                Certificate=base64.b64encode(pem_cert.pem).decode()).status_code == 201
    pfx = collection_pfx([pfx_cert], "pw")
    assert _put(server.admin(), server, Name="up-pfx", Certificate=base64.b64encode(pfx).decode(),
                Password="pw").status_code == 201
    for issued in (der_cert, pem_cert, pfx_cert):
        me = server.session(issued.write_pem(tmp_path / f"{issued.thumbprint}.pem")).get(
            f"{server.url}/certificates/whoami")
        assert me.status_code == 200 and me.json()["Thumbprint"] == issued.thumbprint


def test_upload_from_an_outside_issuer_makes_the_leaf_an_anchor(server: RunningServer, tmp_path: Path) -> None:
    """A certificate from a CA the server never saw passes TLS once uploaded (the leaf is its own anchor)."""
    leaf = issue(outside_ca("Upload Outside CA"), "outsider")
    pem = leaf.write_pem(tmp_path / "outsider.pem")
    with pytest.raises(requests.exceptions.ConnectionError):
        server.session(pem).get(f"{server.url}/certificates/whoami")
    assert _put(server.admin(), server, Name="outsider", Certificate=leaf.b64).status_code == 201
    assert server.session(pem).get(f"{server.url}/certificates/whoami").status_code == 200


def test_upload_refusals_say_which_and_register_nothing(server: RunningServer, operator: requests.Session) -> None:
    ca = roost_ca(server.certs_dir)
    member = issue(ca, "refused-upload")
    pfx = base64.b64encode(collection_pfx([member], "right")).decode()
    cases = [
        ({"Certificate": pfx, "Password": "wrong"}, 400,
         "Unable to load the provided certificate: the .pfx passphrase is wrong."),
        ({"Certificate": pfx}, 400, "Unable to load the provided certificate: the .pfx is protected; supply its Password."),
        ({"Certificate": base64.b64encode(b"\x30\x82garbage").decode()}, 400,
         "Unable to load the provided certificate: it is not DER, PEM or a valid .pfx file."),
        ({"Certificate": "not base64!"}, 400, "Unable to parse the Certificate property, expected a Base64 value"),
        ({}, 400, "Certificate is a mandatory property when saving an existing certificate"),
        ({"Certificate": server_auth_only("web-only").b64}, 400, "is not valid for client authentication"),
        ({"Certificate": base64.b64encode(ca.certificate_der()).decode()}, 400,
         "The provided file holds only CA certificates; nothing to register: 'O=Roost,CN=Roost Internal CA' is a CA"),
    ]
    for extra, status, message in cases:
        response = _put(server.admin(), server, Name="refused-upload", **extra)
        assert response.status_code == status, (extra, response.text)
        assert message in _message(response), extra
    server_der = x509.load_pem_x509_certificate((server.certs_dir / "server.crt").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    own = _put(server.admin(), server, Name="refused-upload", Certificate=base64.b64encode(server_der).decode())
    assert own.status_code == 400
    assert "You are trying to import the same server certificate" in _message(own)
    for clearance in ("ClusterAdmin", "ClusterNode"):
        escalate = _put(operator, server, Name="refused-upload", Certificate=member.b64, SecurityClearance=clearance)
        assert escalate.status_code == 403
        assert _message(escalate) == f"Cannot save the certificate 'refused-upload' with '{clearance}' security " \
                                     f"clearance {LOWER}"
    assert "refused-upload" not in _names(server)


def test_a_three_certificate_pfx_collection_authenticates_each_member_until_the_primary_goes(
        server: RunningServer, tmp_path: Path) -> None:
    ca = outside_ca("Collection CA")
    members = [issue(ca, f"member-{i}") for i in range(3)]
    pfx = collection_pfx(members, "collection-pw", extra=[ca.certificate])
    response = _put(server.admin(), server, Name="trio", Certificate=base64.b64encode(pfx).decode(),
                    Password="collection-pw", SecurityClearance="Operator")
    assert response.status_code == 201, response.text
    primary, *secondaries = members
    sessions = [server.session(m.write_pem(tmp_path / f"m{i}.pem")) for i, m in enumerate(members)]
    for session in sessions:
        assert session.get(f"{server.url}/admin/certificates").status_code == 200  # Operator route
    listed = _list(server, name="trio")["Results"]
    assert [e["Thumbprint"] for e in listed] == [primary.thumbprint]  # secondaries hidden by default
    assert listed[0]["CollectionSecondaryKeys"] == [s.thumbprint for s in secondaries]
    # Roost's addition: who the members are, not only their thumbprints (a standalone certificate has none).
    assert [(m["Thumbprint"], m["Subject"]) for m in listed[0]["CollectionMembers"]] == [
        (s.thumbprint, "CN=" + f"member-{i + 1}") for i, s in enumerate(secondaries)]
    assert "CollectionMembers" not in _list(server, name="admin.client")["Results"][0]
    with_secondaries = _list(server, name="trio", secondary="true")["Results"]
    assert {e["Thumbprint"] for e in with_secondaries} == {m.thumbprint for m in members}
    # The chain's CA is an anchor, not a registration.
    assert ca.certificate.subject.rfc4514_string() not in {e.get("Subject") for e in with_secondaries}
    by_secondary = _list(server, thumbprint=secondaries[1].thumbprint)["Results"]
    assert [e["Thumbprint"] for e in by_secondary] == [primary.thumbprint]
    refused = server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": secondaries[0].thumbprint})
    assert refused.status_code == 403
    assert _message(refused) == (
        f"Cannot delete trio (Thumbprint: {secondaries[0].thumbprint}) because it is a secondary member of a "
        f"certificate collection. You need to delete the primary certificate of the collection: {primary.thumbprint}")
    deleted = server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": primary.thumbprint})
    assert deleted.status_code == 204
    for session in sessions:
        after = session.get(f"{server.url}/admin/certificates")
        assert after.status_code == 403
        assert "is unknown to the server" in _message(after)
    # Another certificate of that CA passes TLS (the chain CA stays an anchor) but is not registered: a clear 403.
    stranger = server.session(issue(ca, "member-x").write_pem(tmp_path / "x.pem")).get(
        f"{server.url}/certificates/whoami")
    assert stranger.status_code == 403 and "is unknown to the server" in _message(stranger)


# List and get --------------------------------------------------------------------------------------------------


def test_list_paging_filters_metadata_only_and_the_server_entry(server: RunningServer) -> None:
    for i in range(3):
        server.generate(f"page-{i}", "ValidUser", {"pagedb": "Read"})
    full = _list(server)
    assert full["Results"][0]["Name"] == "Server Certificate"
    assert full["Results"][0]["SecurityClearance"] == "ClusterNode"
    assert full["LoadedServerCert"] == full["Results"][0]["Thumbprint"]
    assert full["WellKnownAdminCerts"] == []
    for entry in full["Results"]:
        assert {"NotBefore", "NotAfter", "LastUsedDate", "Disabled", "Certificate"} <= set(entry)
        assert "TwoFactorAuthenticationKey" not in entry and "Password" not in entry
    page = _list(server, start="1", pageSize="2")["Results"]
    registered = [e for e in full["Results"] if e["Name"] != "Server Certificate"]
    assert [e["Thumbprint"] for e in page] == [e["Thumbprint"] for e in registered[1:3]]
    named = _list(server, name="page-1", metadataOnly="true")["Results"]
    assert [e["Name"] for e in named] == ["page-1"] and "Certificate" not in named[0]
    assert _list(server, name="page")["Results"] == []  # name is exact
    missing = server.admin().get(f"{server.url}/admin/certificates", params={"thumbprint": "AB" * 20})
    assert missing.status_code == 404
    bad = server.admin().get(f"{server.url}/admin/certificates", params={"pageSize": "many"})
    assert bad.status_code == 400 and _message(bad) == "The query parameter 'pageSize' must be a whole number, not 'many'."


def test_last_used_date_is_recorded_and_survives_a_restart(fresh_server: RunningServer) -> None:
    server = fresh_server
    client = server.generate("user-of-the-day", "ValidUser")
    assert _list(server, thumbprint=client.thumbprint)["Results"][0]["LastUsedDate"] is None
    before = dt.datetime.now(dt.UTC)
    assert server.session(client.pem_path).get(f"{server.url}/certificates/whoami").status_code == 200
    used = _list(server, thumbprint=client.thumbprint)["Results"][0]["LastUsedDate"]
    assert used is not None and dt.datetime.fromisoformat(used[:26]).replace(tzinfo=dt.UTC) >= before.replace(
        microsecond=0) - dt.timedelta(seconds=1)
    server.stop()  # stopping flushes the batch
    again = start_server(server.data_dir)
    try:
        assert _list(again, thumbprint=client.thumbprint)["Results"][0]["LastUsedDate"] == used
    finally:
        again.stop()


def test_last_used_times_are_written_in_one_batch_not_per_request(tmp_path: Path) -> None:
    asyncio.run(_batch(tmp_path))


async def _batch(tmp_path: Path) -> None:
    from roost.security.registry import Registry
    from roost.storage.sqlite import SqliteStorage

    storage = await SqliteStorage.open(tmp_path / "roost.db")
    await storage.put_certificates([{"Thumbprint": "AA", "Name": "a"}, {"Thumbprint": "BB", "Name": "b"}])
    registry = Registry(storage)
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    for i in range(100):
        registry.touch("AA", now + dt.timedelta(seconds=i))
        registry.touch("BB", now)

    def stored() -> dict[str, object]:
        rows = sqlite3.connect(tmp_path / "roost.db").execute(
            "SELECT thumbprint, json_extract(definition, '$.LastUsedDate') FROM certificates").fetchall()
        return dict(rows)

    assert stored() == {"AA": None, "BB": None}  # 200 touches, no write
    await registry.flush_last_used()
    assert stored() == {"AA": "2030-01-01T00:01:39.0000000Z", "BB": "2030-01-01T00:00:00.0000000Z"}
    await storage.close()


# Edit ----------------------------------------------------------------------------------------------------------


def test_edit_changes_name_clearance_permissions_and_disabled(server: RunningServer) -> None:
    client = server.generate("editable", "ValidUser", {"editdb": "Read"})
    session = server.session(client.pem_path)
    edit = server.admin().post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": client.thumbprint, "Name": "edited", "SecurityClearance": "ValidUser",
        "Permissions": {"editdb": "Admin", "other": "ReadWrite"}})
    assert edit.status_code == 201
    entry = _list(server, thumbprint=client.thumbprint)["Results"][0]
    assert entry["Name"] == "edited" and entry["Permissions"] == {"editdb": "Admin", "other": "ReadWrite"}
    disable = server.admin().post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": client.thumbprint, "Name": "edited", "SecurityClearance": "ValidUser", "Permissions": {},
        "Disabled": True})
    assert disable.status_code == 201
    refused = session.get(f"{server.url}/certificates/whoami")
    assert refused.status_code == 403
    assert _message(refused) == (
        f"The supplied client certificate 'CN=editable (Thumbprint: {client.thumbprint})' is disabled on this server. "
        "Ask an administrator to enable it again (Certificates > Edit) or to issue you a new one.")
    assert _list(server, thumbprint=client.thumbprint)["Results"][0]["Disabled"] is True
    enable = server.admin().post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": client.thumbprint, "Name": "edited", "SecurityClearance": "ValidUser", "Permissions": {},
        "Disabled": False})
    assert enable.status_code == 201
    assert session.get(f"{server.url}/certificates/whoami").status_code == 200


def test_edit_refusals(server: RunningServer, operator: requests.Session) -> None:
    admin_cert = server.generate("guarded-admin", "ClusterAdmin")
    user = server.generate("raise-me", "ValidUser")
    unknown = operator.post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": "CD" * 20, "Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}})
    assert unknown.status_code == 404
    assert _message(unknown) == (f"Cannot edit permissions for certificate with thumbprint '{'CD' * 20}'. It doesn't "
                                 "exist in the cluster.")
    guarded = operator.post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": admin_cert.thumbprint, "Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}})
    assert guarded.status_code == 403
    assert _message(guarded) == ("Cannot edit the certificate 'guarded-admin'. It has 'ClusterAdmin' security "
                                 "clearance while the current client certificate being used has a lower clearance: "
                                 "Operator")
    raised = operator.post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": user.thumbprint, "Name": "raise-me", "SecurityClearance": "ClusterAdmin", "Permissions": {}})
    assert raised.status_code == 403
    assert _message(raised) == ("Cannot edit security clearance to 'ClusterAdmin' for certificate 'raise-me'. Only a "
                                "'Cluster Admin' can do that and your current client certificate has a lower "
                                "clearance: Operator")
    own = server.generate("self-disabler", "Operator")
    self_disable = server.session(own.pem_path).post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": own.thumbprint, "Name": "self-disabler", "SecurityClearance": "Operator", "Permissions": {},
        "Disabled": True})
    assert self_disable.status_code == 403
    assert _message(self_disable) == "Cannot disable self-disabler because it's the current client certificate being used"
    server_thumbprint = _list(server)["LoadedServerCert"]
    server_edit = server.admin().post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": server_thumbprint, "Name": "x", "SecurityClearance": "ValidUser", "Permissions": {}})
    assert server_edit.status_code == 403
    assert _message(server_edit) == (f"Cannot edit the server certificate {server_thumbprint} through this API. Use "
                                     "replace-cluster-cert or refresh.")
    assert _list(server, thumbprint=user.thumbprint)["Results"][0]["SecurityClearance"] == "ValidUser"
    assert _list(server, thumbprint=admin_cert.thumbprint)["Results"][0]["Name"] == "guarded-admin"


# Delete and purge ----------------------------------------------------------------------------------------------


def test_delete_and_its_refusals(server: RunningServer, operator: requests.Session) -> None:
    admin_cert = server.generate("undeletable-by-operator", "ClusterAdmin")
    refused = operator.delete(f"{server.url}/admin/certificates", params={"thumbprint": admin_cert.thumbprint})
    assert refused.status_code == 403
    assert _message(refused) == ("Cannot delete the certificate 'undeletable-by-operator' with 'ClusterAdmin' "
                                 f"security clearance {LOWER}")
    me = server.admin().get(f"{server.url}/certificates/whoami").json()["Thumbprint"]
    self_delete = server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": me})
    assert self_delete.status_code == 403
    assert _message(self_delete) == "Cannot delete admin.client because it's the current client certificate being used"
    missing = server.admin().delete(f"{server.url}/admin/certificates")
    assert missing.status_code == 400 and _message(missing) == "The query parameter 'thumbprint' is required."
    unknown = server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": "EF" * 20})
    assert unknown.status_code == 404
    assert _message(unknown) == f"There is no certificate with thumbprint '{'EF' * 20}' on this server."
    server_thumbprint = _list(server)["LoadedServerCert"]
    server_delete = server.admin().delete(f"{server.url}/admin/certificates", params={"thumbprint": server_thumbprint})
    assert server_delete.status_code == 403
    assert "Use replace-cluster-cert or refresh." in _message(server_delete)
    # The accepting twin: an Operator deletes a User certificate, which is refused on its next request.
    user = server.generate("deletable", "ValidUser")
    assert server.session(user.pem_path).get(f"{server.url}/certificates/whoami").status_code == 200
    assert operator.delete(f"{server.url}/admin/certificates", params={"thumbprint": user.thumbprint}).status_code == 204
    assert server.session(user.pem_path).get(f"{server.url}/certificates/whoami").status_code == 403
    assert "undeletable-by-operator" in _names(server)


def test_purge_removes_expired_certificates_the_caller_may_delete(fresh_server: RunningServer) -> None:
    server = fresh_server
    ca = roost_ca(server.certs_dir)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    expired_user = issue(ca, "expired-user", days=-10, not_before=long_ago)
    expired_admin = issue(ca, "expired-admin", days=-10, not_before=long_ago)
    valid = issue(ca, "still-valid")
    assert _put(server.admin(), server, Name="expired-user", Certificate=expired_user.b64).status_code == 201
    assert _put(server.admin(), server, Name="expired-admin", Certificate=expired_admin.b64,
                SecurityClearance="ClusterAdmin").status_code == 201
    assert _put(server.admin(), server, Name="still-valid", Certificate=valid.b64).status_code == 201
    operator = server.session(server.generate("purging-operator", "Operator").pem_path)
    purged = operator.delete(f"{server.url}/admin/certificates/purge")
    assert purged.status_code == 200
    assert purged.json()["Deleted"] == [{"Name": "expired-user", "Thumbprint": expired_user.thumbprint}]
    assert {"expired-admin", "still-valid"} <= _names(server) and "expired-user" not in _names(server)
    by_admin = server.admin().delete(f"{server.url}/admin/certificates/purge")
    assert [d["Name"] for d in by_admin.json()["Deleted"]] == ["expired-admin"]
    assert "still-valid" in _names(server)


# Export and whoami ---------------------------------------------------------------------------------------------


def test_export_holds_the_server_certificates_without_keys_or_password(server: RunningServer) -> None:
    response = server.admin().get(f"{server.url}/admin/certificates/export")
    assert response.status_code == 200
    assert 'filename="ClusterCertificatesCollection.pfx"' in response.headers["Content-Disposition"]
    bundle = pkcs12.load_pkcs12(response.content, None)  # no password
    assert bundle.key is None
    thumbprints = {Issued(c.certificate, None).thumbprint for c in bundle.additional_certs}  # type: ignore[arg-type]
    assert _list(server)["LoadedServerCert"] in thumbprints
    user = server.session(server.generate("no-export", "ValidUser").pem_path)
    refused = user.get(f"{server.url}/admin/certificates/export")
    assert refused.status_code == 403


def test_whoami_for_users_and_for_nobody(server: RunningServer) -> None:
    user = server.generate("who", "ValidUser", {"whodb": "Read"})
    me = server.session(user.pem_path).get(f"{server.url}/certificates/whoami").json()
    assert me["Name"] == "who" and me["Permissions"] == {"whodb": "Read"} and me["Thumbprint"] == user.thumbprint
    assert "TwoFactorAuthenticationKey" not in me
    nobody = server.session(None).get(f"{server.url}/certificates/whoami")
    assert nobody.status_code == 403 and "none was provided" in _message(nobody)


def _openssl_self_signed(tmp_path: Path, name: str, *extra: str) -> tuple[Path, Path]:
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}", "-days", "30", *extra],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_an_openssl_default_certificate_is_refused_with_its_name_reason_and_fix(server: RunningServer,
                                                                                 tmp_path: Path) -> None:
    """`openssl req -x509` marks the certificate CA:TRUE by default: the refusal names it, says why and gives the
    flags; made with those flags, the same command's certificate registers and signs in."""
    ca_cert, _ = _openssl_self_signed(tmp_path, "openssl-default")
    refused = _put(server.admin(), server, Name="openssl-default",
                   Certificate=base64.b64encode(ca_cert.read_bytes()).decode())
    message = _message(refused)
    assert refused.status_code == 400
    for part in ("'CN=openssl-default'", "CA:TRUE", "-addext basicConstraints=critical,CA:FALSE",
                 "extendedKeyUsage=clientAuth"):
        assert part in message, (part, message)
    flags = message.split("add ", 1)[1].split(" to `openssl", 1)[0].split()
    cert, key = _openssl_self_signed(tmp_path, "openssl-client", *flags)
    accepted = _put(server.admin(), server, Name="openssl-client", Certificate=base64.b64encode(cert.read_bytes()).decode())
    assert accepted.status_code == 201, accepted.text
    pem = tmp_path / "openssl-client.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    assert server.session(pem).get(f"{server.url}/certificates/whoami").json()["Name"] == "openssl-client"
