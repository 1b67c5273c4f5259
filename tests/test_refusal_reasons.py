"""Each refusal has its own machine-readable Reason and, in a browser, its own remedy (issue 17, item 5)."""

from __future__ import annotations

import requests

from conftest import RunningServer

HTML = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}


def test_every_refusal_says_its_reason_and_its_own_remedy(server: RunningServer) -> None:
    admin = server.admin()
    assert admin.put(f"{server.url}/admin/databases", params={"name": "reasons-a"}).status_code == 201
    assert admin.put(f"{server.url}/admin/databases", params={"name": "reasons-b"}).status_code == 201
    reader = server.session(server.generate("reasons-reader", "ValidUser", {"reasons-a": "Read"}).pem_path)
    gone_cert = server.generate("reasons-gone", "ValidUser", {"reasons-a": "Read"})
    assert admin.delete(f"{server.url}/admin/certificates",
                        params={"thumbprint": gone_cert.thumbprint}).status_code == 204
    gone = server.session(gone_cert.pem_path)
    nobody = requests.Session()
    nobody.verify = str(server.ca_pem)

    cases = [  # (session, method, path, Reason, words only that remedy has)
        (nobody, "GET", "/certificates/whoami", "NoCertificate", "Install your Roost client certificate"),
        (gone, "GET", "/certificates/whoami", "Unknown", "does not know the certificate"),
        (reader, "GET", "/admin/certificates", "InsufficientClearance", "needs more clearance"),
        (reader, "GET", "/databases/reasons-b/docs?id=x", "NoAccessToDatabase", "no access to this database"),
        (reader, "PUT", "/databases/reasons-a/docs?id=x", "ReadOnlyAccess", "may only read this database"),
    ]
    for session, method, path, reason, remedy in cases:
        api = session.request(method, server.url + path, json={} if method == "PUT" else None)
        assert api.status_code == 403 and api.json()["Type"] == "InvalidAuth", (path, api.text)
        assert api.json()["Reason"] == reason, (path, api.json())
        if method != "GET":
            continue  # a browser navigates with GET
        page = session.get(server.url + path, headers=HTML)
        assert page.status_code == 403 and page.headers["Content-Type"].startswith("text/html")
        assert remedy in page.text, (reason, page.text)
        others = [r for _, _, _, other, r in cases if other != reason]
        assert not [r for r in others if r in page.text], (reason, page.text)
        signed_in = reason in ("InsufficientClearance", "NoAccessToDatabase", "ReadOnlyAccess")
        # A correctly signed-in certificate is never told to reinstall it or to open a private window.
        if signed_in:
            assert "private window" not in page.text and "install" not in page.text.lower(), page.text
    # The accepting twin: the same reader reads what it may.
    assert reader.get(f"{server.url}/databases/reasons-a/docs", params={"start": 0}).status_code == 200
