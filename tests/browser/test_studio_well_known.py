"""Issue 17, item 12: signed in with a well-known admin certificate (Security.WellKnownCertificates.Admin)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from studio_browser import LAPTOP, Studio, checked_fixture, studio_fixture  # noqa: F401

from conftest import start_server

pytestmark = pytest.mark.browser


def test_a_well_known_admin_sees_what_the_api_gives_and_no_false_expiry(checked: Studio) -> None:
    # A certificate from the server's CA, trusted by configuration only: generated, unregistered, then configured.
    admin = checked.generate("configured-admin", "ClusterAdmin")
    response = checked.server.admin().delete(f"{checked.url}/admin/certificates", params={"thumbprint": admin.thumbprint})
    assert response.status_code == 204, response.text
    original = checked.server
    original.stop()
    checked.server = start_server(original.data_dir, f"--Security.WellKnownCertificates.Admin={admin.thumbprint}")
    try:
        page = checked.open(admin.pem_path, viewport=LAPTOP)
        identity = page.locator("#identity")
        expect(identity.locator(".me-name")).to_have_text("Well Known Admin Certificate")
        expect(identity).to_contain_text("Cluster Admin")
        expect(identity).to_contain_text("Expires ")  # its own certificate's date, from the TLS handshake
        expect(identity).not_to_contain_text("No expiration date")
        panel = page.locator("section.well-known")
        expect(panel).to_contain_text(admin.thumbprint)
        expect(panel).to_contain_text("CN=configured-admin")  # the subject, known once it has connected
        expect(panel).to_contain_text("expires ")
        expect(panel).not_to_contain_text("reports only their thumbprints")
        checked.shot(page, "studio-well-known")

        # The twin: a registered certificate's header gives its expiry.
        registered = checked.open(viewport=LAPTOP)
        expect(registered.locator("#identity")).to_contain_text("Expires ")
        expect(registered.locator("section.well-known")).to_contain_text(admin.thumbprint)
    finally:
        checked.close_contexts()
        checked.server.stop()
