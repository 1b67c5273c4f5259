"""Issue 17, the Studio's first hour: what a RavenDB administrator met, in Chromium at 1280x800 and 800x900.

One server for the module; the tests that change the server certificate run last.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from studio_browser import LAPTOP, NARROW, Studio, checked_fixture, row, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser

DATABASES = ["shop", "orders", "hr", "billing", "archive"]


def _databases(studio: Studio, *names: str) -> None:
    for name in names:
        response = studio.server.admin().put(f"{studio.url}/admin/databases", params={"name": name},
                                             json={"DatabaseName": name})
        assert response.status_code in (201, 409) or "already exists" in response.text, response.text


def _fleet(studio: Studio) -> None:
    """Enough certificates to fill a page: one with every database, one with a long name, admins and users."""
    if getattr(studio, "_fleet_made", False):
        return
    _databases(studio, *DATABASES)
    studio.generate("wide-permissions-user", "ValidUser", {db: "ReadWrite" for db in DATABASES})
    studio.generate("a-certificate-with-a-rather-long-name-for-a-dashboard", "ValidUser", {"shop": "Read"})
    studio.generate("ops-team", "Operator")
    for i in range(5):
        studio.generate(f"service-{i}", "ValidUser", {"orders": "Read", "shop": "ReadWrite"})
    studio._fleet_made = True  # type: ignore[attr-defined]


def _box(locator: Any) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not rendered"
    return box


@pytest.mark.parametrize("viewport", [LAPTOP, NARROW], ids=["1280x800", "800x900"])
def test_edit_and_delete_are_visible_without_sideways_scrolling(checked: Studio, viewport: dict[str, int]) -> None:
    _fleet(checked)
    page = checked.open(viewport=viewport)
    expect(row(page, "wide-permissions-user")).to_have_count(1)
    width = viewport["width"]
    # Nothing scrolls sideways: not the page, not the table.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.locator(".table-wrap").evaluate("(el) => el.scrollWidth - el.clientWidth") <= 1
    for tr in page.locator("table.cert-table tbody tr").all():
        for name in ("Edit", "Delete"):
            button = tr.get_by_role("button", name=name)
            expect(button).to_be_visible()
            box = _box(button)
            assert 0 <= box["x"] and box["x"] + box["width"] <= width, (name, box)

    # Permissions stay on one line: the first ones as chips, the rest as "+N".
    wide = row(page, "wide-permissions-user")
    chips = wide.locator(".perm-list")
    expect(chips.locator(".more")).to_have_text("+3")
    expect(chips.locator(".more")).to_have_attribute("title", "hr · Read/Write, orders · Read/Write, shop · Read/Write")
    one_line = _box(wide.locator(".perm-list li").first)["height"]
    assert _box(chips)["height"] <= one_line + 2
    assert _box(wide)["height"] <= 80, "a row with five permissions is as short as the others"

    # The header stays on one line (two at 800 px), and the sidebar gives its width to the table when narrow.
    line = _box(page.locator(".brand"))["height"]
    assert _box(page.locator(".topbar"))["height"] <= (2 if width < 1000 else 1) * (line + 8) + 24
    nav = _box(page.locator("#nav"))
    if width < 1000:
        assert nav["height"] <= 64 and nav["width"] >= width - 2, "the sidebar collapses into a bar"
    else:
        assert nav["width"] <= 220
    checked.shot(page, f"studio-layout-{viewport['width']}")


def test_the_generate_name_field_says_its_limit_before_submitting(checked: Studio) -> None:
    page = checked.open(viewport=LAPTOP)
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    name = dialog.get_by_label("Name", exact=True)
    expect(name).to_have_attribute("maxlength", "64")
    expect(dialog).to_contain_text("At most 64 characters")
    name.fill("n" * 70)
    assert len(name.input_value()) == 64, "the field keeps to the limit"
    expect(dialog.locator(".name-count")).to_have_text("64 of 64 characters: the limit")
    checked.shot(page, "studio-generate-name-limit")
    # At the limit it still generates (the refusal twin is the limit itself: nothing longer can be typed).
    with page.expect_download():
        dialog.get_by_role("button", name="Generate", exact=True).click()
    expect(dialog.get_by_role("status")).to_contain_text("was generated")


def test_the_qr_code_follows_the_name_and_the_key_has_a_copy_button(checked: Studio) -> None:
    context = checked.context(viewport=LAPTOP, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    checked.watch(page)
    page.goto(f"{checked.url}/studio/#/certificates")
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill("first-name")
    with page.expect_request(lambda r: r.url.endswith("/admin/certificates/2fa/qr")) as first:
        dialog.get_by_label("Require two-factor authentication").check()
    assert '"first-name"' in (first.value.post_data or "")
    secret = dialog.locator("code.secret").inner_text()
    with page.expect_request(lambda r: r.url.endswith("/admin/certificates/2fa/qr")
                             and '"bob-phone"' in (r.post_data or "")):
        dialog.get_by_label("Name", exact=True).fill("bob-phone")
    expect(dialog.locator("img.qr")).to_have_attribute("alt", "QR code of the authentication key for bob-phone")
    expect(dialog.locator("code.secret")).to_have_text(secret)  # the same key: only its label changed
    dialog.get_by_role("button", name="Copy authentication key").click()
    expect(dialog.locator(".secret-copy .copy-status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret


def test_dialog_errors_clear_once_the_input_is_fixed(checked: Studio, tmp_path) -> None:
    from certificates_factory import self_signed, write_pem

    page = checked.open(viewport=LAPTOP)
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill("months-check")
    months = dialog.get_by_label("Expiration period (months)")
    months.fill("0")
    dialog.get_by_role("button", name="Generate", exact=True).click()
    alert = dialog.locator(".error-box")
    expect(alert).to_contain_text("The expiration period is a whole number of months")
    months.fill("12")
    expect(alert).to_be_hidden()
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Upload client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Upload", exact=True).click()
    alert = dialog.locator(".error-box")
    expect(alert).to_contain_text("Choose the certificate file")
    pem, _ = self_signed("fixed-later")
    dialog.get_by_label("Certificate file (.pfx, .crt, .pem or .der)").set_input_files(str(write_pem(tmp_path / "c.pem", pem)))
    expect(alert).to_be_hidden()


def test_a_browser_whose_certificate_was_deleted_is_told_so_and_not_offered_a_code(checked: Studio) -> None:
    bob = checked.generate("bob-reader", "Operator")
    page = checked.open(bob.pem_path, viewport=LAPTOP)
    expect(page.locator("#identity .me-name")).to_have_text("bob-reader")
    response = checked.server.admin().delete(f"{checked.url}/admin/certificates", params={"thumbprint": bob.thumbprint})
    assert response.status_code == 204, response.text
    page.get_by_label("Name or thumbprint").fill("anything")  # the next request is refused
    refusal = page.locator("section.refusal")
    expect(refusal.get_by_role("heading")).to_have_text("This certificate is not registered on this server")
    expect(refusal).to_contain_text("bob-reader")
    expect(refusal).to_contain_text("Ask an administrator for a new certificate")
    expect(page.locator("#identity")).not_to_contain_text("bob-reader")
    expect(page.get_by_role("button", name="Enter a two-factor code")).to_have_count(0)
    page.reload()
    expect(page.locator("section.refusal").get_by_role("heading")).to_have_text(
        "This certificate is not registered on this server")
    expect(page.get_by_role("button", name="Enter a two-factor code")).to_have_count(0)
    checked.shot(page, "studio-refusal-unknown")


def test_a_user_lands_on_its_databases_with_their_access_and_no_certificates_menu(checked: Studio) -> None:
    _databases(checked, "shop", "orders")
    user = checked.generate("shop-reader", "ValidUser", {"shop": "Read", "orders": "ReadWrite"})
    page = checked.context(user.pem_path, viewport=LAPTOP).new_page()
    checked.watch(page)
    page.goto(f"{checked.url}/studio/")
    expect(page.get_by_role("heading", name="Databases", level=1)).to_be_visible()
    expect(page.locator("#nav").get_by_role("link", name="Certificates")).to_have_count(0)
    expect(page.locator(".db-list")).to_contain_text("shop · Read")
    expect(page.locator(".db-list")).to_contain_text("orders · Read/Write")
    checked.shot(page, "studio-user-databases")

    # Typed by hand, the Certificates view says what clearance it needs, not to reinstall anything.
    page.goto(f"{checked.url}/studio/#/certificates")
    refusal = page.locator("section.refusal")
    expect(refusal).to_contain_text("Operator or Cluster Admin")
    expect(refusal).not_to_contain_text("private")
    expect(refusal).not_to_contain_text("Install")
    expect(page.locator("#identity .me-name")).to_have_text("shop-reader")

    # The twin: an Operator lands on Certificates and has it in the menu.
    operator = checked.generate("ops-landing", "Operator")
    theirs = checked.context(operator.pem_path, viewport=LAPTOP).new_page()
    theirs.goto(f"{checked.url}/studio/")
    expect(theirs.get_by_role("heading", name="Certificates", level=1)).to_be_visible()
    expect(theirs.locator("#nav").get_by_role("link", name="Certificates")).to_be_visible()


def test_the_upload_preview_warns_about_a_ca_only_file_and_says_the_fix(checked: Studio, tmp_path) -> None:
    from certificates_factory import self_signed, write_pem

    ca_pem, ca_thumbprint = self_signed("made-by-openssl-req", ca=True)
    page = checked.open(viewport=LAPTOP)
    page.get_by_role("button", name="Upload client certificate").click()
    dialog = page.get_by_role("dialog")
    chooser = dialog.get_by_label("Certificate file (.pfx, .crt, .pem or .der)")
    chooser.set_input_files(str(write_pem(tmp_path / "ca.pem", ca_pem)))
    warning = dialog.locator(".preview .notice.warning")
    expect(warning).to_contain_text("made-by-openssl-req")
    expect(warning).to_contain_text("CA:TRUE")
    expect(warning).to_contain_text("basicConstraints=critical,CA:FALSE")
    expect(dialog.locator(".preview")).to_contain_text(ca_thumbprint)
    checked.shot(page, "studio-upload-ca-warning")
    dialog.get_by_role("button", name="Upload", exact=True).click()
    alert = dialog.locator(".error-box")
    expect(alert).to_contain_text("made-by-openssl-req")  # the refusal names the certificate and the fix too
    expect(alert).to_contain_text("CA:FALSE")

    # The twin: a client certificate (CA:FALSE) gets no warning.
    client_pem, _ = self_signed("a-real-client")
    chooser.set_input_files(str(write_pem(tmp_path / "client.pem", client_pem)))
    expect(dialog.locator(".preview")).to_contain_text("holds one certificate")
    expect(dialog.locator(".preview .notice.warning")).to_have_count(0)


def test_the_two_factor_screen_speaks_to_people_and_a_lockout_counts_down(checked: Studio) -> None:
    import re

    import pyotp

    secret = pyotp.random_base32()
    certificate = checked.generate("mfa-person", "Operator", TwoFactorAuthenticationKey=secret)
    page = checked.context(certificate.pem_path, viewport=LAPTOP).new_page()
    checked.watch(page)
    page.goto(f"{checked.url}/studio/")
    screen = page.locator("section.clearance-screen")
    expect(screen).to_contain_text("Enter the code from your authenticator app")
    expect(screen).to_contain_text("mfa-person")
    expect(screen).not_to_contain_text("POST")
    expect(screen).not_to_contain_text("/authentication/2fa")

    wrong = "123456" if pyotp.TOTP(secret).now() != "123456" else "654321"
    code = page.get_by_label("Code from your authenticator app")
    verify = page.get_by_role("button", name="Verify")
    alert = screen.locator(".error-box")
    code.fill(wrong)
    verify.click()
    expect(alert).to_contain_text("That code was not accepted")
    expect(alert).to_contain_text("4 tries left before sign-in is locked")  # the server's TriesLeft
    expect(verify).to_be_enabled()  # the twin: a wrong code alone does not lock
    for _ in range(6):
        if "Too many wrong codes" in alert.inner_text():
            break
        code.fill(wrong)
        verify.click()
        expect(verify).to_have_text("Verify")
    expect(alert).to_have_text(re.compile(r"^Too many wrong codes: two-factor sign-in for this certificate is locked\. "
                                          r"Try again in \d:\d\d\.$"))
    expect(screen.get_by_role("alert")).to_have_count(1)
    expect(verify).to_be_disabled()
    first = alert.inner_text()
    expect(alert).not_to_have_text(first, timeout=3_000)  # it counts down
    checked.shot(page, "studio-two-factor-locked")


def test_lowering_ones_own_clearance_warns_and_asks_and_cluster_node_is_not_offered(checked: Studio) -> None:
    me = checked.generate("self-lowering-admin", "ClusterAdmin")
    checked.generate("someone-else", "ValidUser")
    page = checked.open(me.pem_path, viewport=LAPTOP)
    page.get_by_label("Name or thumbprint").fill("some")
    row(page, "someone-else").get_by_role("button", name="Edit someone-else").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("option[value=Operator]")).to_have_count(1)  # the form is drawn
    expect(dialog.locator("option[value=ClusterNode]")).to_have_count(0)
    dialog.get_by_label("Security clearance").select_option("Operator")
    expect(dialog.locator(".self-warning")).to_be_hidden()  # the twin: someone else's clearance, no warning
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Upload client certificate").click()
    expect(page.get_by_role("dialog").locator("option[value=Operator]")).to_have_count(1)
    expect(page.get_by_role("dialog").locator("option[value=ClusterNode]")).to_have_count(0)
    page.keyboard.press("Escape")

    page.get_by_label("Name or thumbprint").fill("self-lowering")
    row(page, "self-lowering-admin").get_by_role("button", name="Edit self-lowering-admin").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Security clearance").select_option("Operator")
    warning = dialog.locator(".self-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("You are signed in with this certificate")
    checked.shot(page, "studio-edit-own-clearance")
    dialog.get_by_role("button", name="Save").click()
    confirm = page.get_by_role("dialog", name="Lower your own clearance?")
    expect(confirm).to_contain_text("Operator")
    confirm.get_by_role("button", name="Cancel").click()
    saved = checked.server.admin().get(f"{checked.url}/admin/certificates",
                                       params={"thumbprint": me.thumbprint, "metadataOnly": "true"}).json()
    assert saved["Results"][0]["SecurityClearance"] == "ClusterAdmin", "Cancel changes nothing"

    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    page.get_by_role("dialog", name="Lower your own clearance?").get_by_role("button", name="Lower my clearance").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator("#identity .badge.clearance")).to_have_text("Operator")


def test_the_database_picker_offers_only_databases_not_yet_chosen(checked: Studio) -> None:
    _databases(checked, *DATABASES)
    page = checked.open(viewport=LAPTOP)
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    add = dialog.get_by_role("button", name="Add database permission")
    add.click()
    add.click()
    pickers = dialog.get_by_label("Database", exact=True)
    first, second = pickers.nth(0).input_value(), pickers.nth(1).input_value()
    assert first != second
    expect(pickers.nth(1).locator(f"option[value='{first}']")).to_have_count(0)
    expect(pickers.nth(0).locator(f"option[value='{second}']")).to_have_count(0)
    # Removing a row offers its database again.
    dialog.get_by_role("button", name=f"Remove permission for {second}").click()
    expect(pickers.nth(0).locator(f"option[value='{second}']")).to_have_count(1)


def test_purge_asks_only_when_something_has_expired(checked: Studio) -> None:
    import base64

    from certificates_factory import self_signed

    page = checked.open(viewport=LAPTOP)
    page.get_by_role("button", name="Purge expired").click()
    expect(page.locator(".notice.success").first).to_have_text("Nothing has expired: there is nothing to purge.")
    expect(page.get_by_role("dialog")).to_have_count(0)

    pem, _ = self_signed("long-gone-partner", days=-2, not_before_days=-400)
    response = checked.server.admin().put(f"{checked.url}/admin/certificates", json={
        "Name": "long-gone-partner", "Certificate": base64.b64encode(pem).decode(), "SecurityClearance": "ValidUser",
        "Permissions": {}})
    assert response.status_code == 201, response.text
    page.get_by_role("button", name="Purge expired").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete the expired certificate?")
    expect(dialog.locator(".purge-list")).to_contain_text("long-gone-partner")
    dialog.get_by_role("button", name="Purge expired").click()
    expect(page.locator(".notice.success").first).to_contain_text("Purged 1 expired certificate: long-gone-partner")


# The server certificate changes from here on: these tests run last.

def _loaded(studio: Studio) -> dict[str, Any]:
    response = studio.server.admin().get(f"{studio.url}/admin/certificates", params={"metadataOnly": "true"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_renew_now_asks_first_then_paging_and_the_old_server_row_are_right(checked: Studio) -> None:
    _fleet(checked)
    before = _loaded(checked)["LoadedServerCert"]
    page = checked.open(viewport=LAPTOP)
    panel = page.locator("section.server-cert")
    panel.get_by_role("button", name="Renew now").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("new connections")
    expect(dialog).to_contain_text("Old Server Certificate - can delete")
    expect(dialog).to_contain_text(before)
    checked.shot(page, "studio-server-renew-confirm")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert _loaded(checked)["LoadedServerCert"] == before, "Cancel renews nothing"

    panel.get_by_role("button", name="Renew now").click()
    page.get_by_role("dialog").get_by_role("button", name="Renew now").click()
    expect(page.locator(".notice.success").first).to_contain_text("The server certificate was renewed")
    listing = _loaded(checked)
    assert listing["LoadedServerCert"] != before

    # The renewed certificate is registered too, but the server lists its own entry once and never counts it
    # (the Studio shows it in its own panel): the total is what the table shows.
    rows = page.locator("table.cert-table tbody tr")
    expect(row(page, "Old Server Certificate - can delete")).to_have_count(1)  # the list after the renewal
    shown = rows.count()
    assert listing["TotalResults"] == shown
    expect(page.locator(".summary")).to_have_text(f"Showing 1–{shown} of {shown}")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()

    old = row(page, "Old Server Certificate - can delete")
    expect(old.get_by_role("button", name="Edit Old Server Certificate - can delete")).to_be_disabled()
    expect(old).to_contain_text("A former server certificate")
    expect(old.get_by_role("button", name="Delete Old Server Certificate - can delete")).to_be_enabled()


def test_renew_now_is_disabled_with_a_reason_for_a_certificate_roost_did_not_issue(checked: Studio) -> None:
    import base64

    from certificates_factory import server_pfx

    certs = checked.server.certs_dir
    pfx, thumbprint = server_pfx((certs / "ca.crt").read_bytes(), (certs / "ca.key").read_bytes(), "s3cret")
    response = checked.server.admin().post(f"{checked.url}/admin/certificates/replace-cluster-cert",
                                           json={"Certificate": base64.b64encode(pfx).decode(), "Password": "s3cret"})
    assert response.status_code == 201, response.text
    page = checked.open(viewport=LAPTOP)
    panel = page.locator("section.server-cert")
    expect(panel).to_contain_text(thumbprint)
    # The server's own entry says Generated: false, so Renew is disabled up front, with the reason.
    renew = page.locator("section.server-cert").get_by_role("button", name="Renew now")
    expect(renew).to_be_disabled()
    expect(page.locator("section.server-cert")).to_contain_text("Roost did not issue this server certificate")
    page.reload()
    expect(page.locator("section.server-cert").get_by_role("button", name="Renew now")).to_be_disabled()
    assert _loaded(checked)["LoadedServerCert"] == thumbprint
