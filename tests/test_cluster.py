"""Two ``roost serve`` processes sharing one PostgreSQL database and one CA directory (docs/storage.md).

A certificate written or deleted on node A takes effect on node B at once (PostgreSQL LISTEN/NOTIFY), and a node
that lost the notification channel reloads everything before it serves another request.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import requests

from conftest import RunningServer, start_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _node(data_dir: Path, postgres_url: str, ca_dir: Path | None) -> RunningServer:
    args = [f"--storage_url={postgres_url}"]
    if ca_dir is not None:
        args.append(f"--Security.Ca.Path={ca_dir}")
    return start_server(data_dir, *args)


@pytest.fixture
def nodes(tmp_path: Path, postgres_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    ca_dir = tmp_path / "cluster-ca"
    a = _node(tmp_path / "a", postgres_url, ca_dir)
    try:
        b = _node(tmp_path / "b", postgres_url, ca_dir)
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def _keep_alive(node: RunningServer, pem: Path) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(node.ca_pem))
    context.load_cert_chain(str(pem))
    connection = http.client.HTTPSConnection("localhost", node.port, context=context)
    connection.connect()
    return connection


def _get(connection: http.client.HTTPSConnection, path: str) -> tuple[int, dict[str, object]]:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    return response.status, (json.loads(body) if body else {})


def test_nodes_share_one_ca(nodes: tuple[RunningServer, RunningServer]) -> None:
    a, b = nodes
    assert a.ca_pem.read_bytes() == b.ca_pem.read_bytes()
    assert (a.ca_pem.parent.parent.parent / "cluster-ca" / "ca.key").stat().st_mode & 0o077 == 0
    assert not (b.certs_dir / "ca.key").exists(), "the shared CA's key stays in the CA directory"


def test_certificate_generated_on_a_authenticates_on_b_and_deletion_bites_at_once(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    a, b = nodes
    client = a.generate("cluster-app", "ValidUser", {"Orders": "ReadWrite"})
    # Immediately, without retries: B learned it from the notification (or from storage at start).
    whoami = b.session(client.pem_path).get(f"{b.url}/certificates/whoami")
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["Thumbprint"] == client.thumbprint

    # A keep-alive connection to B, then deletion on A: B refuses the very next request on that connection.
    connection = _keep_alive(b, client.pem_path)
    assert _get(connection, "/certificates/whoami")[0] == 200
    deleted = a.admin().delete(f"{a.url}/admin/certificates", params={"thumbprint": client.thumbprint})
    assert deleted.status_code == 204, deleted.text
    status, body = _get(connection, "/certificates/whoami")
    assert status == 403, body
    assert "is unknown to the server" in str(body["Message"])
    # And on a new connection too; A's own admin certificate still works on B.
    assert b.session(client.pem_path).get(f"{b.url}/certificates/whoami").status_code == 403
    assert b.admin().get(f"{b.url}/certificates/whoami").status_code == 200
    assert a.session(b.admin_pem).get(f"{a.url}/certificates/whoami").status_code == 200


def test_permission_change_on_a_applies_on_b(nodes: tuple[RunningServer, RunningServer]) -> None:
    a, b = nodes
    assert a.admin().put(f"{a.url}/admin/databases", params={"name": "shared"}).status_code == 201
    client = a.generate("reader", "ValidUser", {"shared": "Read"})
    user_b = b.session(client.pem_path)
    assert user_b.get(f"{b.url}/databases/shared/docs", params={"id": "x"}).status_code == 404
    assert user_b.put(f"{b.url}/databases/shared/docs", params={"id": "x"}, json={"v": 1}).status_code == 403

    # Deleting the database on A removes it from the certificate's permissions on B as well.
    assert a.admin().delete(f"{a.url}/admin/databases", json={"DatabaseNames": ["shared"], "HardDelete": True},
                            ).status_code in (200, 204)
    assert a.admin().put(f"{a.url}/admin/databases", params={"name": "shared"}).status_code == 201
    refused = user_b.get(f"{b.url}/databases/shared/docs", params={"id": "x"})
    assert refused.status_code == 403, refused.text


def test_without_a_shared_ca_a_generated_certificate_fails_on_the_other_node(
    tmp_path: Path, postgres_url: str,
) -> None:
    """Why Security.Ca.Path exists: each node's own CA is unknown to the other, so the TLS handshake fails."""
    a = _node(tmp_path / "a", postgres_url, None)
    try:
        b = _node(tmp_path / "b", postgres_url, None)
        try:
            client = a.generate("lonely", "ValidUser")
            assert a.session(client.pem_path).get(f"{a.url}/certificates/whoami").status_code == 200
            with pytest.raises(requests.exceptions.ConnectionError):
                b.session(client.pem_path).get(f"{b.url}/certificates/whoami")
            # Registered in the shared storage all the same: B's own admin sees it.
            listed = b.admin().get(f"{b.url}/admin/certificates", params={"thumbprint": client.thumbprint})
            assert listed.status_code == 200 and client.thumbprint in listed.text
        finally:
            b.stop()
    finally:
        a.stop()


