"""Issue 17's views over the API: a certificate's history from the audit log (each change as a diff), and every
certificate that reaches a database; each with its refusals."""

from __future__ import annotations

from typing import Any

from conftest import RunningServer


def _edit(server: RunningServer, thumbprint: str, name: str, clearance: str, permissions: dict[str, str],
          disabled: bool = False) -> None:
    response = server.admin().post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": thumbprint, "Name": name, "SecurityClearance": clearance, "Permissions": permissions,
        "Disabled": disabled})
    assert response.status_code == 201, response.text


def _history(server: RunningServer, thumbprint: str) -> list[dict[str, Any]]:
    response = server.admin().get(f"{server.url}/admin/certificates/history", params={"thumbprint": thumbprint})
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    history: list[dict[str, Any]] = response.json()["History"]
    return history


def test_a_certificates_history_shows_who_did_what_as_diffs(server: RunningServer) -> None:
    cert = server.generate("historic", "ValidUser", {"shop": "Read"})
    _edit(server, cert.thumbprint, "historic", "ValidUser", {"shop": "ReadWrite", "orders": "Read"})
    _edit(server, cert.thumbprint, "historic-ops", "Operator", {})
    _edit(server, cert.thumbprint, "historic-ops", "Operator", {}, disabled=True)
    assert server.admin().delete(f"{server.url}/admin/certificates",
                                 params={"thumbprint": cert.thumbprint}).status_code == 204
    history = _history(server, cert.thumbprint)
    assert [h["Event"] for h in history] == ["certificate.generated", "certificate.edited", "certificate.edited",
                                             "certificate.edited", "certificate.deleted"]
    assert all(h["Actor"] == "admin.client" or "admin" in h["Actor"] for h in history)
    created, permissions, clearance, disabled, deleted = history
    assert created["Changes"] == [] and created["Permissions"] == {"shop": "Read"}
    assert permissions["Changes"] == [
        {"What": "Permission", "Database": "orders", "From": None, "To": "Read"},
        {"What": "Permission", "Database": "shop", "From": "Read", "To": "ReadWrite"}]
    assert {"What": "Clearance", "From": "ValidUser", "To": "Operator"} in clearance["Changes"]
    assert {"What": "Name", "From": "historic", "To": "historic-ops"} in clearance["Changes"]
    assert {"What": "Permission", "Database": "shop", "From": "ReadWrite", "To": None} in clearance["Changes"]
    assert disabled["Changes"] == [{"What": "Disabled", "From": False, "To": True}]
    assert deleted["Name"] == "historic-ops"
    # The twin: another certificate's history holds none of this.
    other = server.generate("not-historic")
    assert [h["Event"] for h in _history(server, other.thumbprint)] == ["certificate.generated"]


def test_history_is_for_operators_and_takes_a_thumbprint(server: RunningServer) -> None:
    user = server.generate("history-user", "ValidUser", {"shop": "Admin"})
    refused = server.session(user.pem_path).get(f"{server.url}/admin/certificates/history",
                                               params={"thumbprint": user.thumbprint})
    assert refused.status_code == 403 and "History" not in refused.text
    for bad in ("", "xyz", "A" * 39, "G" * 40):
        response = server.admin().get(f"{server.url}/admin/certificates/history", params={"thumbprint": bad})
        assert response.status_code == 400, (bad, response.text)
    assert _history(server, "0" * 40) == []


def test_every_certificate_that_reaches_a_database_with_its_access_and_why(server: RunningServer) -> None:
    admin = server.admin()
    assert admin.put(f"{server.url}/admin/databases", json={"DatabaseName": "reached"}).status_code in (200, 201)
    reader = server.generate("reached-reader", "ValidUser", {"reached": "Read"})
    writer = server.generate("reached-writer", "ValidUser", {"REACHED": "ReadWrite"})  # names compare without case
    elsewhere = server.generate("reached-elsewhere", "ValidUser", {"other-db": "Admin"})
    operator = server.generate("reached-operator", "Operator")
    _edit(server, reader.thumbprint, "reached-reader", "ValidUser", {"reached": "Read"}, disabled=True)
    response = admin.get(f"{server.url}/admin/databases/access", params={"name": "reached"})
    assert response.status_code == 200, response.text
    listed = {e["Thumbprint"]: e for e in response.json()["Certificates"]}
    assert listed[reader.thumbprint]["Access"] == "Read" and listed[reader.thumbprint]["Via"] == "Permission"
    assert listed[reader.thumbprint]["Disabled"] is True
    assert listed[writer.thumbprint]["Access"] == "ReadWrite"
    assert listed[operator.thumbprint]["Access"] == "Admin" and listed[operator.thumbprint]["Via"] == "Clearance"
    assert elsewhere.thumbprint not in listed
    order = [e["Access"] for e in response.json()["Certificates"]]
    assert order == sorted(order, key=["Admin", "ReadWrite", "Read"].index)


def test_database_access_is_for_operators_and_names_an_existing_database(server: RunningServer) -> None:
    user = server.generate("access-user", "ValidUser", {"reached": "Admin"})
    refused = server.session(user.pem_path).get(f"{server.url}/admin/databases/access", params={"name": "reached"})
    assert refused.status_code == 403
    missing = server.admin().get(f"{server.url}/admin/databases/access", params={"name": "never-created"})
    assert missing.status_code == 404
    bad = server.admin().get(f"{server.url}/admin/databases/access", params={"name": "a/b"})
    assert bad.status_code == 400


def test_the_unused_filter_lists_certificates_not_used_for_90_days(server: RunningServer, tmp_path) -> None:
    import base64
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    from certtools import issue, roost_ca

    old_days = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    dormant = issue(roost_ca(server.certs_dir), "dormant", days=200, not_before=old_days)
    active = issue(roost_ca(server.certs_dir), "dormant-but-used", days=200, not_before=old_days)
    for issued, name in ((dormant, "dormant"), (active, "dormant-but-used")):
        upload = server.admin().put(f"{server.url}/admin/certificates", json={
            "Name": name, "SecurityClearance": "ValidUser", "Permissions": {},
            "Certificate": base64.b64encode(issued.certificate.public_bytes(serialization.Encoding.DER)).decode()})
        assert upload.status_code == 201, upload.text
    assert server.session(active.write_pem(tmp_path / "active.pem")).get(
        f"{server.url}/certificates/whoami").status_code == 200  # used now
    fresh = server.generate("fresh-never-used")  # valid from 7 days back: not 90 days unused
    listed = server.admin().get(f"{server.url}/admin/certificates", params={"state": "unused", "metadataOnly": "true"})
    assert listed.status_code == 200, listed.text
    names = {c["Name"] for c in listed.json()["Results"]}
    assert "dormant" in names
    assert "dormant-but-used" not in names and fresh.name not in names
    bad = server.admin().get(f"{server.url}/admin/certificates", params={"state": "asleep"})
    assert bad.status_code == 400 and "unused" in bad.json()["Message"]


def test_a_two_factor_key_added_by_edit_is_in_the_history_and_asked_for(server: RunningServer) -> None:
    cert = server.generate("key-added-later")
    secret = server.admin().get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    edited = server.admin().post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": cert.thumbprint, "Name": "key-added-later", "SecurityClearance": "ValidUser",
        "Permissions": {}, "TwoFactorAuthenticationKey": secret})
    assert edited.status_code == 201, edited.text
    assert server.session(cert.pem_path).get(f"{server.url}/certificates/whoami").status_code == 428
    history = _history(server, cert.thumbprint)
    assert history[-1]["Changes"] == [{"What": "TwoFactorKey", "From": None, "To": "new key"}]
    assert secret not in str(history)
