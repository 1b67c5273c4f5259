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


# Nodes: registration, topology, remove-node (issue 14) --------------------------------------------------------


def _server_pem(node: RunningServer) -> Path:
    """The node's own server certificate and key as one PEM, to present it as a client (as another node would)."""
    pem = node.data_dir.parent / f"{node.data_dir.name}-server.pem"
    pem.write_bytes((node.certs_dir / "server.crt").read_bytes() + (node.certs_dir / "server.key").read_bytes())
    pem.chmod(0o600)
    return pem


def _members(node: RunningServer) -> dict[str, str]:
    topology = node.admin().get(f"{node.url}/cluster/topology")
    assert topology.status_code == 200, topology.text
    return dict(topology.json()["Topology"]["Members"])


def test_every_node_lists_every_live_node_with_its_url_and_tag(three_nodes: list[RunningServer]) -> None:
    a, b, c = three_nodes
    expected = {"A": a.url, "B": b.url, "C": c.url}
    for node in three_nodes:
        assert _members(node) == expected
        cluster = node.admin().get(f"{node.url}/cluster/topology").json()
        assert cluster["NodeTag"] == {v: k for k, v in expected.items()}[node.url]
        database = node.admin().get(f"{node.url}/topology").json()
        assert {(n["ClusterTag"], n["Url"]) for n in database["Nodes"]} == set(expected.items())
        assert database["Nodes"][0]["Url"] == node.url  # this node first: the client's preferred node
    # A node's server certificate is a cluster node on every other node.
    for node in (a, c):
        whoami = node.session(_server_pem(b)).get(f"{node.url}/certificates/whoami")
        assert whoami.status_code == 200, whoami.text
        assert whoami.json()["SecurityClearance"] == "ClusterNode"


def test_a_node_keeps_its_tag_across_restarts_and_a_taken_tag_is_refused(
    tmp_path: Path, postgres_url: str,
) -> None:
    ca_dir = tmp_path / "cluster-ca"
    a = _node(tmp_path / "a", postgres_url, ca_dir)
    b = _node(tmp_path / "b", postgres_url, ca_dir)
    try:
        assert set(_members(a)) == {"A", "B"}
        b.stop()
        assert set(_members(a)) == {"A"}, "a stopped node is no longer live"
        b = _node(tmp_path / "b", postgres_url, ca_dir)
        assert _members(a) == {"A": a.url, "B": b.url}, "B again, not the first free letter"
        with pytest.raises(RuntimeError, match="belongs to another node"):
            start_server(tmp_path / "d", f"--storage_url={postgres_url}", f"--Security.Ca.Path={ca_dir}",
                         "--node_tag=B", timeout=60)
        d = start_server(tmp_path / "d", f"--storage_url={postgres_url}", f"--Security.Ca.Path={ca_dir}",
                         "--node_tag=Q")
        try:
            assert set(_members(a)) == {"A", "B", "Q"}
        finally:
            d.stop()
    finally:
        a.stop()
        b.stop()