def _terminate_listener(postgres_url: str, node: RunningServer) -> int:
    async def run() -> int:
        connection = await asyncpg.connect(postgres_url)
        try:
            return int(await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = $1",
                f"roost certificate listener (pid {node.process.pid})",
            ))
        finally:
            await connection.close()

    return asyncio.run(run())


def test_a_node_that_lost_notifications_reloads_before_serving(
    nodes: tuple[RunningServer, RunningServer], postgres_url: str,
) -> None:
    a, b = nodes
    client = a.generate("missed", "ValidUser")
    assert b.session(client.pem_path).get(f"{b.url}/certificates/whoami").status_code == 200
    connection = _keep_alive(b, client.pem_path)
    assert _get(connection, "/certificates/whoami")[0] == 200

    # B's listener loses its channel; the deletion's notification is sent while B does not listen.
    assert _terminate_listener(postgres_url, b) == 1
    deleted = a.admin().delete(f"{a.url}/admin/certificates", params={"thumbprint": client.thumbprint})
    assert deleted.status_code == 204

    # B never serves the deleted certificate: 503 while it reconnects, then 403 once reloaded.
    statuses = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, _ = _get(connection, "/certificates/whoami")
        statuses.append(status)
        if status == 403:
            break
        assert status == 503, statuses
        time.sleep(0.1)
    assert statuses[-1] == 403, statuses
    # The node recovers: valid certificates work again, and new notifications arrive.
    assert b.admin().get(f"{b.url}/certificates/whoami").status_code == 200
    later = a.generate("after-reconnect", "ValidUser")
    assert b.session(later.pem_path).get(f"{b.url}/certificates/whoami").status_code == 200
    a.admin().delete(f"{a.url}/admin/certificates", params={"thumbprint": later.thumbprint})
    assert b.session(later.pem_path).get(f"{b.url}/certificates/whoami").status_code == 403


def _self_signed_client(tmp_path: Path, name: str) -> tuple[str, Path, str]:
    """A client certificate from outside Roost (base64 DER for the upload, PEM file with key, thumbprint)."""
    import base64
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = tmp_path / f"{name}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der).decode(), pem, cert.fingerprint(hashes.SHA1()).hex().upper()


def test_certificate_uploaded_on_a_passes_tls_on_b(nodes: tuple[RunningServer, RunningServer], tmp_path: Path) -> None:
    a, b = nodes
    encoded, pem, thumbprint = _self_signed_client(tmp_path, "outside")
    # Before the upload B does not know the issuer: the handshake fails (the documented limit).
    with pytest.raises(requests.exceptions.ConnectionError):
        b.session(pem).get(f"{b.url}/certificates/whoami")
    uploaded = a.admin().put(f"{a.url}/admin/certificates",
                             json={"Name": "outside", "Certificate": encoded, "SecurityClearance": "ValidUser",
                                   "Permissions": {}})
    assert uploaded.status_code == 201, uploaded.text
    whoami = b.session(pem).get(f"{b.url}/certificates/whoami")
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["Thumbprint"] == thumbprint
    a.admin().delete(f"{a.url}/admin/certificates", params={"thumbprint": thumbprint})
    assert b.session(pem).get(f"{b.url}/certificates/whoami").status_code == 403


