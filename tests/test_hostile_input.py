"""Hostile input from outside (issue 12): every bad request gets a clear 4xx, changes nothing, and costs little.

Each test names the finding it closes; each refusal has its accepting twin beside it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import ssl
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import RunningServer, start_server
from roost.security.allowlist import AllowList


@pytest.fixture(scope="module")
def db(server: RunningServer, admin: requests.Session) -> str:
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"{server.url}/admin/databases?name={name}").status_code == 201
    return name


def _tls(server: RunningServer, *, certificate: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    if certificate:
        context.load_cert_chain(str(server.admin_pem))
    return context


def _raw(server: RunningServer, head: bytes, *, certificate: bool = True, timeout: float = 10.0) -> bytes:
    """Send raw bytes over TLS and read the answer (status line and headers at least); b"" if the server closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as plain, \
            _tls(server, certificate=certificate).wrap_socket(plain, server_hostname="localhost") as tls:
        tls.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = tls.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
        return data


# Invalid Unicode ---------------------------------------------------------------------------------------------------

LONE = '"\\ud800"'  # a JSON string holding one lone UTF-16 surrogate (valid JSON syntax, not a Unicode string)


def test_lone_surrogates_are_refused_in_every_body(server: RunningServer, admin: requests.Session, db: str) -> None:
    url = server.url
    bodies = [
        ("PUT", f"/databases/{db}/docs?id=s/1", f'{{"Name": {LONE}}}'),
        ("PUT", f"/databases/{db}/docs?id=s/2", f'{{{LONE}: 1}}'),
        ("PUT", f"/databases/{db}/docs?id=s/3", f'{{"@metadata": {{"@collection": {LONE}}}}}'),
        ("POST", f"/databases/{db}/bulk_docs",
         f'{{"Commands": [{{"Type": "PUT", "Id": {LONE}, "Document": {{}}}}]}}'),
        ("POST", f"/databases/{db}/bulk_docs",
         f'{{"Commands": [{{"Type": "PUT", "Id": "s/4", "Document": {{"Deep": [[{{"x": {LONE}}}]]}}}}]}}'),
        ("POST", f"/databases/{db}/queries", f'{{"Query": "from Users where Name = $p", "QueryParameters": '
                                              f'{{"p": {LONE}}}}}'),
        ("PUT", "/admin/databases", f'{{"DatabaseName": {LONE}}}'),
        ("POST", "/admin/certificates/2fa/qr", f'{{"Secret": "JBSWY3DPEHPK3PXPJBSWY3DP", "Name": {LONE}}}'),
    ]
    for method, path, body in bodies:
        response = admin.request(method, f"{url}{path}", data=body.encode())
        assert response.status_code == 400, (method, path, response.status_code, response.text)
        assert "Unicode" in response.json()["Message"], response.text
    listed = admin.get(f"{url}/databases/{db}/docs").json()
    assert not [d for d in listed["Results"] if d["@metadata"]["@id"].startswith("s/")]


def test_valid_astral_characters_are_stored_and_read_back(server: RunningServer, admin: requests.Session,
                                                          db: str) -> None:
    """The twin: a surrogate *pair* is one valid character (U+1F600) and is stored as such."""
    body = '{"Name": "\\ud83d\\ude00", "\\ud83d\\ude00": 1}'
    assert admin.put(f"{server.url}/databases/{db}/docs?id=astral/1", data=body.encode()).status_code == 201
    loaded = admin.get(f"{server.url}/databases/{db}/docs?id=astral/1").json()["Results"][0]
    assert loaded["Name"] == "\U0001f600" and loaded["\U0001f600"] == 1


def test_invalid_unicode_in_urls_and_headers_is_refused(server: RunningServer, admin: requests.Session,
                                                        db: str) -> None:
    for path in (f"/databases/{db}/docs?id=%ED%A0%80", f"/databases/{db}/docs?id=%FF",
                 "/databases/%ED%A0%80/docs", "/studio/%FF"):
        response = admin.get(f"{server.url}{path}")
        assert response.status_code == 400, (path, response.status_code, response.text)
    for header in ("X-Anything", "Origin", "Roost-Backup-Passphrase"):
        answer = _raw(server, f"GET /databases/{db}/docs HTTP/1.1\r\nHost: localhost\r\n".encode()
                      + header.encode() + b": \xff\xfe\xed\xa0\x80\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400"), (header, answer[:300])
    assert admin.get(f"{server.url}/databases/{db}/docs?id=caf%C3%A9").status_code == 404  # valid UTF-8: no such id


