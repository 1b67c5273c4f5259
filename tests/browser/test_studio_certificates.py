"""The Certificates view in a real Chromium against a real server: every dialog end to end."""

from __future__ import annotations

import base64
import datetime as dt
import re
import zipfile

import pytest
from certificates_factory import self_signed, write_pem
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from playwright.sync_api import expect
from studio_browser import XSS_NAME, Studio, checked_fixture, downloaded_certificate, row, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def _create_database(studio: Studio, name: str) -> None:
    response = studio.server.admin().put(f"{studio.url}/admin/databases", params={"name": name},
                                         json={"DatabaseName": name})
    assert response.status_code in (201, 409) or "already exists" in response.text, response.text


def _get(studio: Studio, **params: str) -> dict:
    response = studio.server.admin().get(f"{studio.url}/admin/certificates", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_studio_is_served_with_a_strict_content_security_policy(studio: Studio) -> None:
    response = studio.server.session().get(f"{studio.url}/studio/", allow_redirects=False)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert studio.server.session().get(f"{studio.url}/studio", allow_redirects=False).headers["Location"] == "/studio/"


def test_overview_shows_who_you_are_the_server_certificate_and_the_current_marker(checked: Studio) -> None:
    page = checked.open()
    me = checked.server.admin().get(f"{checked.url}/certificates/whoami").json()
    identity = page.locator("#identity")
    expect(identity.locator(".me-name")).to_have_text(me["Name"])
    expect(identity).to_contain_text("Cluster Admin")
    expect(identity).to_contain_text(me["Thumbprint"])
    expect(identity).to_contain_text("Expires " + me["NotAfter"][:10])

    listing = _get(checked, metadataOnly="true")
    panel = page.locator("section.server-cert")
    expect(panel).to_contain_text("Server Certificate")
    expect(panel).to_contain_text(listing["LoadedServerCert"])
    expect(panel.get_by_role("button", name="Renew now")).to_be_visible()
    expect(panel.get_by_role("button", name="Export server certificates")).to_be_enabled()
    expect(page.locator("section.well-known")).to_contain_text("Well-known admin certificates")

    mine = row(page, me["Name"])
    expect(mine.locator(".badge.current")).to_have_text("current")
    expect(mine.get_by_role("button", name=f"Delete {me['Name']}")).to_be_disabled()
    expect(mine).to_contain_text("You are connected with this certificate, so it cannot be deleted.")
    expect(page.locator(".summary")).to_contain_text("of")
    checked.shot(page, "studio-certificates", full_page=True)


def test_generate_dialog_downloads_a_package_that_signs_in(checked: Studio, tmp_path) -> None:
    _create_database(checked, "orders")
    page = checked.open()
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Generate client certificate")).to_be_visible()
    dialog.get_by_label("Name", exact=True).fill("reporting")
    dialog.get_by_label("Security clearance").select_option("ValidUser")
    dialog.get_by_label("Passphrase (optional)").fill("correct horse")
    expect(dialog.get_by_label("Expiration period (months)")).to_have_value("60")
    dialog.get_by_role("button", name="Add database permission").click()
    dialog.get_by_label("Database", exact=True).select_option("orders")
    dialog.get_by_label("Access").select_option("Read")
    dialog.locator("details.advanced summary").click()
    expect(dialog.get_by_label("Key type")).to_have_value("EC-P256")
    checked.shot(page, "studio-generate")

    with page.expect_download() as download_info:
        dialog.get_by_role("button", name="Generate", exact=True).click()
    download = download_info.value
    assert download.suggested_filename == "reporting.zip"
    expect(dialog.get_by_role("status")).to_contain_text("reporting.zip")
    dialog.get_by_role("button", name="Close", exact=True).click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    generated = row(page, "reporting")
    expect(generated).to_contain_text("orders")
    expect(generated).to_contain_text("Read")
    expect(generated.locator(".badge.clearance")).to_have_text("User")

    certificate = downloaded_certificate(download, "reporting", tmp_path, password="correct horse")
    with zipfile.ZipFile(tmp_path / next(p.name for p in tmp_path.glob("reporting-*.zip"))) as archive:
        assert {"reporting.pfx", "reporting.crt", "reporting.key"} <= set(archive.namelist())
    theirs = checked.open(certificate.pem_path)
    expect(theirs.locator("#identity .me-name")).to_have_text("reporting")
    expect(theirs.locator("#identity")).to_contain_text("User")
    expect(theirs.locator("#identity")).to_contain_text(certificate.thumbprint)


def test_generate_refusal_is_shown_in_the_dialog(checked: Studio) -> None:
    page = checked.open()
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill("has/slash")
    dialog.get_by_role("button", name="Generate", exact=True).click()
    expect(dialog.get_by_role("alert")).to_contain_text("path separator")
    expect(page.get_by_role("dialog")).to_be_visible()


def test_dialogs_close_with_escape_and_keep_focus_inside(checked: Studio) -> None:
    page = checked.open()
    opener = page.get_by_role("button", name="Generate client certificate")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Name", exact=True)).to_be_focused()
    for _ in range(25):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('dialog') !== null"), "focus left the dialog"
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)