# Three nodes: every guarantee on every node (issue 14) --------------------------------------------------------


@pytest.fixture
def three_nodes(tmp_path: Path, postgres_url: str) -> Iterator[list[RunningServer]]:
    ca_dir = tmp_path / "cluster-ca"
    started: list[RunningServer] = []
    try:
        for name in "abc":
            started.append(_node(tmp_path / name, postgres_url, ca_dir))
        yield started
    finally:
        for node in started:
            node.stop()


def _totp(secret: str, offset: float = 0.0) -> str:
    import pyotp

    return pyotp.TOTP(secret).at(time.time() + offset)


def _enrol(node: RunningServer, name: str) -> tuple[Path, str]:
    secret = node.admin().get(f"{node.url}/admin/certificates/2fa/generate").json()["Secret"]
    return node.generate(name, "ValidUser", TwoFactorAuthenticationKey=secret).pem_path, secret


def _login(node: RunningServer, pem: Path, token: str, *, limits: bool = False) -> requests.Response:
    return node.session(pem).post(f"{node.url}/authentication/2fa",
                                  params={"hasLimits": "true" if limits else "false"}, json={"Token": token})


def _whoami(node: RunningServer, pem: Path, cookies: dict[str, str] | None = None) -> int:
    return node.session(pem).get(f"{node.url}/certificates/whoami", cookies=cookies).status_code


def test_two_factor_state_is_one_for_the_whole_cluster(three_nodes: list[RunningServer]) -> None:
    a, b, c = three_nodes
    pem, secret = _enrol(a, "cluster-2fa")
    # A code accepted on A is a replay on B and on C; the session it opened holds on every node.
    right = _totp(secret)
    assert _login(a, pem, right).status_code == 202
    for node in (b, c):
        replay = _login(node, pem, right)
        assert replay.status_code == 406 and "already used" in replay.text, replay.text
        assert _whoami(node, pem) == 200
    # Logout on B ends the session on A and C at once.
    assert b.session(pem).delete(f"{b.url}/authentication/2fa").status_code in (200, 204)
    assert [_whoami(node, pem) for node in (a, b, c)] == [428, 428, 428]
    # A session with limits opened on C: its cookie works on A, no cookie is refused on A.
    opened = _login(c, pem, _totp(secret, 30), limits=True)
    assert opened.status_code == 202, opened.text
    cookie = {"2fa-cookie": opened.cookies["2fa-cookie"]}
    assert _whoami(a, pem, cookie) == 200
    assert _whoami(a, pem) != 200


def test_five_wrong_codes_in_total_across_nodes_lock_every_node(three_nodes: list[RunningServer]) -> None:
    a, b, c = three_nodes
    pem, secret = _enrol(a, "cluster-lockout")
    valid = {_totp(secret, offset) for offset in (-30, 0, 30)}
    wrong = next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)
    # Five wrong codes spread over the nodes, sent at the same time: five failures counted in one place.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(5) as pool:
        statuses = list(pool.map(lambda node: _login(node, pem, wrong).status_code, [a, b, c, a, b]))
    assert statuses == [406] * 5
    for node in (a, b, c):
        locked = _login(node, pem, _totp(secret))
        assert locked.status_code == 429, locked.text
        assert _whoami(node, pem) == 428