def test_remove_node_drops_it_from_the_topology_and_revokes_its_server_certificate(
    three_nodes: list[RunningServer], tmp_path: Path, postgres_url: str,
) -> None:
    import subprocess
    import sys

    a, b, c = three_nodes
    c_server = _server_pem(c)
    assert a.session(c_server).get(f"{a.url}/certificates/whoami").status_code == 200
    # An Operator may not remove a node; nor may anyone remove the node answering.
    operator = a.generate("ops", "Operator")
    refused = a.session(operator.pem_path).delete(f"{a.url}/admin/cluster/node", params={"nodeTag": "C"})
    assert refused.status_code == 403, refused.text
    assert set(_members(a)) == {"A", "B", "C"}
    assert a.admin().delete(f"{a.url}/admin/cluster/node", params={"nodeTag": "A"}).status_code == 400
    assert a.admin().delete(f"{a.url}/admin/cluster/node", params={"nodeTag": "Z"}).status_code == 404
    assert set(_members(a)) == {"A", "B", "C"}

    # Keep-alive connections presenting C's server certificate to A and B, then the CLI removes C through A.
    connections = [_keep_alive(node, c_server) for node in (a, b)]
    assert [_get(conn, "/certificates/whoami")[0] for conn in connections] == [200, 200]
    removed = subprocess.run(
        [sys.executable, "-m", "roost", "cluster", "remove-node", "C", "--url", a.url, "--cert", str(a.admin_pem),
         "--ca", str(a.ca_pem)], capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert "Removed node C" in removed.stdout and "Revoked its server certificate" in removed.stdout
    # At once, on every node: C is gone from the topology and its certificate is refused on the next request.
    for node in (a, b):
        assert _members(node) == {"A": a.url, "B": b.url}
    for conn in connections:
        status, body = _get(conn, "/certificates/whoami")
        assert status == 403, body
    assert a.session(c_server).get(f"{a.url}/certificates/whoami").status_code == 403
    assert b.session(c_server).get(f"{b.url}/certificates/whoami").status_code == 403
    assert c.wait_for_output("was removed from the cluster")
    assert set(_members(a)) == {"A", "B"}, "the removed node does not register itself again"
    # Restarted with the revoked certificate, it refuses to join.
    c.stop()
    with pytest.raises(RuntimeError, match="was revoked when the node was removed"):
        _node(c.data_dir, postgres_url, tmp_path / "cluster-ca")


def test_the_export_holds_every_nodes_server_certificate(three_nodes: list[RunningServer]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import pkcs12

    a, b, c = three_nodes
    exported = a.admin().get(f"{a.url}/admin/certificates/export")
    assert exported.status_code == 200, exported.text
    assert "ClusterCertificatesCollection.pfx" in exported.headers["Content-Disposition"]
    key, cert, extra = pkcs12.load_key_and_certificates(exported.content, None)
    assert key is None, "no private key in the export"
    certificates = [*([cert] if cert else []), *extra]
    on_disk = {node.url: x509.load_pem_x509_certificate((node.certs_dir / "server.crt").read_bytes())
               for node in three_nodes}
    assert sorted(x.fingerprint(hashes.SHA1()) for x in certificates) == sorted(
        x.fingerprint(hashes.SHA1()) for x in on_disk.values())
    # An Operator may export (RavenDB's level); a ValidUser may not.
    user = a.generate("plain", "ValidUser")
    assert a.session(user.pem_path).get(f"{a.url}/admin/certificates/export").status_code == 403


class _User:
    def __init__(self, name: str | None = None, Id: str | None = None) -> None:  # the client fills Id
        self.name = name
        self.Id = Id


def test_the_ravendb_client_fails_over_to_another_node_when_its_node_is_killed(
    three_nodes: list[RunningServer],
) -> None:
    from ravendb import DocumentStore
    from ravendb.serverwide.database_record import DatabaseRecord
    from ravendb.serverwide.operations.common import CreateDatabaseOperation

    a, b, c = three_nodes
    store = DocumentStore(urls=[a.url], database="failover")
    store.certificate_pem_path = str(a.admin_pem)
    store.trust_store_path = str(a.ca_pem)
    store.initialize()
    try:
        store.maintenance.server.send(CreateDatabaseOperation(DatabaseRecord("failover")))
        with store.open_session() as session:
            session.store(_User("before"), "users/1")
            session.save_changes()
            nodes = store.get_request_executor().topology_nodes
            assert [(n.cluster_tag, n.url) for n in nodes][0] == ("A", a.url)
            assert {n.url for n in nodes} == {a.url, b.url, c.url}, "the client learned every node"
            a.process.kill()  # kill -9, mid-session
            a.process.wait()
            # The session's next store and load go to another node, without an error reaching the user.
            session.store(_User("after"), "users/2")
            session.save_changes()
            assert session.load("users/1", _User).name == "before"
        with store.open_session() as session:
            assert session.load("users/2", _User).name == "after"
    finally:
        store.close()
    # Stored through the cluster: B and C both serve it.
    for node in (b, c):
        read = node.admin().get(f"{node.url}/databases/failover/docs", params={"id": "users/2"})
        assert read.status_code == 200, read.text


def test_an_allowlist_change_on_a_applies_on_b_and_c_at_once(three_nodes: list[RunningServer]) -> None:
    from test_allowlist import handshake_bytes, session_from

    a, b, c = three_nodes
    others = {node.url: session_from(node, "127.0.0.2") for node in (b, c)}
    for node in (b, c):  # keep-alive connections from 127.0.0.2, open before the change
        assert others[node.url].get(f"{node.url}/certificates/whoami").status_code == 200
    changed = a.admin().put(f"{a.url}/admin/security/allowed-ips", json={"AllowedIPs": ["127.0.0.1"]})
    assert changed.status_code == 200, changed.text
    for node in (b, c):
        # The very next request and the very next connection, without retries.
        refused = others[node.url].get(f"{node.url}/certificates/whoami")
        assert refused.status_code == 403, refused.text
        assert "127.0.0.2 is not allowed" in refused.json()["Message"]
        assert handshake_bytes(node, "127.0.0.2") == b""
        assert handshake_bytes(node, "127.0.0.1")[:1] == b"\x16"
        assert node.admin().get(f"{node.url}/admin/security/allowed-ips").json()["AllowedIPs"] == ["127.0.0.1"]
    # Cleared on C: everyone again on A and B at once.
    assert c.admin().put(f"{c.url}/admin/security/allowed-ips", json={"AllowedIPs": []}).status_code == 200
    for node in (a, b):
        assert handshake_bytes(node, "127.0.0.2")[:1] == b"\x16"


# The server-certificate replacement across nodes (RavenDB's protocol, reference section 7) ----------------------


def _cluster_server_pfx(ca_dir: Path) -> tuple[bytes, str]:
    """A new server certificate from the cluster's CA (clients keep verifying it), as a .pfx with a password."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from roost.pki import packages
    from roost.pki.authority import CertificateAuthority, default_server_hosts

    authority = CertificateAuthority.from_pem((ca_dir / "ca.crt").read_bytes(), (ca_dir / "ca.key").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = authority.issue_server(key, default_server_hosts())
    pfx = packages.pfx_bytes("cluster", cert, key, "s3cret", [authority.certificate])
    return pfx, hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def _served(node: RunningServer) -> str:
    """The thumbprint a new TLS handshake with the node shows."""
    from test_server_certificate import served_thumbprint

    return served_thumbprint(node)


def _replace_cluster_cert(node: RunningServer, pfx: bytes, *, immediately: bool) -> requests.Response:
    import base64

    return node.admin().post(f"{node.url}/admin/certificates/replace-cluster-cert",
                             params={"replaceImmediately": "true" if immediately else "false"},
                             json={"Certificate": base64.b64encode(pfx).decode(), "Password": "s3cret"})


def _status(node: RunningServer) -> requests.Response:
    return node.admin().get(f"{node.url}/admin/certificates/replacement/status")


def _until(condition: object, what: str, seconds: float = 30.0) -> None:
    """Wait for a cluster step that happens after the answer (no timing is asserted: the deadline only ends a hang)."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_replacement_confirmed_by_every_node_swaps_on_every_node(
    three_nodes: list[RunningServer], tmp_path: Path,
) -> None:
    a, b, c = three_nodes
    olds = {node.url: _served(node) for node in three_nodes}
    pfx, thumbprint = _cluster_server_pfx(tmp_path / "cluster-ca")
    # Refusals first: an Operator, and garbage; neither starts a replacement.
    operator = a.generate("ops", "Operator")
    assert operator and a.session(operator.pem_path).post(
        f"{a.url}/admin/certificates/replace-cluster-cert", json={"Certificate": "AAAA"}).status_code == 403
    assert b.admin().post(f"{b.url}/admin/certificates/replace-cluster-cert",
                          json={"Certificate": "bm90IGEgcGZ4"}).status_code == 400
    assert _status(a).status_code == 404
    assert a.session(operator.pem_path).get(f"{a.url}/admin/certificates/replacement/status").status_code == 403

    started = _replace_cluster_cert(b, pfx, immediately=False)
    assert started.status_code == 201, started.text
    assert started.json()["Thumbprint"] == thumbprint
    _until(lambda: all(_served(node) == thumbprint for node in three_nodes), "every node swaps")
    _until(lambda: _status(a).status_code == 404, "the finished replacement is deleted")
    for node in three_nodes:
        # The nodes trust each other's new certificate, and the old ones stay ClusterNode until deleted.
        assert node.admin().get(f"{node.url}/certificates/whoami").status_code == 200
        listed = node.admin().get(f"{node.url}/admin/certificates", params={"thumbprint": olds[node.url]})
        assert listed.status_code == 200 and "Old Server Certificate" in listed.text
    exported = a.admin().get(f"{a.url}/admin/certificates/export")
    assert thumbprint.lower() in {_thumbprint_of(x) for x in _pfx_certificates(exported.content)}


def _pfx_certificates(pfx: bytes) -> list[object]:
    from cryptography.hazmat.primitives.serialization import pkcs12

    _, cert, extra = pkcs12.load_key_and_certificates(pfx, None)
    return [*([cert] if cert else []), *extra]


def _thumbprint_of(cert: object) -> str:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA1()).hex()  # type: ignore[attr-defined]