def test_every_control_has_a_visible_label(checked: Studio) -> None:
    _create_database(checked, "orders")
    page = checked.open()
    # Every control that is shown (a panel hidden by a choice hides its controls too) has a visible label.
    unlabelled = "(root) => [...root.querySelectorAll('input, select, textarea')]" \
        ".filter((el) => el.type !== 'hidden' && el.offsetParent !== null" \
        " && ![...el.labels].some((l) => l.offsetParent !== null))" \
        ".map((el) => el.outerHTML)"
    assert page.locator("main").evaluate(unlabelled) == []
    for opener in ("Generate client certificate", "Upload client certificate"):
        page.get_by_role("button", name=opener).click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="Add database permission").click()
        if opener.startswith("Generate"):
            dialog.locator("details.advanced summary").click()
        assert dialog.evaluate(unlabelled) == [], opener
        if opener.startswith("Generate"):  # the other choice shows other controls
            dialog.get_by_label("I have a certificate request").check()
            expect(dialog.get_by_label("Certificate request (.csr)")).to_be_visible()
            assert dialog.evaluate(unlabelled) == [], "Generate from a certificate request"
        page.keyboard.press("Escape")


def test_without_a_certificate_the_studio_says_what_to_do(studio: Studio) -> None:
    # No client certificate means no Playwright TLS proxy, so Chromium itself checks the server certificate and
    # it cannot be told to trust the test CA: ignore_https_errors here covers the server certificate only.
    context = studio.browser.new_context(ignore_https_errors=True, viewport={"width": 1200, "height": 700})
    try:
        page = context.new_page()
        page.goto(f"{studio.url}/studio/")
        refusal = page.locator("section.refusal")
        expect(refusal.get_by_role("heading")).to_have_text("No client certificate")
        expect(refusal).to_contain_text("Install your certificate (.pfx) in the browser")
        expect(page.locator("#nav")).to_be_hidden()
    finally:
        context.close()


def test_upload_dialog_registers_a_collection(checked: Studio, tmp_path) -> None:
    first, first_thumbprint = self_signed("partner-a")
    second, second_thumbprint = self_signed("partner-b")
    pem = write_pem(tmp_path / "partners.pem", first, second)
    page = checked.open()
    page.get_by_role("button", name="Upload client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Certificate file (.pfx, .crt, .pem or .der)").set_input_files(str(pem))
    expect(dialog.locator(".preview")).to_contain_text(first_thumbprint)
    expect(dialog.locator(".preview")).to_contain_text(second_thumbprint)
    expect(dialog.get_by_label("Name", exact=True)).to_have_value("partners")
    dialog.get_by_label("Security clearance").select_option("Operator")
    checked.shot(page, "studio-upload")
    dialog.get_by_role("button", name="Upload", exact=True).click()
    expect(dialog.get_by_role("status")).to_contain_text("was uploaded")
    expect(dialog).to_contain_text("collection of 2 certificates")
    dialog.get_by_role("button", name="Close", exact=True).click()

    uploaded = row(page, "partners")
    expect(uploaded.locator(".badge.clearance")).to_have_text("Operator")
    expect(uploaded).to_contain_text("Collection: 2 certificates")
    uploaded.locator("details.members summary").click()
    expect(uploaded.locator("details.members")).to_contain_text(second_thumbprint)
    expect(uploaded.locator("details.members .subject")).to_have_count(1)  # the member's subject beside it
    registered = _get(checked, name="partners", secondary="true", metadataOnly="true")["Results"]
    assert {c["Thumbprint"] for c in registered} == {first_thumbprint, second_thumbprint}


