"""What the Studio offers depends on who is connected: Operators, Users and a certificate about to expire."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect
from studio_browser import Studio, checked_fixture, row, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def test_an_operator_cannot_touch_cluster_admin_certificates(checked: Studio) -> None:
    operator = checked.generate("ops-lead", "Operator")
    checked.generate("root-admin", "ClusterAdmin")
    checked.generate("app-user", "ValidUser")
    page = checked.open(operator.pem_path)
    expect(page.locator("#identity")).to_contain_text("Operator")

    admin_row = row(page, "root-admin")
    expect(admin_row.get_by_role("button", name="Edit root-admin")).to_be_disabled()
    expect(admin_row.get_by_role("button", name="Delete root-admin")).to_be_disabled()
    expect(admin_row).to_contain_text("Only a Cluster Admin can change a Cluster Admin certificate.")

    panel = page.locator("section.server-cert")
    expect(panel.get_by_role("button", name="Renew now")).to_be_disabled()
    expect(panel.get_by_role("button", name="Replace…")).to_be_disabled()
    expect(panel).to_contain_text("Only a Cluster Admin can do this; you are an Operator.")
    expect(panel.get_by_role("button", name="Export server certificates")).to_be_enabled()
    checked.shot(page, "studio-operator")

    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("option[value=ClusterAdmin]")).to_be_disabled()
    expect(dialog).to_contain_text("Only a Cluster Admin can give Cluster Admin or Cluster Node clearance.")
    page.keyboard.press("Escape")

    # What an Operator may do, it can: edit a User certificate.
    row(page, "app-user").get_by_role("button", name="Edit app-user").click()
    page.get_by_role("dialog").get_by_label("Name", exact=True).fill("app-user-2")
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(row(page, "app-user-2")).to_have_count(1)


def test_the_server_refusal_reaches_the_operator_as_a_readable_message(checked: Studio) -> None:
    operator = checked.generate("ops-two", "Operator")
    target = checked.generate("root-two", "ClusterAdmin")
    page = checked.open(operator.pem_path)
    expect(row(page, "root-two")).to_have_count(1)
    # The button is disabled; a stale page (or a hand-made request) still meets the server's own rule.
    message = page.evaluate(
        """async (thumbprint) => {
            const r = await fetch(`/admin/certificates?thumbprint=${thumbprint}`,
                                  {method: "DELETE", credentials: "same-origin"});
            return [r.status, (await r.json()).Message];
        }""",
        target.thumbprint,
    )
    assert message[0] == 403
    assert "root-two" in message[1]


def test_a_user_cannot_open_the_certificates_view_and_sees_why(checked: Studio) -> None:
    checked.server.admin().put(f"{checked.url}/admin/databases", params={"name": "orders"},
                               json={"DatabaseName": "orders"})
    user = checked.generate("reader", "ValidUser", {"orders": "Read"})
    page = checked.open(user.pem_path)
    refusal = page.locator("section.refusal")
    expect(refusal.get_by_role("heading")).to_have_text("You cannot open the Certificates view")
    expect(refusal).to_contain_text("reader")
    expect(refusal).to_contain_text("User clearance")
    expect(refusal).to_contain_text("Operator or Cluster Admin")
    expect(page.get_by_role("button", name="Generate client certificate")).to_have_count(0)
    checked.shot(page, "studio-user-refused")

    refusal.get_by_role("link", name="Go to your databases").click()
    expect(page.get_by_role("heading", name="Databases", level=1)).to_be_visible()
    expect(page.locator(".db-list")).to_contain_text("orders")
    expect(page.get_by_role("button", name="Create database")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("Creating and deleting databases: This needs Operator")


def test_the_header_warns_when_your_own_certificate_expires_within_30_days(checked: Studio) -> None:
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=12)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    admin = checked.generate("expiring-admin", "ClusterAdmin", NotAfter=soon)
    page = checked.open(admin.pem_path)
    warning = page.locator("#expiry-warning")
    expect(warning).to_be_visible()
    expect(warning).to_have_text(re.compile(r"Your certificate expires in 1[12] days"))
    checked.shot(page, "studio-expiry-warning")

    calm = checked.open()
    expect(calm.locator("#expiry-warning")).to_be_hidden()
