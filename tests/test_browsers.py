"""Browser-facing defences over real HTTPS against a real server (issue 9): CSRF, CORS and security headers.

What a browser does with them is proven in Chromium by tests/browser/test_cross_site.py; here every header
combination a browser can send is tried directly, each refusal beside its acceptance.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import RunningServer, start_server

CROSS_SITE = "Raven.Server.Web.CrossOriginRequestRefused"
EVIL = "https://evil.example"


def _names(server: RunningServer) -> set[str]:
    response = server.admin().get(f"{server.url}/admin/certificates")
    assert response.status_code == 200, response.text
    return {c["Name"] for c in response.json()["Results"]}


def _generate_body(name: str) -> dict[str, object]:
    return {"Name": name, "SecurityClearance": "ValidUser", "Permissions": {}}


# ---------------------------------------------------------------------------------------------- CSRF


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL},
    {"Origin": "null"},  # sandboxed frames, data: URLs and cross-origin redirects
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # another port of the same host is another application
    {"Origin": "https://localhost:1", "Sec-Fetch-Site": "same-site"},
    {"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"},
], ids=["foreign-origin", "null-origin", "cross-site", "same-site", "other-port", "http-scheme"])
def test_a_cross_site_generate_is_refused_and_changes_nothing(server: RunningServer, headers: dict[str, str]) -> None:
    before = _names(server)
    response = server.admin().post(f"{server.url}/admin/certificates", json=_generate_body("csrf-victim"),
                                   headers=headers)
    assert response.status_code == 403
    assert response.json()["Type"] == CROSS_SITE
    assert "another site" in response.json()["Message"] or "origin" in response.json()["Message"]
    assert _names(server) == before


def test_the_same_generate_without_browser_signals_is_accepted(server: RunningServer) -> None:
    """The twin: RavenDB clients, curl and the CLI send neither Origin nor Sec-Fetch-Site."""
    response = server.admin().post(f"{server.url}/admin/certificates", json=_generate_body("plain-client"))
    assert response.status_code == 200, response.text
    assert "plain-client" in _names(server)


def test_own_origins_are_accepted(server: RunningServer) -> None:
    """The Studio's own requests: Origin is the server's URL (or another loopback name with the real port)."""
    port = server.port
    for origin in (server.url, f"https://127.0.0.1:{port}", f"https://[::1]:{port}", f"https://LOCALHOST:{port}"
                   .lower()):
        name = f"own-{origin.split('//')[1].replace(':', '-').strip('[]')}"
        response = server.admin().post(f"{server.url}/admin/certificates", json=_generate_body(name),
                                       headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 200, (origin, response.text)


def test_a_null_origin_passes_only_with_same_origin_fetch_metadata(server: RunningServer) -> None:
    """Roost's Referrer-Policy: no-referrer makes Chromium send "Origin: null" on the Studio's own form POSTs."""
    for site, status in (("same-origin", 200), (None, 403), ("cross-site", 403), ("same-site", 403), ("none", 403)):
        headers = {"Origin": "null", **({"Sec-Fetch-Site": site} if site else {})}
        response = server.admin().post(f"{server.url}/admin/certificates", json=_generate_body(f"null-{site}"),
                                       headers=headers)
        assert response.status_code == status, (site, response.text)


def test_an_own_host_with_another_port_is_refused(server: RunningServer) -> None:
    for origin in (f"https://localhost:{server.port + 1}", f"http://localhost:{server.port}",
                   f"https://localhost.evil.example:{server.port}"):
        response = server.admin().post(f"{server.url}/admin/certificates", json=_generate_body("nope"),
                                       headers={"Origin": origin})
        assert response.status_code == 403, origin
        assert response.json()["Type"] == CROSS_SITE


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_every_state_changing_method_is_checked_on_every_route(server: RunningServer, method: str) -> None:
    """Generic: routes that do not exist yet (2FA login/logout) and methods no route has are covered too."""
    for path in ("/admin/certificates", "/admin/certificates/edit", "/authentication/2fa",
                 "/authentication/2fa/logout", "/admin/databases?name=x", "/databases/x/docs?id=a",
                 "/no/such/route"):
        response = server.admin().request(method, f"{server.url}{path}", data=b"{}",
                                          headers={"Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["Type"] == CROSS_SITE


def test_reads_are_not_csrf_checked(server: RunningServer) -> None:
    """Reading cannot change state, and the same-origin policy keeps the answer from the foreign page."""
    response = server.admin().get(f"{server.url}/certificates/whoami",
                                      headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_cross_site_websocket_upgrade_is_refused(server: RunningServer) -> None:
    """WebSockets are not protected by the same-origin policy: a foreign page could read a changes feed."""
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    admin = server.admin()
    for foreign in ({"Origin": EVIL}, {"Origin": f"https://localhost:{server.port + 1}", "Sec-Fetch-Site": "same-site"}):
        refused = admin.get(f"{server.url}/databases/db/changes", headers={**upgrade, **foreign})
        assert refused.status_code == 403 and refused.json()["Type"] == CROSS_SITE
    own = admin.get(f"{server.url}/databases/db/changes", headers={**upgrade, "Origin": server.url,
                                                                  "Sec-Fetch-Site": "same-origin"})
    assert own.status_code != 403 or own.json()["Type"] != CROSS_SITE  # reaches routing (no such route yet: 404)


def test_csrf_runs_before_authorization(server: RunningServer) -> None:
    """No certificate at all: a browser request is refused as cross-site, not as unauthenticated."""
    anonymous = server.session(None)
    refused = anonymous.post(f"{server.url}/admin/certificates", json={}, headers={"Origin": EVIL})
    assert refused.status_code == 403 and refused.json()["Type"] == CROSS_SITE
    plain = anonymous.post(f"{server.url}/admin/certificates", json={})
    assert plain.status_code == 403 and plain.json()["Type"] == "InvalidAuth"


def _raw_request(server: RunningServer, head: str) -> bytes:
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    context.load_cert_chain(str(server.admin_pem))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(head.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data


def test_csrf_refuses_before_the_body_is_read(server: RunningServer) -> None:
    """The headers announce a gigabyte and no byte of it is sent: the refusal comes at once (not a 413, no wait)."""
    refused = _raw_request(server, "POST /admin/certificates HTTP/1.1\r\nHost: localhost\r\n"
                                   f"Origin: {EVIL}\r\nContent-Length: 1000000000\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 403"), refused[:200]
    too_large = _raw_request(server, "POST /admin/certificates HTTP/1.1\r\nHost: localhost\r\n"
                                     "Content-Length: 1000000000\r\n\r\n")
    assert too_large.startswith(b"HTTP/1.1 413"), too_large[:200]


def test_a_cross_site_edit_and_delete_change_nothing(server: RunningServer) -> None:
    target = server.generate("csrf-target")
    admin = server.admin()
    edit = {"Thumbprint": target.thumbprint, "Name": "renamed", "SecurityClearance": "Operator", "Permissions": {}}
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
        assert admin.post(f"{server.url}/admin/certificates/edit", json=edit, headers=headers).status_code == 403
        assert admin.delete(f"{server.url}/admin/certificates", params={"thumbprint": target.thumbprint},
                            headers=headers).status_code == 403
    listed = admin.get(f"{server.url}/admin/certificates", params={"thumbprint": target.thumbprint}).json()
    assert [(c["Name"], c["SecurityClearance"]) for c in listed["Results"]] == [("csrf-target", "ValidUser")]
    # The twins from the Studio's origin succeed.
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert admin.post(f"{server.url}/admin/certificates/edit", json=edit, headers=own).status_code == 201
    assert admin.delete(f"{server.url}/admin/certificates", params={"thumbprint": target.thumbprint},
                        headers=own).status_code == 204
    assert "renamed" not in _names(server) and "csrf-target" not in _names(server)


def test_public_url_is_an_own_origin(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = start_server(tmp_path / "data", "--PublicServerUrl=https://roost.example:9443", port=port)
    try:
        assert running.url == "https://roost.example:9443"
        session = running.session(running.admin_pem)
        local = f"https://localhost:{port}"
        for origin, status in (("https://roost.example:9443", 200), ("https://roost.example", 403),
                               (local, 200), ("https://other.example:9443", 403)):
            response = session.post(f"{local}/admin/certificates", json=_generate_body(f"p{status}"),
                                    headers={"Origin": origin})
            assert response.status_code == status, (origin, response.text)
    finally:
        running.stop()


# ---------------------------------------------------------------------------------------------- CORS

APP = "https://app.example:8080"


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("cors") / "data",
                           f"--Security.Cors.AllowedOrigins={APP}/, https://other-app.example")
    yield running
    running.stop()


def test_no_cors_headers_without_configuration(server: RunningServer) -> None:
    admin = server.admin()
    response = admin.get(f"{server.url}/certificates/whoami", headers={"Origin": APP})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    preflight = admin.options(f"{server.url}/admin/certificates", headers={
        "Origin": APP, "Access-Control-Request-Method": "DELETE"})
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Security.Cors.AllowedOrigins" in preflight.json()["Message"]


def test_a_configured_origin_gets_its_exact_origin_with_credentials(cors_server: RunningServer) -> None:
    server = cors_server
    preflight = requests.options(f"{server.url}/admin/certificates", verify=str(server.ca_pem), headers={
        "Origin": APP, "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert "DELETE" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type"
    admin = server.admin()
    created = admin.post(f"{server.url}/admin/certificates", json=_generate_body("from-app"),
                         headers={"Origin": APP, "Sec-Fetch-Site": "cross-site"})
    assert created.status_code == 200, created.text
    assert created.headers["Access-Control-Allow-Origin"] == APP
    assert created.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in created.headers["Vary"]


def test_an_unconfigured_origin_is_refused_where_a_configured_one_is_allowed(cors_server: RunningServer) -> None:
    server = cors_server
    for origin in ("https://app.example:8081", "http://app.example:8080", "null"):
        preflight = requests.options(f"{server.url}/admin/certificates", verify=str(server.ca_pem), headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 403, origin
        assert "Access-Control-Allow-Origin" not in preflight.headers
        response = server.admin().post(f"{server.url}/admin/certificates", json=_generate_body("x"),
                                       headers={"Origin": origin})
        assert response.status_code == 403, origin
        assert "Access-Control-Allow-Origin" not in response.headers
    read = server.admin().get(f"{server.url}/certificates/whoami", headers={"Origin": "https://app.example:8081"})
    assert "Access-Control-Allow-Origin" not in read.headers


@pytest.mark.parametrize("value", ["*", "https://app.example/path", "app.example", "ftp://app.example", "null"])
def test_cors_settings_accept_exact_origins_only(tmp_path: Path, value: str) -> None:
    with pytest.raises(RuntimeError, match="is not an origin"):
        start_server(tmp_path / "data", f"--Security.Cors.AllowedOrigins={value}", timeout=20)


# ---------------------------------------------------------------------------------------------- headers

CSP_PROMISES = ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'")


def _csp(value: str) -> dict[str, str]:
    directives = {}
    for part in value.split(";"):
        if part.strip():
            name, _, rest = part.strip().partition(" ")
            directives[name] = rest
    return directives


def _assert_strict_csp(headers: requests.structures.CaseInsensitiveDict[str], where: str) -> None:
    policy = _csp(headers["Content-Security-Policy"])
    assert policy.get("default-src") in ("'self'", "'none'"), where
    for directive in ("script-src", "style-src", "default-src"):
        assert "unsafe" not in policy.get(directive, ""), where
        assert "*" not in policy.get(directive, ""), where
    assert policy["frame-ancestors"] == "'none'", where
    assert policy["object-src"] == "'none'", where
    assert policy["base-uri"] == "'none'", where


def _assert_browser_headers(headers: requests.structures.CaseInsensitiveDict[str], where: str) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff", where
    assert headers["Referrer-Policy"] == "no-referrer", where
    assert headers["Strict-Transport-Security"].startswith("max-age="), where
    assert int(headers["Strict-Transport-Security"].split("=")[1].split(";")[0]) >= 31536000, where


def test_every_studio_file_has_the_strict_policy(server: RunningServer) -> None:
    studio = Path(__file__).resolve().parents[1] / "src" / "roost" / "studio"
    files = ["", *sorted(p.name for p in studio.iterdir() if p.is_file())]
    admin = server.admin()
    for name in files:
        response = admin.get(f"{server.url}/studio/{name}")
        assert response.status_code == 200, name
        _assert_strict_csp(response.headers, name)
        _assert_browser_headers(response.headers, name)


def test_html_error_pages_escape_and_carry_the_policy(server: RunningServer) -> None:
    anonymous = server.session(None)
    response = anonymous.get(f"{server.url}/admin/certificates?<script>alert(1)</script>",
                             headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    _assert_strict_csp(response.headers, "error page")
    _assert_browser_headers(response.headers, "error page")
    assert "<script" not in response.text
    # Names from certificates reach error pages too: a deleted certificate's refusal names it.
    hostile = server.generate('<img src=x onerror="document.title=1">')
    admin = server.admin()
    assert admin.delete(f"{server.url}/admin/certificates", params={"thumbprint": hostile.thumbprint}).ok
    page = server.session(hostile.pem_path).get(f"{server.url}/admin/certificates",
                                                 headers={"Accept": "text/html"})
    assert page.status_code == 403
    assert "<img" not in page.text
    assert "&lt;img src=x onerror=" in page.text  # the subject is there, as text


def test_request_text_in_other_errors_never_becomes_html(server: RunningServer) -> None:
    """A browser navigating to a crafted URL gets JSON (never sniffed as HTML), with the path as data."""
    response = server.admin().get(f"{server.url}/studio/<img src=x onerror=alert(1)>",
                                  headers={"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"})
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<img" in response.json()["Message"]  # kept as data, shown as text by whoever displays it


def test_redirects_and_api_errors_carry_the_headers(server: RunningServer) -> None:
    admin = server.admin()
    redirect = admin.get(f"{server.url}/", allow_redirects=False)
    assert redirect.status_code == 302
    _assert_browser_headers(redirect.headers, "redirect")
    missing = admin.get(f"{server.url}/no/such/route")
    assert missing.status_code == 404
    _assert_browser_headers(missing.headers, "404")
    assert missing.headers["Cache-Control"] == "no-store"


def test_every_certificate_bearing_response_is_no_store_and_nosniff(server: RunningServer) -> None:
    admin = server.admin()
    url = server.url
    target = server.generate("headers-target")
    responses = {
        "whoami": admin.get(f"{url}/certificates/whoami"),
        "list": admin.get(f"{url}/admin/certificates"),
        "one": admin.get(f"{url}/admin/certificates", params={"thumbprint": target.thumbprint}),
        "generate": admin.post(f"{url}/admin/certificates", json=_generate_body("headers-generated")),
        "edit": admin.post(f"{url}/admin/certificates/edit", json={
            "Thumbprint": target.thumbprint, "Name": "headers-target", "SecurityClearance": "ValidUser",
            "Permissions": {}}),
        "export": admin.get(f"{url}/admin/certificates/export"),
        "purge": admin.delete(f"{url}/admin/certificates/purge"),
        "delete": admin.delete(f"{url}/admin/certificates", params={"thumbprint": target.thumbprint}),
        "databases": admin.get(f"{url}/databases"),
    }
    pem = target.pem_path.read_text()
    upload_body = {"Name": "headers-uploaded", "SecurityClearance": "ValidUser", "Permissions": {},
                   "Certificate": "".join(pem.split("-----BEGIN CERTIFICATE-----")[1]
                                          .split("-----END CERTIFICATE-----")[0].split())}
    responses["upload"] = admin.put(f"{url}/admin/certificates", json=upload_body)
    for name, response in responses.items():
        assert response.status_code < 300, (name, response.status_code, response.text)
        assert response.headers["Cache-Control"] == "no-store", name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        _assert_browser_headers(response.headers, name)


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "image/svg+xml", "application/xhtml+xml",
                                          "text/xml"])
def test_any_document_without_a_policy_gets_the_strict_default(content_type: str) -> None:
    """Routes other engineers add (a 2FA QR code as SVG, ...) cannot forget the CSP: the middleware adds one."""
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    from roost.http.browsers import BrowserPolicy
    from roost.settings import Settings

    policy = BrowserPolicy(Settings())
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": content_type})
    policy.add_headers(make_mocked_request("GET", "/authentication/2fa/qr"), headers)
    _assert_strict_csp(headers, content_type)  # type: ignore[arg-type]
    assert "script-src" not in headers["Content-Security-Policy"]
    assert _csp(headers["Content-Security-Policy"])["default-src"] == "'none'"
    # The twin: JSON is not a document; a policy a route set itself is kept.
    json_headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
    policy.add_headers(make_mocked_request("GET", "/x"), json_headers)
    assert "Content-Security-Policy" not in json_headers
    own: CIMultiDict[str] = CIMultiDict({"Content-Type": "text/html", "Content-Security-Policy": "default-src 'self'"})
    policy.add_headers(make_mocked_request("GET", "/x"), own)
    assert own["Content-Security-Policy"] == "default-src 'self'"


def test_plain_http_gets_no_hsts(tmp_path: Path) -> None:
    """The twin of the HSTS checks: HSTS over plain HTTP is meaningless and browsers ignore it; Roost omits it."""
    running = start_server(tmp_path / "data", "--ServerUrl=http://127.0.0.1:0")
    try:
        response = requests.get(f"{running.url}/studio/")
        assert response.status_code == 200
        assert "Strict-Transport-Security" not in response.headers
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        _assert_strict_csp(response.headers, "http studio")
    finally:
        running.stop()


def test_two_factor_login_and_logout_from_another_site_are_refused(server: RunningServer) -> None:
    """Login CSRF would open a session for the victim's certificate; logout CSRF would end it. Neither happens,
    and the refused login does not even consume the code (the body was never read)."""
    import pyotp

    secret = server.admin().get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    cert = server.generate("csrf-2fa", "ValidUser", {}, TwoFactorAuthenticationKey=secret)
    browser = server.session(cert.pem_path)
    token = pyotp.TOTP(secret).now()
    whoami = f"{server.url}/certificates/whoami"
    login = f"{server.url}/authentication/2fa"
    for foreign in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
        refused = browser.post(login, params={"hasLimits": "false"}, json={"Token": token}, headers=foreign)
        assert refused.status_code == 403 and refused.json()["Type"] == CROSS_SITE
        assert browser.get(whoami).status_code == 428
    # The twin: the same code, from the Studio's origin, opens the session.
    opened = browser.post(login, params={"hasLimits": "false"}, json={"Token": token},
                          headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
    assert opened.status_code == 202, opened.text
    assert browser.get(whoami).status_code == 200
    for foreign in ({"Origin": EVIL}, {"Sec-Fetch-Site": "same-site"}):
        refused = browser.delete(login, headers=foreign)
        assert refused.status_code == 403 and refused.json()["Type"] == CROSS_SITE
        assert browser.get(whoami).status_code == 200
    assert browser.delete(login, headers={"Origin": server.url}).status_code == 204
    assert browser.get(whoami).status_code == 428