def test_with_one_node_down_no_node_swaps_until_three_days_before_expiry(
    three_nodes: list[RunningServer], tmp_path: Path, postgres_url: str,
) -> None:
    from cryptography import x509

    a, b, c = three_nodes
    ca_dir = tmp_path / "cluster-ca"
    olds = {node.url: _served(node) for node in three_nodes}
    c.stop()  # still a member of the cluster: the replacement waits for it
    pfx, thumbprint = _cluster_server_pfx(ca_dir)
    assert _replace_cluster_cert(a, pfx, immediately=False).status_code == 201
    _until(lambda: _status(a).json()["Confirmations"] == 2, "A and B confirm")
    status = _status(b).json()
    assert (status["Confirmations"], status["Replaced"], status["Thumbprint"]) == (2, 0, thumbprint)
    assert {n["Tag"]: (n["Confirmed"], n["Replaced"]) for n in status["Nodes"]} == {
        "A": (True, False), "B": (True, False), "C": (False, False)}
    assert "Certificate" not in status and "s3cret" not in _status(b).text
    time.sleep(3 * 2.0)  # several polls of every node (POLL_SECONDS): still nobody swaps
    assert [_served(node) for node in (a, b)] == [olds[a.url], olds[b.url]]

    # The clock moved (roost.clock's offset, the only mock) to 2 days before A's and B's certificates expire.
    not_after = x509.load_pem_x509_certificate((a.certs_dir / "server.crt").read_bytes()).not_valid_after_utc
    import datetime as dt

    offset = int((not_after - dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).total_seconds())
    moved = []
    for node in (a, b):
        node.stop()
        moved.append(start_server(node.data_dir, f"--storage_url={postgres_url}", f"--Security.Ca.Path={ca_dir}",
                                  f"--test_clock_offset_seconds={offset}", "--Security.Certificate.RenewBeforeDays=1"))
    try:
        _until(lambda: all(_served(node) == thumbprint for node in moved), "A and B swap 3 days before expiry")
        _until(lambda: _status(moved[0]).json()["Replaced"] == 2, "A and B report that they replaced")
        assert _status(moved[1]).json()["Confirmations"] == 2
        # C comes back: it confirms, every node has confirmed, so it swaps too, and the replacement is done.
        back = _node(c.data_dir, postgres_url, ca_dir)
        try:
            _until(lambda: _served(back) == thumbprint, "C swaps once it confirms")
            _until(lambda: _status(moved[0]).status_code == 404, "the finished replacement is deleted")
        finally:
            back.stop()
    finally:
        for node in moved:
            node.stop()


