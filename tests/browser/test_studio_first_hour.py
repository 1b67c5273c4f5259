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
