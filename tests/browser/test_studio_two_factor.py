"""Two-factor authentication in the Studio: enrolment in the Generate dialog, the clearance screen on 428."""

from __future__ import annotations

import re

import pyotp
import pytest
from playwright.sync_api import expect
from studio_browser import Studio, checked_fixture, downloaded_certificate, row, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def _generate_with_two_factor(studio: Studio, name: str, tmp_path, *, shot: bool = False):  # type: ignore[no-untyped-def]
    page = studio.open()
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill(name)
    dialog.get_by_label("Security clearance").select_option("Operator")
    dialog.get_by_label("Require two-factor authentication").check()
    secret_box = dialog.locator("code.secret")
    expect(secret_box).to_have_text(re.compile(r"^[A-Z2-7]{16,}$"))
    secret = secret_box.inner_text()
    qr = dialog.locator("img.qr")
    expect(qr).to_be_visible()
    # The QR code is an SVG from the server: wait until the browser has decoded it.
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=qr.element_handle())
    expect(dialog).to_contain_text("Shown once")
    if shot:
        studio.shot(page, "studio-generate-2fa")
    with page.expect_download() as download_info:
        dialog.get_by_role("button", name="Generate", exact=True).click()
    expect(dialog.locator("code.secret")).to_have_text(secret)
    certificate = downloaded_certificate(download_info.value, name, tmp_path)
    page.context.close()
    return certificate, secret


def _clearance_page(studio: Studio, pem):  # type: ignore[no-untyped-def]
    page = studio.context(pem).new_page()
    studio.watch(page)
    page.goto(f"{studio.url}/studio/")
    expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()
    return page


def test_generate_with_two_factor_then_clear_the_studio_with_a_code(checked: Studio, tmp_path) -> None:
    certificate, secret = _generate_with_two_factor(checked, "mfa-operator", tmp_path, shot=True)
    page = _clearance_page(checked, certificate.pem_path)
    code = page.get_by_label("Code from your authenticator app")
    expect(code).to_be_focused()
    expect(page.get_by_label("Session duration (minutes)")).to_be_visible()
    expect(page.get_by_label("Only this browser")).to_be_checked()
    expect(page.get_by_label("All clients of this certificate (applications, other browsers)")).not_to_be_checked()
    checked.shot(page, "studio-two-factor")

    totp = pyotp.TOTP(secret)
    wrong = "000000" if totp.now() != "000000" else "111111"
    code.fill(wrong)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("That code was not accepted")

    code.fill(totp.now())
    page.get_by_role("button", name="Verify").click()
    expect(page.locator("#identity .me-name")).to_have_text("mfa-operator")
    expect(page.get_by_role("heading", name="Certificates", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="End two-factor session")).to_be_visible()

    # "Only this browser": another browser with the same certificate is refused, and offered the code screen.
    other = checked.context(certificate.pem_path).new_page()
    checked.watch(other)
    other.goto(f"{checked.url}/studio/")
    expect(other.get_by_role("heading", name="Your two-factor session belongs to another browser")).to_be_visible()
    other.get_by_role("button", name="Enter a two-factor code").click()
    expect(other.get_by_label("Code from your authenticator app")).to_be_visible()

    page.get_by_role("button", name="End two-factor session").click()
    expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()


def test_repeated_wrong_codes_lock_and_the_screen_says_so(checked: Studio, tmp_path) -> None:
    certificate, secret = _generate_with_two_factor(checked, "mfa-locked", tmp_path)
    page = _clearance_page(checked, certificate.pem_path)
    current = pyotp.TOTP(secret).now()
    wrong = "123456" if current != "123456" else "654321"
    alert = page.get_by_role("alert")
    for _ in range(8):
        page.get_by_label("Code from your authenticator app").fill(wrong)
        page.get_by_role("button", name="Verify").click()
        expect(alert).to_be_visible()
        if "Too many wrong codes" in alert.inner_text():
            break
    expect(alert).to_contain_text("Too many wrong codes")
    expect(alert).to_contain_text("Try again in")
    checked.shot(page, "studio-two-factor-locked")


def test_edit_removes_the_two_factor_key(checked: Studio, tmp_path) -> None:
    certificate, _ = _generate_with_two_factor(checked, "mfa-removed", tmp_path)
    page = checked.open()
    page.get_by_label("Name or thumbprint").fill("mfa-removed")
    target = row(page, "mfa-removed")
    expect(target.locator(".badge.on")).to_have_text("on")
    target.get_by_role("button", name="Edit mfa-removed").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Remove the two-factor authentication key").check()
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(row(page, "mfa-removed").locator(".badge.off")).to_have_text("off")

    # Without a key, the certificate opens the Studio with no code.
    theirs = checked.open(certificate.pem_path)
    expect(theirs.locator("#identity .me-name")).to_have_text("mfa-removed")


def test_an_administrator_ends_a_session_lifts_a_lockout_and_adds_a_key(checked: Studio, tmp_path) -> None:
    from studio_browser import LAPTOP, row

    certificate, secret = _generate_with_two_factor(checked, "mfa-controlled", tmp_path)
    holder = checked.server.session(certificate.pem_path)
    login = f"{checked.url}/authentication/2fa"
    assert holder.post(login, params={"hasLimits": "false"}, json={"Token": pyotp.TOTP(secret).now()}).status_code == 202
    assert holder.get(f"{checked.url}/certificates/whoami").status_code == 200
    page = checked.open(viewport=LAPTOP)
    page.get_by_label("Name or thumbprint").fill("mfa-controlled")
    row(page, "mfa-controlled").get_by_role("button", name="Details of mfa-controlled").click()
    control = page.get_by_role("dialog").get_by_role("region", name="Two-factor authentication")
    expect(control).to_contain_text("every client of the certificate")
    control.get_by_role("button", name="End session").click()
    expect(control).to_contain_text("No session open")
    assert holder.get(f"{checked.url}/certificates/whoami").status_code == 428
    wrong = "123456" if pyotp.TOTP(secret).now() != "123456" else "654321"
    for _ in range(6):
        holder.post(login, params={"hasLimits": "false"}, json={"Token": wrong})
    page.get_by_role("dialog").get_by_role("button", name="Close", exact=True).click()
    row(page, "mfa-controlled").get_by_role("button", name="Details of mfa-controlled").click()
    expect(control).to_contain_text("Locked after too many wrong codes")
    checked.shot(page, "studio-two-factor-control")
    control.get_by_role("button", name="Lift lockout").click()
    expect(control).not_to_contain_text("Locked after")
    page.get_by_role("dialog").get_by_role("button", name="Close", exact=True).click()

    # A certificate without a key gets one through Edit (shown once, as in Generate).
    plain = checked.generate("mfa-added-later")
    page.get_by_label("Name or thumbprint").fill("mfa-added-later")
    row(page, "mfa-added-later").get_by_role("button", name="Edit mfa-added-later").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Require two-factor authentication (a new key)").check()
    key = dialog.locator("code.secret")
    expect(key).to_have_text(re.compile(r"^[A-Z2-7]{32}$"))
    added = key.inner_text()
    dialog.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    client = checked.server.session(plain.pem_path)
    assert client.get(f"{checked.url}/certificates/whoami").status_code == 428  # now it asks for a code
    assert client.post(login, params={"hasLimits": "false"},
                       json={"Token": pyotp.TOTP(added).now()}).status_code == 202
