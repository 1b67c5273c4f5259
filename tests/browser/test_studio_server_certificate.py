"""The server certificate panel: Renew now and Replace, by a Cluster Admin, without a restart."""

from __future__ import annotations

import pytest
from certificates_factory import server_pfx
from playwright.sync_api import expect
from studio_browser import Studio, checked_fixture, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def _loaded(studio: Studio) -> str:
    response = studio.server.admin().get(f"{studio.url}/admin/certificates", params={"metadataOnly": "true"})
    assert response.status_code == 200, response.text
    return str(response.json()["LoadedServerCert"])


def test_renew_now_installs_a_new_server_certificate(checked: Studio) -> None:
    before = _loaded(checked)
    page = checked.open()
    panel = page.locator("section.server-cert")
    expect(panel).to_contain_text(before)
    panel.get_by_role("button", name="Renew now").click()
    page.get_by_role("dialog").get_by_role("button", name="Renew now").click()  # it asks first
    notice = page.locator(".notice.success").first
    expect(notice).to_contain_text("The server certificate was renewed")
    after = _loaded(checked)
    assert after != before
    expect(notice).to_contain_text(after)
    expect(page.locator("section.server-cert")).to_contain_text(after)
    checked.shot(page, "studio-server-renewed")


def test_replace_installs_an_uploaded_pfx(checked: Studio, tmp_path) -> None:
    certs = checked.server.certs_dir
    pfx, thumbprint = server_pfx((certs / "ca.crt").read_bytes(), (certs / "ca.key").read_bytes(), "s3cret")
    path = tmp_path / "replacement.pfx"
    path.write_bytes(pfx)
    page = checked.open()
    page.locator("section.server-cert").get_by_role("button", name="Replace…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Server certificate (.pfx)").set_input_files(str(path))
    dialog.get_by_label("Passphrase of the .pfx (if any)").fill("wrong")
    dialog.get_by_role("button", name="Replace", exact=True).click()
    expect(dialog.get_by_role("alert")).to_be_visible()
    assert _loaded(checked) != thumbprint

    dialog.get_by_label("Passphrase of the .pfx (if any)").fill("s3cret")
    checked.shot(page, "studio-server-replace")
    dialog.get_by_role("button", name="Replace", exact=True).click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator(".notice.success").first).to_contain_text(thumbprint)
    assert _loaded(checked) == thumbprint
    # The browser keeps working against the new certificate (new connections verify it against the CA).
    fresh = checked.open()
    expect(fresh.locator("section.server-cert")).to_contain_text(thumbprint)
