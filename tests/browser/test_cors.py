"""CORS in a real Chromium (issue 9): only an origin the administrator lists in Security.Cors.AllowedOrigins may
call Roost with the user's client certificate and read the answers; any other origin can neither read nor change.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from studio_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, split_pem

from conftest import RunningServer, start_server

pytestmark = pytest.mark.browser

PAGE = b"<!doctype html><html><head><meta charset='utf-8'><title>App</title></head><body>app</body></html>"

FETCH = """async ({url, method, body}) => {
  const init = {method, mode: "cors", credentials: "include", headers: {}};
  if (body !== null) { init.body = body; init.headers["Content-Type"] = "application/json"; }
  try {
    const response = await fetch(url, init);
    return {ok: true, status: response.status, text: await response.text()};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}"""


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _page_server() -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Setup:
    roost: RunningServer
    browser: Any
    allowed: str
    other: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    allowed_page, other_page = _page_server(), _page_server()
    allowed = f"http://127.0.0.1:{allowed_page.server_address[1]}"
    other = f"http://127.0.0.1:{other_page.server_address[1]}"
    roost = start_server(tmp_path_factory.mktemp("cors") / "data", f"--Security.Cors.AllowedOrigins={allowed}")
    previous = os.environ.get("NODE_EXTRA_CA_CERTS")
    os.environ["NODE_EXTRA_CA_CERTS"] = str(roost.ca_pem)  # Playwright's client-certificate proxy verifies Roost
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield Setup(roost, browser, allowed, other)
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("NODE_EXTRA_CA_CERTS", None)
        else:
            os.environ["NODE_EXTRA_CA_CERTS"] = previous
        roost.stop()
        for page_server in (allowed_page, other_page):
            page_server.shutdown()
            page_server.server_close()


def _page(setup: Setup, origin: str) -> Any:
    cert_path, key_path = split_pem(setup.roost.admin_pem)
    context = setup.browser.new_context(client_certificates=[
        {"origin": setup.roost.url, "certPath": str(cert_path), "keyPath": str(key_path)}])
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{origin}/")
    return page


def _names(roost: RunningServer) -> set[str]:
    return {c["Name"] for c in roost.admin().get(f"{roost.url}/admin/certificates").json()["Results"]}


def test_an_allowed_origin_reads_and_changes_with_the_users_certificate(setup: Setup, tmp_path: Path) -> None:
    roost = setup.roost
    page = _page(setup, setup.allowed)
    whoami = page.evaluate(FETCH, {"url": f"{roost.url}/certificates/whoami", "method": "GET", "body": None})
    assert whoami["ok"] and whoami["status"] == 200, whoami
    assert json.loads(whoami["text"])["SecurityClearance"] == "ClusterAdmin"
    body = json.dumps({"Name": "made-by-app", "SecurityClearance": "ValidUser", "Permissions": {}})
    made = page.evaluate(FETCH, {"url": f"{roost.url}/admin/certificates", "method": "POST", "body": body})
    assert made["ok"] and made["status"] == 200, made
    assert "made-by-app" in _names(roost)
    target = roost.generate("deleted-by-app", directory=tmp_path)
    deleted = page.evaluate(FETCH, {"url": f"{roost.url}/admin/certificates?thumbprint={target.thumbprint}",
                                    "method": "DELETE", "body": None})
    assert deleted["ok"] and deleted["status"] == 204, deleted
    assert "deleted-by-app" not in _names(roost)
    page.context.close()


def test_an_origin_not_listed_can_neither_read_nor_change(setup: Setup, tmp_path: Path) -> None:
    roost = setup.roost
    target = roost.generate("kept", directory=tmp_path)
    before = _names(roost)
    page = _page(setup, setup.other)
    for url, method, body in (
            (f"{roost.url}/certificates/whoami", "GET", None),
            (f"{roost.url}/admin/certificates", "POST",
             json.dumps({"Name": "made-by-other", "SecurityClearance": "ClusterAdmin", "Permissions": {}})),
            (f"{roost.url}/admin/certificates?thumbprint={target.thumbprint}", "DELETE", None)):
        result = page.evaluate(FETCH, {"url": url, "method": method, "body": body})
        assert result["ok"] is False and "Failed to fetch" in result["error"], (method, result)
    assert _names(roost) == before
    page.context.close()
