"""Issue 17: the hosted product's features in the Studio: the IP allowlist page and the backups page."""

from __future__ import annotations

from pathlib import Path

import pyrage
import pytest
from playwright.sync_api import expect
from studio_browser import LAPTOP, Studio, checked_fixture, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def test_the_allowlist_page_saves_and_will_not_lock_you_out_unasked(checked: Studio) -> None:
    page = checked.open(route="allowlist", viewport=LAPTOP)
    expect(page.get_by_role("heading", name="IP allowlist")).to_be_visible()
    expect(page.locator(".allowlist-current")).to_contain_text("Every address may connect")
    expect(page.locator(".allowlist-current")).to_contain_text("127.0.0.1")
    entries = page.get_by_label("Allowed addresses and ranges, one per line")
    entries.fill("203.0.113.7")
    page.get_by_role("button", name="Save allowlist").click()
    expect(page.get_by_role("alert")).to_contain_text("lock out your own address")
    expect(page.get_by_role("button", name="Save anyway (lock out my address)")).to_be_visible()
    assert checked.server.admin().get(f"{checked.url}/admin/security/allowed-ips").json()["AllowedIPs"] == []
    entries.fill("203.0.113.7\n127.0.0.1")
    expect(page.get_by_role("button", name="Save anyway (lock out my address)")).to_be_hidden()
    page.get_by_role("button", name="Save allowlist").click()
    expect(page.get_by_role("status")).to_contain_text("The allowlist was saved")
    expect(page.locator(".allowlist-current")).to_contain_text("2 entries")
    assert checked.server.admin().get(f"{checked.url}/admin/security/allowed-ips").json()["AllowedIPs"] == [
        "203.0.113.7", "127.0.0.1"]
    checked.shot(page, "studio-allowlist")
    entries.fill("")
    page.get_by_role("button", name="Save allowlist").click()
    expect(page.get_by_role("status")).to_contain_text("every address may connect")
    assert checked.server.admin().get(f"{checked.url}/admin/security/allowed-ips").json()["Everyone"] is True


def test_users_are_not_offered_the_hosted_pages(checked: Studio) -> None:
    reader = checked.generate("hosted-reader", permissions={"somewhere": "Read"})
    page = checked.open(reader.pem_path, route="databases", viewport=LAPTOP)
    expect(page.locator("#nav").get_by_role("link", name="IP allowlist")).to_be_hidden()
    expect(page.locator("#nav").get_by_role("link", name="Backups")).to_be_hidden()
    page.goto(f"{checked.url}/studio/#/backups")
    expect(page.locator("main")).to_contain_text("This needs Operator or Cluster Admin clearance.")


def test_the_backups_page_adds_a_schedule_runs_it_and_says_how_to_restore(checked: Studio, tmp_path: Path) -> None:
    admin = checked.server.admin()
    assert admin.put(f"{checked.url}/admin/databases", json={"DatabaseName": "backed-up"}).status_code in (200, 201)
    assert admin.put(f"{checked.url}/databases/backed-up/docs?id=items/1", json={"Name": "x"}).status_code == 201
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    folder = tmp_path / "backups"
    page = checked.open(route="backups", viewport=LAPTOP)
    expect(page.locator(".backup-table")).to_contain_text("No schedule yet")
    page.get_by_label("Database").select_option("backed-up")
    page.get_by_label("Every (hours)").fill("6")
    page.get_by_label("Keep (backups)").fill("3")
    page.get_by_label("Folder on the server").fill(str(folder))
    page.get_by_label("Recipients (age public keys, one per line)").fill("not-an-age-key")
    page.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_role("alert")).to_be_visible()  # the server's refusal, shown in the form
    assert admin.get(f"{checked.url}/admin/backups/schedules").json()["Schedules"] == []
    page.get_by_label("Recipients (age public keys, one per line)").fill(recipient)
    page.get_by_role("button", name="Save schedule").click()
    expect(page.get_by_role("status")).to_contain_text("was saved")
    schedule = page.locator(".backup-table tbody tr", has_text="backed-up")
    expect(schedule).to_contain_text("6 h")
    expect(schedule).to_contain_text("Not run yet")
    schedule.get_by_role("button", name="Run the backup of backed-up now").click()
    expect(schedule).to_contain_text("OK ", timeout=30_000)
    expect(schedule).to_contain_text("1 documents")
    assert len(list(folder.iterdir())) == 1
    expect(page.get_by_role("region", name="How to restore")).to_contain_text("roost backup restore")
    checked.shot(page, "studio-backups")