def test_replace_immediately_swaps_at_once_without_waiting_for_a_node_that_is_down(
    three_nodes: list[RunningServer], tmp_path: Path, postgres_url: str,
) -> None:
    a, b, c = three_nodes
    c.stop()
    pfx, thumbprint = _cluster_server_pfx(tmp_path / "cluster-ca")
    assert _replace_cluster_cert(a, pfx, immediately=True).status_code == 201
    assert _served(a) == thumbprint, "the node that was asked swaps before it answers"
    _until(lambda: _served(b) == thumbprint, "B swaps as soon as it confirms")
    _until(lambda: _status(a).json()["Replaced"] == 2, "A and B report that they replaced")
    assert _status(b).json()["ReplaceImmediately"] is True
    back = _node(c.data_dir, postgres_url, tmp_path / "cluster-ca")
    try:
        _until(lambda: _served(back) == thumbprint, "C swaps when it starts again")
        _until(lambda: _status(a).status_code == 404, "the finished replacement is deleted")
    finally:
        back.stop()


def test_a_node_that_missed_the_removal_never_accepts_the_removed_certificate(
    three_nodes: list[RunningServer], postgres_url: str,
) -> None:
    a, b, c = three_nodes
    connection = _keep_alive(b, _server_pem(c))
    assert _get(connection, "/certificates/whoami")[0] == 200
    # B's notification channel is cut; C is removed while B does not listen.
    assert _terminate_listener(postgres_url, b) == 1
    assert a.admin().delete(f"{a.url}/admin/cluster/node", params={"nodeTag": "C"}).status_code == 200
    statuses = []
    while not statuses or statuses[-1] != 403:
        statuses.append(_get(connection, "/certificates/whoami")[0])
        assert statuses[-1] in (403, 503), statuses  # closed while reconnecting, then refused: never 200
        assert len(statuses) < 2000, statuses
        time.sleep(0.01)
    assert set(_members(b)) == {"A", "B"}
    assert b.admin().get(f"{b.url}/certificates/whoami").status_code == 200


