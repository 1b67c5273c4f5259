"""The Studio's "Replace immediately" in a cluster: RavenDB's choice between waiting for every node and swapping at
once (roost.cluster.replacement). In a module of its own: Playwright's sync API holds an event loop while a
module's Studio runs, and the PostgreSQL fixture needs none running when it drops its database."""

from __future__ import annotations

import pytest
from certificates_factory import server_pfx
from playwright.sync_api import expect
from studio_browser import Studio

pytestmark = pytest.mark.browser


def _loaded(studio: Studio) -> str:
    response = studio.server.admin().get(f"{studio.url}/admin/certificates", params={"metadataOnly": "true"})
    assert response.status_code == 200, response.text
    return str(response.json()["LoadedServerCert"])


def _replace_in_dialog(page: object, path: object, *, immediately: bool) -> None:
    page.locator("section.server-cert").get_by_role("button", name="Replace…").click()  # type: ignore[attr-defined]
    dialog = page.get_by_role("dialog")  # type: ignore[attr-defined]
    dialog.get_by_label("Server certificate (.pfx)").set_input_files(str(path))
    dialog.get_by_label("Passphrase of the .pfx (if any)").fill("s3cret")
    checkbox = dialog.get_by_label("Replace immediately (otherwise when every node has confirmed)")
    expect(checkbox).to_be_checked()  # the default, as in RavenDB's Studio
    if not immediately:
        checkbox.uncheck()
    dialog.get_by_role("button", name="Replace", exact=True).click()


@pytest.mark.postgres
def test_replace_without_replace_immediately_waits_for_every_node(tmp_path, tmp_path_factory, postgres_url) -> None:
    """In a cluster the checkbox means RavenDB's choice: unticked, the nodes wait until every node has confirmed;
    ticked, each swaps at once."""
    from studio_browser import require_chromium, studio_on

    from conftest import start_server

    require_chromium()
    ca_dir = tmp_path / "cluster-ca"
    cluster = [f"--storage_url={postgres_url}", f"--Security.Ca.Path={ca_dir}"]
    a = start_server(tmp_path / "a", *cluster)
    b = start_server(tmp_path / "b", *cluster)
    b.stop()  # still a member: it has to confirm before anyone swaps
    try:
        with studio_on(a, tmp_path_factory) as studio:
            before = _loaded(studio)
            pfx, thumbprint = server_pfx((ca_dir / "ca.crt").read_bytes(), (ca_dir / "ca.key").read_bytes(),
                                         "s3cret")
            path = tmp_path / "replacement.pfx"
            path.write_bytes(pfx)
            page = studio.open()
            _replace_in_dialog(page, path, immediately=False)
            expect(page.get_by_role("dialog")).to_have_count(0)
            notice = page.locator(".notice.success").first
            expect(notice).to_contain_text(f"The new server certificate {thumbprint} was sent to every node")
            expect(notice).to_contain_text("1 of 2 confirmed, 0 replaced")
            assert _loaded(studio) == before, "nobody swaps while B has not confirmed"
            status = a.admin().get(f"{a.url}/admin/certificates/replacement/status").json()
            assert status["ReplaceImmediately"] is False

            # Ticked: the node swaps before it answers.
            pfx, thumbprint = server_pfx((ca_dir / "ca.crt").read_bytes(), (ca_dir / "ca.key").read_bytes(),
                                         "s3cret")
            path.write_bytes(pfx)
            _replace_in_dialog(page, path, immediately=True)
            expect(page.locator(".notice.success").first).to_contain_text("1 of 2 confirmed, 1 replaced")
            assert _loaded(studio) == thumbprint
            studio.check()
    finally:
        a.stop()