def test_a_database_deleted_on_a_is_refused_on_b_and_c_at_once(three_nodes: list[RunningServer]) -> None:
    a, b, c = three_nodes
    admin = a.admin()
    assert admin.put(f"{a.url}/admin/databases", params={"name": "ephemeral"}).status_code == 201
    assert admin.put(f"{a.url}/databases/ephemeral/docs", params={"id": "k/1"}, json={"v": 1}).status_code == 201
    # B and C serve it (and so hold it as known), on keep-alive connections.
    readers = {node.url: node.admin() for node in (b, c)}
    for node in (b, c):
        read = readers[node.url].get(f"{node.url}/databases/ephemeral/docs", params={"id": "k/1"})
        assert read.status_code == 200, read.text
    deleted = admin.delete(f"{a.url}/admin/databases", json={"DatabaseNames": ["ephemeral"], "HardDelete": True})
    assert deleted.status_code in (200, 204), deleted.text
    # The very next request on B and C, without retries: the database is gone, as on A.
    for node in (b, c):
        refused = readers[node.url].get(f"{node.url}/databases/ephemeral/docs", params={"id": "k/1"})
        assert refused.status_code == 503, (refused.status_code, refused.text)
        assert refused.json()["Type"].endswith("DatabaseDoesNotExistException")
        query = readers[node.url].post(f"{node.url}/databases/ephemeral/queries", json={"Query": "from @all_docs"})
        assert query.status_code == 503, query.text
    # Created again on C: A and B serve it at once.
    assert c.admin().put(f"{c.url}/admin/databases", params={"name": "ephemeral"}).status_code == 201
    for node in (a, b):
        assert node.admin().get(f"{node.url}/databases/ephemeral/docs", params={"id": "k/1"}).status_code == 404


def _bootstrap_ca(directory: str, barrier: object) -> str:
    from cryptography.hazmat.primitives import hashes

    from roost.pki import datadir

    barrier.wait()  # type: ignore[attr-defined]
    authority = datadir.load_or_create_authority(Path(directory))
    return authority.certificate.fingerprint(hashes.SHA256()).hex()


def test_processes_bootstrapping_one_empty_ca_directory_at_once_end_with_one_ca(tmp_path: Path) -> None:
    import multiprocessing

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    context = multiprocessing.get_context("spawn")
    directory = tmp_path / "shared-ca"
    directory.mkdir(mode=0o700)
    barrier = context.Manager().Barrier(6)
    with context.Pool(6) as pool:
        fingerprints = pool.starmap(_bootstrap_ca, [(str(directory), barrier)] * 6)
    on_disk = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    assert set(fingerprints) == {on_disk.fingerprint(hashes.SHA256()).hex()}


def test_two_nodes_started_at_the_same_instant_on_an_empty_ca_directory_share_one_ca(
    tmp_path: Path, postgres_url: str,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ca_dir = tmp_path / "fresh-ca"
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda name: _node(tmp_path / name, postgres_url, ca_dir), ["a", "b"]))
    try:
        a, b = started
        assert a.ca_pem.read_bytes() == b.ca_pem.read_bytes() == (ca_dir / "ca.crt").read_bytes()
        # Each node's server certificate verifies with the one CA (the admin certificates too).
        assert a.session(b.admin_pem).get(f"{a.url}/certificates/whoami").status_code == 200
        assert b.session(a.admin_pem).get(f"{b.url}/certificates/whoami").status_code == 200
    finally:
        for node in started:
            node.stop()


def test_repeated_drops_of_the_channel_reconnect_at_once_and_never_serve_a_revoked_certificate(
    nodes: tuple[RunningServer, RunningServer], postgres_url: str,
) -> None:
    a, b = nodes
    outages = []
    for trial in range(4):  # drops in a row: before, each one made the next reconnection wait longer (to 5 s)
        client = a.generate(f"drop-{trial}", "ValidUser")
        connection = _keep_alive(b, client.pem_path)
        assert _get(connection, "/certificates/whoami")[0] == 200
        dropped = time.monotonic()
        assert _terminate_listener(postgres_url, b) == 1
        # Revoked while B's channel is down: B refuses it (503 while closed, 403 once reloaded), never 200.
        assert a.admin().delete(f"{a.url}/admin/certificates",
                                params={"thumbprint": client.thumbprint}).status_code == 204
        statuses = []
        while not statuses or statuses[-1] != 403:
            statuses.append(_get(connection, "/certificates/whoami")[0])
            assert statuses[-1] in (403, 503), statuses
            assert time.monotonic() - dropped < 30, statuses
        outages.append(time.monotonic() - dropped)
        connection.close()
    print("outages after a single drop (s):", [round(o, 3) for o in outages])
    assert b.wait_for_output("reconnecting at once")
    assert sum("reconnecting at once" in line for line in b.output) == 4, b.output
    assert not any("retrying in" in line for line in b.output), b.output