def test_edit_dialog_changes_name_clearance_and_permissions(checked: Studio) -> None:
    _create_database(checked, "orders")
    _create_database(checked, "hr")
    target = checked.generate("editable", "ValidUser", {"orders": "Read"})
    page = checked.open()
    row(page, "editable").get_by_role("button", name="Edit editable").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(target.thumbprint)
    dialog.get_by_label("Name", exact=True).fill("edited")
    dialog.get_by_label("Access").select_option("ReadWrite")
    dialog.get_by_role("button", name="Add database permission").click()
    dialog.get_by_label("Access").nth(1).select_option("Admin")
    checked.shot(page, "studio-edit")
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator(".notice.success").first).to_contain_text("edited")
    expect(row(page, "edited")).to_contain_text("Read/Write")

    saved = _get(checked, thumbprint=target.thumbprint, metadataOnly="true")["Results"][0]
    assert saved["Name"] == "edited"
    assert saved["Permissions"] == {"orders": "ReadWrite", "hr": "Admin"}


def test_delete_confirmation_names_the_certificate(checked: Studio) -> None:
    target = checked.generate("short-lived-tool")
    page = checked.open()
    row(page, "short-lived-tool").get_by_role("button", name="Delete short-lived-tool").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".cert-name")).to_have_text("short-lived-tool")
    expect(dialog).to_contain_text(target.thumbprint)
    checked.shot(page, "studio-delete")
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(row(page, "short-lived-tool")).to_have_count(0)
    gone = checked.server.admin().get(f"{checked.url}/admin/certificates", params={"thumbprint": target.thumbprint})
    assert gone.status_code == 404

    # The deleted certificate no longer opens the Studio.
    refused = checked.server.session(target.pem_path).get(f"{checked.url}/certificates/whoami")
    assert refused.status_code == 403


def test_a_refused_delete_is_explained_in_the_dialog(checked: Studio) -> None:
    target = checked.generate("deleted-elsewhere")
    page = checked.open()
    button = row(page, "deleted-elsewhere").get_by_role("button", name="Delete deleted-elsewhere")
    expect(button).to_be_enabled()
    checked.server.admin().delete(f"{checked.url}/admin/certificates", params={"thumbprint": target.thumbprint})
    button.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(dialog.get_by_role("alert")).to_contain_text(target.thumbprint)
    expect(page.get_by_role("dialog")).to_be_visible()


def test_export_downloads_the_server_certificates(checked: Studio, tmp_path) -> None:
    page = checked.open()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export server certificates").click()
    download = download_info.value
    assert download.suggested_filename == "ClusterCertificatesCollection.pfx"
    path = tmp_path / "export.pfx"
    download.save_as(str(path))
    bundle = pkcs12.load_pkcs12(path.read_bytes(), None)
    assert bundle.key is None, "the export must hold no private key"
    exported = {c.certificate.fingerprint(hashes.SHA1()).hex().upper() for c in bundle.additional_certs}
    if bundle.cert is not None:
        exported.add(bundle.cert.certificate.fingerprint(hashes.SHA1()).hex().upper())
    assert _get(checked, metadataOnly="true")["LoadedServerCert"] in exported
    expect(page.locator("section.server-cert .notice")).to_contain_text("exported")


def _upload(studio: Studio, name: str, pem: bytes, clearance: str = "ValidUser") -> None:
    response = studio.server.admin().put(f"{studio.url}/admin/certificates", json={
        "Name": name, "Certificate": base64.b64encode(pem).decode(), "SecurityClearance": clearance,
        "Permissions": {},
    })
    assert response.status_code == 201, response.text