def test_a_replacement_waiting_for_a_node_can_be_abandoned_by_a_cluster_admin_only(
    nodes: tuple[RunningServer, RunningServer], tmp_path: Path,
) -> None:
    a, b = nodes
    old = _served(a)
    b.stop()
    pfx, _ = _cluster_server_pfx(tmp_path / "cluster-ca")
    assert _replace_cluster_cert(a, pfx, immediately=False).status_code == 201
    assert _status(a).json()["Confirmations"] == 1
    operator = a.generate("ops", "Operator")
    reset = f"{a.url}/admin/certificates/replacement/reset"
    assert a.session(operator.pem_path).post(reset).status_code == 403
    assert _status(a).status_code == 200, "an Operator's refused reset changed nothing"
    assert a.admin().post(reset).status_code == 204
    assert _status(a).status_code == 404
    assert a.admin().post(reset).status_code == 404
    time.sleep(2 * 2.0)  # polls of A (POLL_SECONDS): nothing left to swap to
    assert _served(a) == old


def test_a_killed_node_leaves_the_live_topology_and_comes_back_with_its_tag(
    three_nodes: list[RunningServer], tmp_path: Path, postgres_url: str,
) -> None:
    a, b, c = three_nodes
    b.process.kill()  # kill -9: no goodbye, only the missing heartbeat tells
    b.process.wait()
    _until(lambda: set(_members(a)) == {"A", "C"}, "B is no longer live once its heartbeat stops")
    everyone = a.admin().get(f"{a.url}/cluster/topology").json()["Topology"]["AllNodes"]
    assert set(everyone) == {"A", "B", "C"}, "a dead node stays a member until removed"
    assert {n["ClusterTag"] for n in c.admin().get(f"{c.url}/topology").json()["Nodes"]} == {"A", "C"}
    again = _node(b.data_dir, postgres_url, tmp_path / "cluster-ca")
    try:
        assert _members(a) == {"A": a.url, "B": again.url, "C": c.url}
        assert a.session(_server_pem(again)).get(f"{a.url}/certificates/whoami").status_code == 200
    finally:
        again.stop()