def test_a_stored_surrogate_never_makes_a_database_unreadable(server: RunningServer, admin: requests.Session) -> None:
    """Rows written before the parse-time check existed: listings, loads and queries still answer 200."""
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"{server.url}/admin/databases?name={name}").status_code == 201
    assert admin.put(f"{server.url}/databases/{name}/docs?id=users/ok",
                     json={"Name": "ok", "@metadata": {"@collection": "Users"}}).status_code == 201
    with sqlite3.connect(server.data_dir / "roost.db", timeout=10) as connection:
        connection.execute(
            "INSERT INTO documents (db, key, id, collection, body, metadata, change_vector, etag, last_modified) "
            "VALUES (?, 'users/bad', 'users/bad', 'Users', ?, '{}', 'A:99-x', 99, '2026-01-01T00:00:00.0000000Z')",
            (name.casefold(), '{"Name": "\\ud800"}'))
    for response in (admin.get(f"{server.url}/databases/{name}/docs"),
                     admin.get(f"{server.url}/databases/{name}/docs?id=users/bad"),
                     admin.post(f"{server.url}/databases/{name}/queries", json={"Query": "from Users"})):
        assert response.status_code == 200, response.text
        assert "users/ok" in response.text or "users/bad" in response.text


def test_the_error_renderer_never_fails(server: RunningServer) -> None:
    """A refusal that echoes a hostile Origin, with and without a certificate, is a proper 4xx."""
    for certificate in (True, False):
        for origin in (b"https://\xed\xa0\x80.example", b"https://\xff.example", b"\\ud800"):
            answer = _raw(server, b"POST /admin/databases?name=x HTTP/1.1\r\nHost: localhost\r\nOrigin: " + origin
                          + b"\r\nContent-Length: 0\r\n\r\n", certificate=certificate)
            assert answer[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 403"), (certificate, origin, answer[:300])
        for passphrase in (b"\xff\xfe", b"\xed\xa0\x80", b"ok\x80"):
            answer = _raw(server, b"POST /admin/backups/restore?database=r HTTP/1.1\r\nHost: localhost\r\n"
                          b"Roost-Backup-Passphrase: " + passphrase + b"\r\nContent-Length: 0\r\n\r\n",
                          certificate=certificate)
            assert answer[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 403"), (certificate, passphrase, answer[:300])
    # The twin: an ordinary foreign origin still gets its cross-site 403, message and all.
    refused = _raw(server, b"POST /admin/databases?name=x HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example"
                   b"\r\nContent-Length: 0\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 403") and b"evil.example" in refused


def test_control_characters_in_a_path_get_an_answer(server: RunningServer, admin: requests.Session) -> None:
    """CR/LF in a database name dropped the connection (it was echoed into a header); NUL in /studio/ was a 500."""
    for path in ("/databases/a%0D%0Ab/docs", "/databases/a%0D%0ASet-Cookie:x/docs?id=a", "/studio/a%00b",
                 "/studio/%00", "/databases/a%00/docs", "/studio/" + "a" * 8000, "/studio/" + "%C3%A9" * 1300,
                 "/databases/%60%15e/docs", "/databases/%1E%C4%B0/hilo/next?tag=x"):
        response = admin.get(f"{server.url}{path}")
        assert response.status_code in (400, 404), (path, response.status_code, response.text)
        assert "Set-Cookie" not in response.headers
    missing = admin.get(f"{server.url}/databases/no-such-db/docs")
    assert missing.status_code == 503 and missing.headers["Database-Missing"] == "no-such-db"  # the twin


def test_an_oversize_secret_for_the_qr_code_is_a_400(server: RunningServer, admin: requests.Session) -> None:
    too_long = "JBSWY3DPEHPK3PXP" * 300
    response = admin.post(f"{server.url}/admin/certificates/2fa/qr", json={"Secret": too_long, "Name": "n"})
    assert response.status_code == 400, response.text
    fits = admin.post(f"{server.url}/admin/certificates/2fa/qr", json={"Secret": "JBSWY3DPEHPK3PXP", "Name": "n"})
    assert fits.status_code == 200 and fits.headers["Content-Type"].startswith("image/svg+xml")


def test_the_server_header_names_no_versions(server: RunningServer, admin: requests.Session) -> None:
    for response in (admin.get(f"{server.url}/build/version"), admin.get(f"{server.url}/no/such/route"),
                     server.session(None).get(f"{server.url}/admin/certificates")):
        assert response.headers.get("Server") == "Roost", response.headers
    malformed = _raw(server, b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n")
    assert malformed.split(b"\r\n")[0].endswith(b" 400 Bad Request") and b"aiohttp" not in malformed and b"Python" not in malformed


# Generated ids and HiLo ----------------------------------------------------------------------------------------------


def test_a_server_generated_id_never_replaces_a_document(server: RunningServer, admin: requests.Session,
                                                         db: str) -> None:
    url = f"{server.url}/databases/{db}"
    taken = [f"orders/{n:019d}-A" for n in range(1, 4)]
    for doc_id in taken:
        assert admin.put(f"{url}/docs?id={doc_id}", json={"Mine": doc_id}).status_code == 201
    generated = admin.put(f"{url}/docs?id=orders/", json={"Generated": True}).json()["Id"]
    batch = admin.post(f"{url}/bulk_docs", json={"Commands": [
        {"Type": "PUT", "Id": "orders/", "Document": {"Generated": 2}},
        {"Type": "PUT", "Id": "orders/0000000000000000006-A", "Document": {"Mine": "orders/6"}},
        {"Type": "PUT", "Id": "orders/", "Document": {"Generated": 3}},
    ]}).json()["Results"]
    new_ids = {generated, batch[0]["@id"], batch[2]["@id"]}
    assert len(new_ids) == 3 and not new_ids & {*taken, "orders/0000000000000000006-A"}, new_ids
    for doc_id in taken:
        assert admin.get(f"{url}/docs?id={doc_id}").json()["Results"][0]["Mine"] == doc_id
    assert admin.get(f"{url}/docs?id=orders/0000000000000000006-A").json()["Results"][0]["Mine"] == "orders/6"


def test_internal_counters_are_unreachable_through_hilo(server: RunningServer, admin: requests.Session,
                                                        db: str) -> None:
    url = f"{server.url}/databases/{db}"
    for tag in ("@server-generated-ids", "@SERVER-Generated-Ids"):
        assert admin.get(f"{url}/hilo/next", params={"tag": tag}).status_code == 400
        assert admin.put(f"{url}/hilo/return", params={"tag": tag, "end": 10**9, "last": 0}).status_code == 400
    assert admin.get(f"{url}/hilo/next", params={"tag": "@empty"}).status_code == 200  # RavenDB's own tags work


# Browsers and hosts -----------------------------------------------------------------------------------------------


def test_a_cross_site_state_changing_get_is_refused(server: RunningServer, admin: requests.Session, db: str) -> None:
    url = f"{server.url}/databases/{db}/hilo/next?tag=crosssite"
    for headers in ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
                    {"Sec-Fetch-Site": "same-site"}, {"Origin": "https://evil.example"}):
        refused = admin.get(url, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.json()["Type"] == "Raven.Server.Web.CrossOriginRequestRefused"
    first = admin.get(url, headers={"Sec-Fetch-Site": "same-origin", "Origin": server.url}).json()
    assert first["Low"] == 1  # nothing was reserved by the refused requests
    assert admin.get(url).json()["Low"] == first["High"] + 1  # a non-browser client (no Sec-Fetch-*) works


@pytest.fixture(scope="module")
def unsecured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("unsecured") / "data", "--ServerUrl=http://127.0.0.1:0")
    yield running
    running.stop()


def test_unsecured_mode_refuses_foreign_host_headers(unsecured: RunningServer) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 must not reach an unsecured (everyone is admin) server."""
    session = requests.Session()
    base = f"http://127.0.0.1:{unsecured.port}/databases"
    for host in ("evil.example", f"evil.example:{unsecured.port}", "127.0.0.1.evil.example", "localhost.evil"):
        refused = session.get(base, headers={"Host": host})
        assert refused.status_code == 421, (host, refused.text)
        assert "Host" in refused.json()["Message"]
    for host in (f"127.0.0.1:{unsecured.port}", f"localhost:{unsecured.port}", "localhost", f"[::1]:{unsecured.port}",
                 "LOCALHOST"):
        assert session.get(base, headers={"Host": host}).status_code == 200, host


# Who may cost the server something ------------------------------------------------------------------------------------


def test_unauthenticated_2fa_is_refused_before_the_body_is_read(server: RunningServer) -> None:
    """32 MiB announced, not one byte sent: the refusal comes at once, without waiting for (or reading) the body."""
    for certificate in (False, True):  # no certificate; a certificate without 2FA
        answer = _raw(server, b"POST /authentication/2fa HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Length: 33554432\r\n\r\n", certificate=certificate, timeout=5)
        assert answer[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 413"), (certificate, answer[:300])


def test_small_routes_have_small_body_limits(server: RunningServer, admin: requests.Session, db: str) -> None:
    big = {"Token": "1" * (1 << 20)}
    assert admin.post(f"{server.url}/authentication/2fa", json=big).status_code in (400, 413)  # refused unread
    assert admin.put(f"{server.url}/admin/security/allowed-ips", json={"AllowedIPs": ["1.2.3.4"] * 200000}
                     ).status_code == 413
    # The twin: a document route still takes a megabyte.
    assert admin.put(f"{server.url}/databases/{db}/docs?id=big/1", json={"Blob": "x" * (1 << 20)}).status_code == 201


def test_unauthenticated_2fa_attempts_are_rate_limited_in_the_audit_log(server: RunningServer,
                                                                          admin: requests.Session) -> None:
    """A certificate the server no longer knows (its own rate-limit key): five attempts, one audit line, with the
    address. Without any certificate the key is the address, shared with every other refusal from it."""
    gone = server.generate(f"gone-{uuid.uuid4().hex[:6]}")
    assert admin.delete(f"{server.url}/admin/certificates", params={"thumbprint": gone.thumbprint}).status_code == 204
    before = admin.get(f"{server.url}/admin/audit", params={"limit": 1}).json()["LastSeq"]
    for session in [server.session(gone.pem_path)] * 5 + [server.session(None)] * 5:
        assert session.post(f"{server.url}/authentication/2fa", json={"Token": "123456"}).status_code == 400
    entries = admin.get(f"{server.url}/admin/audit", params={"since": before}).json()["Entries"]
    refused = [e for e in entries if e["Event"] in ("auth.refused", "twofactor.failed")]
    mine = [e for e in refused if e.get("Thumbprint") == gone.thumbprint or e.get("ActorThumbprint") == gone.thumbprint]
    assert len(mine) == 1 and mine[0]["Address"] == "127.0.0.1", refused
    assert len(refused) <= 2  # and at most one for the five without a certificate


def test_topology_does_not_tell_a_user_whether_a_database_exists(server: RunningServer, admin: requests.Session,
                                                                 db: str) -> None:
    user = server.generate(f"topology-{uuid.uuid4().hex[:6]}", permissions={"granted-but-absent": "ReadWrite"})
    session = server.session(user.pem_path)
    existing = session.get(f"{server.url}/topology", params={"name": db})
    absent = session.get(f"{server.url}/topology", params={"name": "never-created-db"})
    assert existing.status_code == absent.status_code == 403
    assert existing.json()["Type"] == absent.json()["Type"]
    assert existing.json()["Message"].replace(db, "X") == absent.json()["Message"].replace("never-created-db", "X")
    # The twins: a database the user may use is answered; one it may use that does not exist is RavenDB's 503.
    assert admin.get(f"{server.url}/topology", params={"name": db}).status_code == 200
    missing = session.get(f"{server.url}/topology", params={"name": "granted-but-absent"})
    assert missing.status_code == 503 and missing.headers["Database-Missing"] == "granted-but-absent"


def test_an_ipv4_mapped_allowlist_entry_matches_the_ipv4_address() -> None:
    mapped = AllowList(["::ffff:127.0.0.1", "::ffff:10.0.0.0/104"])
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3", "::ffff:10.9.9.9"):
        assert mapped.allows(address), address
    for address in ("127.0.0.2", "::1", "11.0.0.1", "::ffff:11.0.0.1"):
        assert not mapped.allows(address), address
    plain = AllowList(["127.0.0.1"])
    assert plain.allows("::ffff:127.0.0.1") and not plain.allows("::ffff:127.0.0.2")


def test_an_ipv4_mapped_entry_does_not_lock_the_server_out(server: RunningServer, admin: requests.Session) -> None:
    url = f"{server.url}/admin/security/allowed-ips"
    try:
        changed = admin.put(url, json={"AllowedIPs": ["::ffff:127.0.0.1"]})
        assert changed.status_code == 200, changed.text  # not a 409 "would lock out your own address"
        assert admin.get(f"{server.url}/databases").status_code == 200
        assert server.session(server.admin_pem).get(f"{server.url}/databases").status_code == 200  # a new connection
        refused = admin.put(url, json={"AllowedIPs": ["::ffff:10.0.0.1"]})
        assert refused.status_code == 409  # the twin: an entry that really leaves us out is still caught
    finally:
        assert admin.put(url, json={"AllowedIPs": []}).status_code == 200


# Slow clients -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("impatient") / "data", "--http_header_timeout_seconds=1",
                           "--http_body_timeout_seconds=1", "--http_keepalive_timeout_seconds=2")
    yield running
    running.stop()


def test_timeout_settings_are_validated() -> None:
    from roost.errors import ConfigurationError
    from roost.settings import load_settings

    settings, _ = load_settings(extra_args=["--http_header_timeout_seconds=2.5"], environ={})
    assert (settings.http_header_timeout_seconds, settings.http_keepalive_timeout_seconds) == (2.5, 75.0)
    for bad in ("0", "-1", "nan", "soon", "1e9"):
        with pytest.raises(ConfigurationError):
            load_settings(extra_args=[f"--http_body_timeout_seconds={bad}"], environ={})


def _trickle(server: RunningServer, head: bytes, drip: bytes, seconds: float) -> tuple[bytes, float]:
    """Send ``head``, then one byte of ``drip`` every 0.2 s; what the server answered and when it hung up."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=seconds + 5) as plain, \
            _tls(server).wrap_socket(plain, server_hostname="localhost") as tls:
        tls.sendall(head)
        tls.settimeout(0.2)
        answer = b""
        for byte in drip:
            try:
                tls.sendall(bytes([byte]))
            except OSError:
                break
            try:
                chunk = tls.recv(65536)
            except TimeoutError:
                continue
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                break
            if not chunk:
                break
            answer += chunk
            if time.monotonic() - started > seconds:
                break
        return answer, time.monotonic() - started


def test_slowloris_headers_and_bodies_are_cut_off(impatient: RunningServer) -> None:
    headers, _ = _trickle(impatient, b"GET /build/version HTTP/1.1\r\nHost: localhost\r\n", b"X-Slow: " + b"a" * 60,
                          10)
    assert headers.startswith(b"HTTP/1.1 408"), headers[:200]
    body, _ = _trickle(impatient, b"PUT /admin/databases HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n",
                       b"{" + b" " * 90, 10)
    assert body.startswith(b"HTTP/1.1 408"), body[:200]
    # Idle keep-alive: a connection that sends nothing is closed after the keep-alive timeout.
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=10) as plain, \
            _tls(impatient).wrap_socket(plain, server_hostname="localhost") as tls:
        tls.sendall(b"GET /build/version HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first = tls.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        tls.settimeout(8)
        assert tls.recv(65536) == b""  # closed by the server, not by our timeout


def test_a_prompt_client_is_not_cut_off(impatient: RunningServer) -> None:
    """The twin: a keep-alive client making requests back to back is served throughout."""
    session = impatient.admin()
    for _ in range(3):
        assert session.put(f"{impatient.url}/admin/databases", params={"name": f"p{uuid.uuid4().hex[:6]}"}
                           ).status_code == 201
        time.sleep(0.5)


# Files on disk ---------------------------------------------------------------------------------------------------


def _modes(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` whose mode lets group or others in."""
    loose: dict[str, str] = {}
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if mode & 0o077:
            loose[str(path.relative_to(root))] = stat.filemode(mode)
    return loose


def test_every_file_roost_creates_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    previous = os.umask(0o022)  # what most systems have; the server process inherits it
    try:
        running = start_server(data)
        try:
            assert _modes(data) == {}
            name = "modes"
            admin = running.admin()
            assert admin.put(f"{running.url}/admin/databases?name={name}").status_code == 201
            assert admin.put(f"{running.url}/databases/{name}/docs?id=a", json={"A": 1}).status_code == 201
            backup = admin.post(f"{running.url}/databases/{name}/admin/backups",
                                json={"Passphrase": "correct horse battery staple"})
            assert backup.status_code == 200, backup.text
            assert _modes(data) == {}
        finally:
            running.stop()
        again = start_server(data)
        again.stop()
        assert _modes(data) == {}
    finally:
        os.umask(previous)


def test_json_renders_even_a_legacy_surrogate() -> None:
    """Unit twin of the database test: the one JSON writer escapes what it cannot encode instead of failing."""
    from roost.http.body import json_response

    response = json_response({"Name": "\ud800", "Ok": "é"})
    assert response.body is not None
    assert json.loads(bytes(response.body)) == {"Name": "\ud800", "Ok": "é"}


# PostgreSQL restarts under a request ----------------------------------------------------------------------------------


def test_a_postgresql_outage_in_flight_is_a_503_with_retry_after(tmp_path: Path, postgres_url: str) -> None:
    """The server's write waits on a row lock the test holds; its PostgreSQL connections are then cut (what a
    PostgreSQL restart does to them). The in-flight request is answered 503 + Retry-After, and the next ones work."""
    import asyncio
    import threading

    import asyncpg

    running = start_server(tmp_path / "data", f"--storage_url={postgres_url}")
    try:
        admin = running.admin()
        assert admin.put(f"{running.url}/admin/databases?name=outage").status_code == 201
        answers: list[requests.Response] = []

        async def cut() -> None:
            holder = await asyncpg.connect(postgres_url)
            try:
                async with holder.transaction():
                    await holder.execute("SELECT 1 FROM databases WHERE key = 'outage' FOR UPDATE")
                    writer = threading.Thread(target=lambda: answers.append(
                        admin.put(f"{running.url}/databases/outage/docs?id=a", json={"A": 1})))
                    writer.start()
                    for _ in range(100):  # until the server's write waits on our lock
                        waiting = await holder.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'roost' "
                            "AND wait_event_type = 'Lock' AND datname = current_database()")
                        if waiting:
                            break
                        await asyncio.sleep(0.05)
                    await holder.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'roost' "
                        "AND datname = current_database()")
                    await asyncio.to_thread(writer.join, 30)
            finally:
                await holder.close()

        asyncio.run(cut())
        assert len(answers) == 1
        assert answers[0].status_code == 503, answers[0].text
        assert int(answers[0].headers["Retry-After"]) >= 1
        deadline = time.monotonic() + 20
        while True:  # the twin: once PostgreSQL is back, the same write succeeds
            retried = admin.put(f"{running.url}/databases/outage/docs?id=a", json={"A": 1})
            if retried.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert retried.status_code == 201, retried.text
    finally:
        running.stop()


def test_an_audit_entry_echoing_a_surrogate_is_written_and_verifies(tmp_path: Path) -> None:
    from roost.security.audit import AuditLog, verify

    log = AuditLog(tmp_path / "audit.log")
    log.record("auth.refused", Reason="Origin 'https://\udcff.example'")
    log.record("auth.refused", Reason="plain")
    assert verify(tmp_path / "audit.log").ok
    assert [e["Reason"] for e in log.entries()] == ["Origin 'https://\udcff.example'", "plain"]


def test_a_bad_head_with_a_body_still_coming_gets_its_400(server: RunningServer) -> None:
    """aiohttp refuses a control character in a header value with a 400 and closed at once: a client still
    sending its body then met a reset and never read the answer (found by the fuzzer: a dropped connection)."""
    body = b"x" * (4 << 20)
    for head in (b"PUT /databases/x/docs?id=a HTTP/1.1\r\nHost: localhost\r\nIf-Match: a\x1db\r\n",
                 b"PUT /databases/x/docs?id=a HTTP/1.1\r\nHost: localhost\r\nIf-Match: ab\r\n"):  # and its twin
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as plain, \
                _tls(server, certificate=True).wrap_socket(plain, server_hostname="localhost") as tls:
            tls.sendall(head + b"Content-Length: %d\r\nContent-Type: application/json\r\n\r\n" % len(body))
            sent_error: Exception | None = None
            try:
                for start in range(0, len(body), 256 * 1024):
                    tls.sendall(body[start:start + 256 * 1024])
            except (OSError, ssl.SSLError) as exc:  # the server may stop reading: what matters is the answer
                sent_error = exc
            data = b""
            while b"\r\n\r\n" not in data:
                try:
                    chunk = tls.recv(65536)
                except (ConnectionResetError, ssl.SSLError) as exc:
                    raise AssertionError(f"no answer: {exc!r} (sending: {sent_error!r})") from exc
                if not chunk:
                    break
                data += chunk
        status = data.split(b"\r\n", 1)[0]
        assert status.startswith(b"HTTP/1.") and status.split(b" ")[1].startswith(b"4"), (head, data[:200], sent_error)
