"""CSRF in a real Chromium (issue 9): a page of another origin, opened in a browser that holds the admin's client
certificate, tries to generate, edit and delete certificates with `fetch` (credentials included) and with plain
HTML form POSTs. Every attempt is refused and the registry is unchanged. The same requests, sent by the same code
from the Studio's own origin, succeed.

The browser presents the client certificate on every connection to Roost, whoever's page opened it: that is the
ambient authority the CSRF check in roost.http.browsers takes away from foreign pages.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from studio_browser import CHROMIUM_ARGS, Studio, split_pem, studio_fixture  # noqa: F401

pytestmark = pytest.mark.browser

CROSS_SITE = "Raven.Server.Web.CrossOriginRequestRefused"
ATTACKER_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>Cute cats</title></head>
<body><h1>Nothing to see here</h1></body></html>"""

# The page's own script: fetch with the user's credentials, report what the page could see.
FETCH = """async ({url, method, body, mode, contentType}) => {
  const init = {method, mode, credentials: "include", headers: {}};
  if (body !== null) init.body = body;
  if (contentType) init.headers["Content-Type"] = contentType;
  try {
    const response = await fetch(url, init);
    return {sent: true, type: response.type, status: response.status};
  } catch (error) {
    return {sent: false, error: String(error)};
  }
}"""

