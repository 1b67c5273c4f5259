"""Issue 17: bulk actions on selected certificates in the Studio (grant, disable, delete), each through the
one-certificate API, refusals reported per certificate; and the "Not used for 90 days" filter."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from studio_browser import LAPTOP, Studio, checked_fixture, row, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def _definition(studio: Studio, thumbprint: str) -> dict:
    listed = studio.server.admin().get(f"{studio.url}/admin/certificates", params={"thumbprint": thumbprint})
    return listed.json()["Results"][0] if listed.status_code == 200 else {}


def test_grant_disable_and_delete_the_selected_certificates(checked: Studio) -> None:
    admin = checked.server.admin()
    assert admin.put(f"{checked.url}/admin/databases", json={"DatabaseName": "bulk-db"}).status_code in (200, 201)
    first = checked.generate("bulk-one", permissions={"elsewhere": "Read"})
    second = checked.generate("bulk-two")
    untouched = checked.generate("bulk-untouched")
    page = checked.open(viewport=LAPTOP)
    page.get_by_label("Name or thumbprint").fill("bulk-")
    expect(page.locator(".summary")).to_have_text("Showing 1–3 of 3")  # the filtered list is drawn
    bar = page.get_by_role("region", name="Selected certificates")
    expect(bar).to_be_hidden()
    page.get_by_label("Select bulk-one").check()
    page.get_by_label("Select bulk-two").check()
    expect(bar).to_contain_text("2 selected")
    checked.shot(page, "studio-bulk")

    bar.get_by_role("button", name="Grant database access…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Database").select_option("bulk-db")
    dialog.get_by_label("Access").select_option("ReadWrite")
    dialog.get_by_role("button", name="Grant", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Granted Read/Write on bulk-db to 2 certificates")
    assert _definition(checked, first.thumbprint)["Permissions"] == {"elsewhere": "Read", "bulk-db": "ReadWrite"}
    assert _definition(checked, second.thumbprint)["Permissions"] == {"bulk-db": "ReadWrite"}
    assert _definition(checked, untouched.thumbprint)["Permissions"] == {}  # not selected, not changed
    expect(row(page, "bulk-two")).to_contain_text("bulk-db")  # the list is drawn again (selection cleared)
    expect(bar).to_be_hidden()

    page.get_by_label("Select bulk-one").check()
    page.get_by_label("Select bulk-two").check()
    bar.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_contain_text("Disabled 2 certificates")
    assert _definition(checked, first.thumbprint)["Disabled"] is True
    assert _definition(checked, untouched.thumbprint)["Disabled"] is False
    expect(row(page, "bulk-two").locator(".badge.muted")).to_have_text("disabled")

    # Delete two, one of which is the administrator's own: that one is refused and said so; the other goes.
    page.get_by_label("Name or thumbprint").fill("")
    expect(page.locator(".summary")).not_to_have_text("Showing 1–3 of 3")
    page.get_by_label("Select bulk-two").check()
    page.get_by_label("Select admin.client").check()
    bar.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete certificates").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted 1 certificate: bulk-two")
    expect(page.get_by_role("alert")).to_contain_text("admin.client")
    assert _definition(checked, second.thumbprint) == {}
    assert checked.server.admin().get(f"{checked.url}/certificates/whoami").status_code == 200


def test_the_unused_filter_shows_only_certificates_not_used_for_90_days(checked: Studio) -> None:
    checked.generate("recently-made")
    page = checked.open(viewport=LAPTOP)
    page.get_by_label("State").select_option("unused")
    expect(page.locator(".summary")).to_contain_text("No certificates match")
    expect(row(page, "recently-made")).to_have_count(0)