def test_filters_sort_and_paging(checked: Studio) -> None:
    for i in range(28):
        checked.generate(f"fleet-{i:02d}")
    checked.generate("fleet-ops", "Operator")
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    checked.generate("fleet-soon", NotAfter=soon)
    expired_pem, _ = self_signed("fleet-old", days=-3, not_before_days=-400)
    _upload(checked, "fleet-old", expired_pem)

    page = checked.open()
    text = page.get_by_label("Name or thumbprint")
    text.fill("fleet-")
    expect(page.locator(".summary")).to_have_text("Showing 1–25 of 31")
    page.get_by_role("button", name="Next page").click()
    expect(page.locator(".summary")).to_have_text("Showing 26–31 of 31")
    page.get_by_role("button", name="Previous page").click()
    expect(page.locator(".summary")).to_have_text("Showing 1–25 of 31")

    page.get_by_label("Per page").select_option("50")
    expect(page.locator("table.cert-table tbody tr")).to_have_count(31)

    page.get_by_label("Clearance", exact=True).select_option("Operator")
    expect(page.locator("table.cert-table tbody tr")).to_have_count(1)
    expect(row(page, "fleet-ops")).to_have_count(1)
    page.get_by_label("Clearance", exact=True).select_option("")

    page.get_by_label("State").select_option("expiring")
    expect(page.locator("table.cert-table tbody tr")).to_have_count(1)
    expect(row(page, "fleet-soon").locator(".badge.warning")).to_have_text(re.compile(r"expires in (9|10) days"))
    page.get_by_label("State").select_option("expired")
    expect(page.locator("table.cert-table tbody tr")).to_have_count(1)
    expect(row(page, "fleet-old").locator(".badge.danger")).to_have_text("expired")
    checked.shot(page, "studio-filter-expired")
    page.get_by_label("State").select_option("")

    page.get_by_label("Sort by").select_option("expiry")
    expect(page.locator("table.cert-table tbody tr").first.locator(".cert-name")).to_have_text("fleet-old")
    expect(page.locator("table.cert-table tbody tr").nth(1).locator(".cert-name")).to_have_text("fleet-soon")

    # A thumbprint filters too.
    soon_row = _get(checked, name="fleet-soon", metadataOnly="true")["Results"][0]
    text.fill(soon_row["Thumbprint"][:12].lower())
    expect(page.locator("table.cert-table tbody tr")).to_have_count(1)


def test_purge_expired_removes_only_expired_certificates(checked: Studio) -> None:
    expired_pem, expired_thumbprint = self_signed("stale-partner", days=-2, not_before_days=-400)
    _upload(checked, "stale-partner", expired_pem)
    keeper = checked.generate("keeper")
    page = checked.open()
    page.get_by_label("State").select_option("expired")
    expect(row(page, "stale-partner")).to_have_count(1)
    page.get_by_role("button", name="Purge expired").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Purge expired").click()
    expect(page.locator(".notice.success").first).to_contain_text("stale-partner")
    expect(row(page, "stale-partner")).to_have_count(0)
    page.get_by_label("State").select_option("")
    page.get_by_label("Name or thumbprint").fill("keeper")
    expect(row(page, "keeper")).to_have_count(1)
    assert checked.server.admin().get(f"{checked.url}/admin/certificates",
                                      params={"thumbprint": expired_thumbprint}).status_code == 404
    assert checked.server.admin().get(f"{checked.url}/admin/certificates",
                                      params={"thumbprint": keeper.thumbprint}).status_code == 200


def test_a_hostile_certificate_name_is_shown_as_text_everywhere(checked: Studio) -> None:
    hostile_certificate = checked.generate(XSS_NAME, "ValidUser")
    page = checked.open()
    page.get_by_label("Name or thumbprint").fill("onerror")
    expect(page.locator("table.cert-table tbody tr")).to_have_count(1)
    hostile = row(page, XSS_NAME)
    expect(hostile.locator(".cert-name")).to_have_text(XSS_NAME)
    assert page.locator("img[src='x']").count() == 0
    checked.shot(page, "studio-hostile-name")

    hostile.get_by_role("button", name=f"Edit {XSS_NAME}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading")).to_contain_text(XSS_NAME)
    expect(dialog.get_by_label("Name", exact=True)).to_have_value(XSS_NAME)
    page.keyboard.press("Escape")
    hostile.get_by_role("button", name=f"Delete {XSS_NAME}").click()
    expect(page.get_by_role("dialog").locator(".cert-name")).to_have_text(XSS_NAME)
    page.keyboard.press("Escape")
    assert page.locator("img[src='x']").count() == 0
    page.wait_for_timeout(300)
    assert page.title() != "pwned"
    assert "Roost Studio" in page.title()

    # Signed in with that certificate: the header and the refusal panel show the name as text too.
    theirs = checked.open(hostile_certificate.pem_path)
    expect(theirs.locator("#identity .me-name")).to_have_text(XSS_NAME)
    expect(theirs.locator("section.refusal strong")).to_have_text(XSS_NAME)
    assert theirs.locator("img[src='x']").count() == 0
    theirs.wait_for_timeout(300)
    assert "Roost Studio" in theirs.title()