# A plain HTML form: enctype text/plain turns name=value into a JSON body ('{"...":"' + '=' + '"}').
FORM = """({action, name, value}) => {
  const form = document.createElement("form");
  form.method = "POST";
  form.action = action;
  form.enctype = "text/plain";
  const input = document.createElement("input");
  input.type = "hidden";
  input.name = name;
  input.value = value;
  form.append(input);
  document.body.append(form);
  form.submit();
}"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(ATTACKER_PAGE)))
        self.end_headers()
        self.wfile.write(ATTACKER_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Attacker:
    origin: str
    server: http.server.ThreadingHTTPServer
    tls: bool


def _attacker(kind: str, studio: Studio) -> Attacker:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    port = server.server_address[1]
    if kind == "cross-site":  # another host and scheme: http://127.0.0.1 against https://localhost
        origin = f"http://127.0.0.1:{port}"
    else:  # same-site: the same host on another port (another application on the same machine)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certs = studio.server.certs_dir
        context.load_cert_chain(str(certs / "server.crt"), str(certs / "server.key"))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        origin = f"https://localhost:{port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Attacker(origin, server, kind != "cross-site")


@pytest.fixture(params=["cross-site", "same-site"])
def attacker(request: pytest.FixtureRequest, studio: Studio) -> Iterator[Attacker]:
    running = _attacker(request.param, studio)
    yield running
    running.server.shutdown()
    running.server.server_close()


def _registry(studio: Studio) -> list[tuple[str, str, str, str]]:
    response = studio.server.admin().get(f"{studio.url}/admin/certificates")
    assert response.status_code == 200, response.text
    return sorted((c["Thumbprint"], c["Name"], c["SecurityClearance"], json.dumps(c["Permissions"], sort_keys=True))
                  for c in response.json()["Results"])


def _admin_context(studio: Studio) -> Any:
    cert_path, key_path = split_pem(studio.server.admin_pem)
    # ignore_https_errors: only for the same-site attacker's own page, whose certificate Chromium does not know.
    # Roost's origin is reached through Playwright's client-certificate proxy, which verifies it against Roost's CA.
    context = studio.browser.new_context(
        client_certificates=[{"origin": studio.url, "certPath": str(cert_path), "keyPath": str(key_path)}],
        ignore_https_errors=True,
    )
    context.set_default_timeout(15_000)
    return context


@dataclass
class Attempts:
    """What one page sends, and what Roost answered (seen from the browser's network log)."""

    generate_body: str
    edit_body: str
    delete_url: str
    generate_url: str
    edit_url: str


def _attempts(studio: Studio, target: str, tag: str) -> Attempts:
    # Name last: a text/plain form can only append "=" to the last string (see _form_parts).
    generate = {"SecurityClearance": "ClusterAdmin", "Permissions": {}, "Name": f"{tag}-minted"}
    edit = {"Thumbprint": target, "SecurityClearance": "ClusterAdmin", "Permissions": {}, "Name": f"{tag}-renamed"}
    return Attempts(json.dumps(generate), json.dumps(edit), f"{studio.url}/admin/certificates?thumbprint={target}",
                    f"{studio.url}/admin/certificates", f"{studio.url}/admin/certificates/edit")


def _form_parts(body: str) -> tuple[str, str]:
    """'{..., "Name": "x"}' -> ('{..., "Name": "x', '"}'): the text/plain form body name=value is then valid JSON,
    with the Name ending in "="."""
    assert body.endswith('"}') and '"Name": ' in body.rsplit(",", 1)[-1], body
    return body[:-2], '"}'


def _roost_answers(page: Any, studio: Studio) -> list[tuple[str, str, int]]:
    answers: list[tuple[str, str, int]] = []
    page.on("response", lambda r: answers.append((r.request.method, r.url, r.status))
            if r.url.startswith(studio.url) else None)
    return answers


def test_a_foreign_page_cannot_generate_edit_or_delete(studio: Studio, attacker: Attacker) -> None:
    target = studio.generate(f"target-{attacker.tls}").thumbprint
    before = _registry(studio)
    context = _admin_context(studio)
    page = context.new_page()
    answers = _roost_answers(page, studio)
    page.goto(f"{attacker.origin}/")
    assert page.evaluate("location.origin") == attacker.origin
    attempts = _attempts(studio, target, "evil")

    # fetch, credentials included. "no-cors" is what a real attacker uses: a simple request, sent without asking.
    for url, method, body in ((attempts.generate_url, "POST", attempts.generate_body),
                              (attempts.edit_url, "POST", attempts.edit_body)):
        result = page.evaluate(FETCH, {"url": url, "method": method, "body": body, "mode": "no-cors",
                                       "contentType": "text/plain"})
        assert result == {"sent": True, "type": "opaque", "status": 0}, result  # the page learns nothing
    # "cors" with JSON or DELETE needs a preflight, which Roost answers without Access-Control-Allow-Origin.
    for url, method, body, content_type in (
            (attempts.generate_url, "POST", attempts.generate_body, "application/json"),
            (attempts.edit_url, "POST", attempts.edit_body, "application/json"),
            (attempts.delete_url, "DELETE", None, None),
            (attempts.generate_url, "POST", attempts.generate_body, "text/plain")):  # simple, but unreadable
        result = page.evaluate(FETCH, {"url": url, "method": method, "body": body, "mode": "cors",
                                       "contentType": content_type})
        assert result["sent"] is False and "Failed to fetch" in result["error"], (method, url, result)

    # Plain HTML form POSTs: the browser navigates to Roost's answer, a refusal.
    for action, body in ((attempts.generate_url, attempts.generate_body), (attempts.edit_url, attempts.edit_body),
                         (attempts.delete_url, '{"Name": "x"}')):
        page.goto(f"{attacker.origin}/")
        name, value = _form_parts(body)
        with page.expect_navigation():
            page.evaluate(FORM, {"action": action, "name": name, "value": value})
        assert page.evaluate("location.origin") == studio.url
        answer = json.loads(page.locator("body").inner_text())
        assert answer["Type"] == CROSS_SITE, answer
        assert "another site" in answer["Message"] or attacker.origin in answer["Message"]

    # Every request that reached Roost was refused by the CSRF check; nothing changed.
    posts = [a for a in answers if a[0] in ("POST", "PUT", "DELETE", "PATCH")]
    assert len(posts) >= 5, answers  # 2 no-cors fetches, 1 simple cors fetch, 3 forms (some browsers merge)
    assert all(status == 403 for _, _, status in posts), posts
    assert _registry(studio) == before
    context.close()


def test_the_same_requests_from_the_studio_succeed(studio: Studio) -> None:
    """The twin: identical fetch and form code, run by a page of Roost's own origin, changes the registry."""
    context = _admin_context(studio)
    page = context.new_page()
    answers = _roost_answers(page, studio)
    page.goto(f"{studio.url}/studio/")
    page.locator("#identity .me-name").wait_for()

    first = studio.generate("studio-target-1").thumbprint
    attempts = _attempts(studio, first, "studio")
    generate = {**json.loads(attempts.generate_body), "SecurityClearance": "ValidUser"}
    edit = {**json.loads(attempts.edit_body), "SecurityClearance": "Operator"}
    result = page.evaluate(FETCH, {"url": attempts.generate_url, "method": "POST", "body": json.dumps(generate),
                                   "mode": "no-cors", "contentType": "text/plain"})
    assert result == {"sent": True, "type": "basic", "status": 200}, result
    result = page.evaluate(FETCH, {"url": attempts.edit_url, "method": "POST", "body": json.dumps(edit),
                                   "mode": "cors", "contentType": "application/json"})
    assert result == {"sent": True, "type": "basic", "status": 201}, result
    result = page.evaluate(FETCH, {"url": attempts.delete_url, "method": "DELETE", "body": None, "mode": "cors",
                                   "contentType": None})
    assert result == {"sent": True, "type": "basic", "status": 204}, result
    names = {entry[1] for entry in _registry(studio)}
    assert "studio-minted" in names and "studio-renamed" not in names  # renamed, then deleted
    assert first not in {entry[0] for entry in _registry(studio)}

    # The same plain form POST, from the Studio's origin: generate answers with the package download.
    name, value = _form_parts(json.dumps({"SecurityClearance": "ValidUser", "Permissions": {},
                                          "Name": "studio-form"}))
    with page.expect_download() as download:
        page.evaluate(FORM, {"action": attempts.generate_url, "name": name, "value": value})
    assert download.value.suggested_filename == "studio-form=.zip"
    second = studio.generate("studio-target-2").thumbprint
    page.goto(f"{studio.url}/studio/")
    name, value = _form_parts(json.dumps({"Thumbprint": second, "SecurityClearance": "ValidUser",
                                          "Permissions": {}, "Name": "studio-form-renamed"}))
    with page.expect_response(lambda r: r.url == attempts.edit_url) as edited:
        page.evaluate(FORM, {"action": attempts.edit_url, "name": name, "value": value})
    assert edited.value.status == 201
    names = {entry[1] for entry in _registry(studio)}
    assert {"studio-form=", "studio-form-renamed="} <= names
    assert all(status < 300 for method, _, status in answers if method in ("POST", "DELETE")), answers
    context.close()


def test_the_studio_itself_works_under_the_check(studio: Studio) -> None:
    """The Studio's own API module (what every dialog uses) passes the CSRF check from Roost's origin."""
    target = studio.generate("api-module-target").thumbprint
    context = _admin_context(studio)
    page = context.new_page()
    page.goto(f"{studio.url}/studio/")
    page.locator("#identity .me-name").wait_for()
    result = page.evaluate("""async (thumbprint) => {
      const api = await import("/studio/api.js");
      await api.request("POST", "/admin/certificates/edit", {body: {Thumbprint: thumbprint, Name: "api-edited",
        SecurityClearance: "ValidUser", Permissions: {}}, expect: "response"});
      await api.request("DELETE", "/admin/certificates", {query: {thumbprint}, expect: "response"});
      return "done";
    }""", target)
    assert result == "done"
    assert target not in {entry[0] for entry in _registry(studio)}
    context.close()


def test_a_foreign_page_cannot_frame_the_studio(studio: Studio, attacker: Attacker) -> None:
    """frame-ancestors 'none': no clickjacking of the Studio's buttons under a foreign page's decoy."""
    context = _admin_context(studio)
    page = context.new_page()
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text) if "frame-ancestors" in message.text else None)
    page.goto(f"{attacker.origin}/")
    page.evaluate("""(src) => new Promise((resolve) => {
      const frame = document.createElement("iframe");
      frame.src = src;
      frame.addEventListener("load", () => resolve(), {once: true});
      document.body.append(frame);
    })""", f"{studio.url}/studio/")
    page.wait_for_timeout(500)
    framed = [f for f in page.frames if f != page.main_frame]
    assert framed, "the iframe was not created"
    # Chromium replaces a refused frame by an error page: none of the Studio's DOM is there.
    assert all(frame.locator("#identity").count() == 0 for frame in framed)
    assert refusals, "Chromium did not report the frame-ancestors refusal"
    context.close()


def test_the_studio_renders_when_opened_at_the_top_level(studio: Studio) -> None:
    """The twin: the same page opened at the top level (not framed) renders the Studio."""
    context = _admin_context(studio)
    page = context.new_page()
    page.goto(f"{studio.url}/studio/")
    page.locator("#identity .me-name").wait_for()
    assert page.locator("#identity").count() == 1
    context.close()
