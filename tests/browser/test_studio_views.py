"""Issue 17's new views in the Studio: what a certificate can do and its history (from the audit log), and who
has access to a database."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from studio_browser import LAPTOP, Studio, checked_fixture, row, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def _edit(studio: Studio, thumbprint: str, name: str, clearance: str, permissions: dict[str, str]) -> None:
    response = studio.server.admin().post(f"{studio.url}/admin/certificates/edit", json={
        "Thumbprint": thumbprint, "Name": name, "SecurityClearance": clearance, "Permissions": permissions})
    assert response.status_code == 201, response.text


def test_a_certificates_details_say_what_it_can_do_and_its_history(checked: Studio) -> None:
    cert = checked.generate("with-history", permissions={"shop": "Read"})
    _edit(checked, cert.thumbprint, "with-history", "ValidUser", {"shop": "ReadWrite", "orders": "Read"})
    page = checked.open(viewport=LAPTOP)
    page.get_by_label("Name or thumbprint").fill("with-history")
    row(page, "with-history").get_by_role("button", name="Details of with-history").click()
    dialog = page.get_by_role("dialog")
    can = dialog.get_by_role("region", name="What it can do")
    expect(can).to_contain_text("Reads and writes shop.")
    expect(can).to_contain_text("Reads orders.")
    expect(can).to_contain_text("Not: other databases")
    history = dialog.get_by_role("region", name="History from the audit log")
    expect(history).to_contain_text("Generated")
    expect(history).to_contain_text("Permission changed: shop Read → Read/Write")
    expect(history).to_contain_text("Permission added: orders (Read)")
    expect(history).to_contain_text("admin.client")
    checked.shot(page, "studio-certificate-history")
    dialog.get_by_role("button", name="Close", exact=True).click()
    # The twin: an Operator's details speak of every database, and its history has no permission changes.
    operator = checked.generate("details-operator", "Operator")
    page.get_by_label("Name or thumbprint").fill("details-operator")
    row(page, "details-operator").get_by_role("button", name="Details of details-operator").click()
    expect(dialog.get_by_role("region", name="What it can do")).to_contain_text("Every database as Admin")
    expect(dialog.get_by_role("region", name="History from the audit log")).not_to_contain_text("Permission")
    assert operator.thumbprint


def test_the_databases_page_says_who_has_access(checked: Studio) -> None:
    admin = checked.server.admin()
    assert admin.put(f"{checked.url}/admin/databases", json={"DatabaseName": "audited-shop"}).status_code in (200, 201)
    checked.generate("shop-reader", permissions={"audited-shop": "Read"})
    checked.generate("not-a-shop-reader", permissions={"elsewhere": "Admin"})
    page = checked.open(route="databases", viewport=LAPTOP)
    page.get_by_label("Who has access to audited-shop").click()
    listed = page.locator(".db-row", has_text="audited-shop").locator(".access-list")
    expect(listed).to_contain_text("shop-reader · Read (permission)")
    expect(listed).to_contain_text("admin.client · Admin (by clearance: Cluster Admin)")
    expect(listed).not_to_contain_text("not-a-shop-reader")
    checked.shot(page, "studio-database-access")


def test_rotate_in_one_click_downloads_a_successor_and_both_work(checked: Studio, tmp_path) -> None:
    from studio_browser import downloaded_certificate

    cert = checked.generate("to-rotate", permissions={"rotated-db": "Read"})
    page = checked.open(viewport=LAPTOP)
    page.get_by_label("Name or thumbprint").fill("to-rotate")
    row(page, "to-rotate").get_by_role("button", name="Details of to-rotate").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("retired once it has not been used for 7 days")
    with page.expect_download() as download_info:
        dialog.get_by_role("button", name="Rotate: issue a successor").click()
    expect(dialog.get_by_role("status")).to_contain_text("A successor of “to-rotate” was issued")
    checked.shot(page, "studio-rotate")
    successor = downloaded_certificate(download_info.value, "to-rotate", tmp_path)
    assert successor.thumbprint != cert.thumbprint
    for pem in (successor.pem_path, cert.pem_path):
        me = checked.server.session(pem).get(f"{checked.url}/certificates/whoami").json()
        assert me["Name"] == "to-rotate" and me["Permissions"] == {"rotated-db": "Read"}
    dialog.get_by_role("button", name="Close", exact=True).click()
    expect(page.locator("table.cert-table tbody tr", has_text="to-rotate")).to_have_count(2)
