"""Issue 17's new views at both sizes the issue names (1280x800 and 800x900): each opens, shows its controls in
view and scrolls nothing sideways."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from studio_browser import LAPTOP, NARROW, Studio, checked_fixture, row, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def _no_sideways_scroll(page: Any, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def _in_view(locator: Any, width: int) -> None:
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= width, box


@pytest.mark.parametrize("viewport", [LAPTOP, NARROW], ids=["1280x800", "800x900"])
def test_the_new_views_fit_both_sizes(checked: Studio, viewport: dict[str, int]) -> None:
    width = viewport["width"]
    admin = checked.server.admin()
    assert admin.put(f"{checked.url}/admin/databases", json={"DatabaseName": "narrow-db"}).status_code in (200, 201, 409)
    name = f"narrow-user-{width}"
    checked.generate(name, permissions={"narrow-db": "Read"})

    page = checked.open(viewport=viewport)
    page.get_by_label("Name or thumbprint").fill(name)
    expect(page.locator(".summary")).to_have_text("Showing 1–1 of 1")
    target = row(page, name)
    _in_view(target.get_by_role("button", name=f"Details of {name}"), width)
    target.get_by_label(f"Select {name}").check()
    bar = page.get_by_role("region", name="Selected certificates")
    for button in ("Disable", "Grant database access…", "Delete…"):
        _in_view(bar.get_by_role("button", name=button), width)
    _no_sideways_scroll(page, width)
    target.get_by_role("button", name=f"Details of {name}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("region", name="History from the audit log")).to_contain_text("Generated")
    for button in ("Rotate: issue a successor", "Close"):
        _in_view(dialog.get_by_role("button", name=button, exact=True), width)
    _no_sideways_scroll(page, width)
    dialog.get_by_role("button", name="Close", exact=True).click()

    for route, control in (("allowlist", "Save allowlist"), ("backups", "Save schedule")):
        page.goto(f"{checked.url}/studio/#/{route}")
        _in_view(page.get_by_role("button", name=control), width)
        _no_sideways_scroll(page, width)
    page.goto(f"{checked.url}/studio/#/databases")
    page.get_by_label("Who has access to narrow-db").click()
    expect(page.locator(".db-row", has_text="narrow-db").locator(".access-list")).to_contain_text(name)
    _no_sideways_scroll(page, width)