def test_the_ravendb_client_learns_of_a_node_that_joined_through_refresh_topology(
    nodes: tuple[RunningServer, RunningServer], tmp_path: Path, postgres_url: str,
) -> None:
    from ravendb import DocumentStore
    from ravendb.serverwide.database_record import DatabaseRecord
    from ravendb.serverwide.operations.common import CreateDatabaseOperation

    a, b = nodes
    store = DocumentStore(urls=[a.url], database="joined")
    store.certificate_pem_path = str(a.admin_pem)
    store.trust_store_path = str(a.ca_pem)
    store.initialize()
    c = None
    try:
        store.maintenance.server.send(CreateDatabaseOperation(DatabaseRecord("joined")))
        with store.open_session() as session:
            assert session.load("users/none", _User) is None
        assert {n.cluster_tag for n in store.get_request_executor().topology_nodes} == {"A", "B"}
        # A client whose topology is current is not asked to refresh it.
        etag = a.admin().get(f"{a.url}/topology", params={"name": "joined"}).json()["Etag"]
        current = a.admin().get(f"{a.url}/certificates/whoami", headers={"Topology-Etag": f'"{etag}"'})
        assert "Refresh-Topology" not in current.headers
        c = _node(tmp_path / "c", postgres_url, tmp_path / "cluster-ca")
        stale = a.admin().get(f"{a.url}/certificates/whoami", headers={"Topology-Etag": f'"{etag}"'})
        assert stale.headers.get("Refresh-Topology") == "true"
        # The client's next request is told, and it fetches the topology again.
        with store.open_session() as session:
            assert session.load("users/none", _User) is None
        _until(lambda: {n.cluster_tag for n in store.get_request_executor().topology_nodes} == {"A", "B", "C"},
               "the client refreshes its topology")
    finally:
        store.close()
        if c is not None:
            c.stop()


def test_the_cli_replaces_when_every_node_confirmed_shows_progress_and_abandons(
    nodes: tuple[RunningServer, RunningServer], tmp_path: Path,
) -> None:
    import subprocess
    import sys

    a, b = nodes
    old = _served(a)
    b.stop()
    pfx, thumbprint = _cluster_server_pfx(tmp_path / "cluster-ca")
    (tmp_path / "new.pfx").write_bytes(pfx)
    (tmp_path / "pass.txt").write_text("s3cret\n")
    server = ["--url", a.url, "--cert", str(a.admin_pem), "--ca", str(a.ca_pem)]

    def roost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "roost", *args, *server], capture_output=True, text=True,
                              timeout=60)

    sent = roost("server-cert", "replace", str(tmp_path / "new.pfx"), "--password-file", str(tmp_path / "pass.txt"),
                 "--when-every-node-confirmed")
    assert sent.returncode == 0, sent.stderr
    assert f"Server certificate {thumbprint} sent to every node: 1 of 2 confirmed, 0 replaced" in sent.stdout
    assert _served(a) == old
    shown = roost("cluster", "replacement")
    assert shown.returncode == 0, shown.stderr
    assert "once every node has confirmed" in shown.stdout
    assert "  A  confirmed" in shown.stdout and "  B  waiting" in shown.stdout
    abandoned = roost("cluster", "replacement", "--reset")
    assert abandoned.returncode == 0 and "abandoned" in abandoned.stdout, abandoned.stderr
    assert "No server-certificate replacement is under way." in roost("cluster", "replacement").stdout
    assert roost("cluster", "replacement", "--reset").returncode == 1  # nothing to abandon: the server's 404


@pytest.mark.xfail(reason="known gap (issue 14): a node paused while its channel was cut and a revocation committed "
                          "serves the request already waiting when it resumes, before it notices the lost channel; "
                          "closing it needs leases (a write waits for every live node's acknowledgement, or for the "
                          "lease to run out)", strict=False)
def test_a_paused_node_that_missed_a_revocation_refuses_the_request_waiting_when_it_resumes(
    three_nodes: list[RunningServer], postgres_url: str,
) -> None:
    import os
    import signal

    a, b, c = three_nodes
    client = a.generate("paused", "ValidUser")
    by_certificate = _keep_alive(b, client.pem_path)
    by_node = _keep_alive(b, _server_pem(c))
    assert _get(by_certificate, "/certificates/whoami")[0] == 200
    assert _get(by_node, "/certificates/whoami")[0] == 200
    os.kill(b.process.pid, signal.SIGSTOP)  # a long pause (a VM freeze, swapping) while the cluster moves on
    try:
        assert _terminate_listener(postgres_url, b) == 1
        assert a.admin().delete(f"{a.url}/admin/certificates",
                                params={"thumbprint": client.thumbprint}).status_code == 204
        assert a.admin().delete(f"{a.url}/admin/cluster/node", params={"nodeTag": "C"}).status_code == 200
        for connection in (by_certificate, by_node):
            connection.request("GET", "/certificates/whoami")  # waiting in B's socket when it resumes
    finally:
        os.kill(b.process.pid, signal.SIGCONT)
    statuses = []
    for connection in (by_certificate, by_node):
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    assert 200 not in statuses, statuses
