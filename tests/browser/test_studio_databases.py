"""Manage Server > Databases: create and delete, so that permissions can name real databases."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from studio_browser import Studio, checked_fixture, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser


def _names(studio: Studio) -> list[str]:
    response = studio.server.admin().get(f"{studio.url}/databases", params={"namesOnly": "true"})
    assert response.status_code == 200, response.text
    return list(response.json()["Databases"])


def test_create_and_delete_a_database(checked: Studio) -> None:
    page = checked.open(route="databases")
    expect(page.get_by_role("link", name="Databases")).to_have_attribute("aria-current", "page")
    page.get_by_label("New database name").fill("inventory")
    page.get_by_role("button", name="Create database").click()
    expect(page.locator(".notice.success")).to_contain_text("inventory")
    expect(page.locator(".db-list")).to_contain_text("inventory")
    assert "inventory" in _names(checked)
    checked.shot(page, "studio-databases")

    page.get_by_role("button", name="Delete database inventory").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("inventory")
    dialog.get_by_role("button", name="Delete database").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator(".db-list")).not_to_contain_text("inventory")
    assert "inventory" not in _names(checked)


def test_a_refused_database_name_is_explained_next_to_the_form(checked: Studio) -> None:
    page = checked.open(route="databases")
    page.get_by_label("New database name").fill("bad name!")
    page.get_by_role("button", name="Create database").click()
    error = page.locator("form.create-db + .error-box")
    expect(error).to_be_visible()
    expect(error).to_contain_text("bad name!")


def test_permissions_can_name_a_database_created_in_the_studio(checked: Studio) -> None:
    page = checked.open(route="databases")
    page.get_by_label("New database name").fill("billing")
    page.get_by_role("button", name="Create database").click()
    expect(page.locator(".db-list")).to_contain_text("billing")
    page.get_by_role("link", name="Certificates").click()
    page.get_by_role("button", name="Generate client certificate").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Add database permission").click()
    expect(dialog.get_by_label("Database", exact=True).locator("option[value=billing]")).to_have_count(1)
