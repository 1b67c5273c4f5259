"""``roost serve --workers 2`` on SQLite: two real worker processes accept on one socket, and every guarantee holds
in both (docs/cluster.md). Which worker served a connection is read from /proc (the server side of the TCP
connection belongs to exactly one worker), so each test proves it reached both."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RunningServer, start_server

pytestmark = [pytest.mark.slow]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "data", "--workers", "2")
    yield running
    running.stop()


def _worker_pids(server: RunningServer) -> list[int]:
    return [int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in server.output if line.startswith("Worker started")]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def _worker_of(connection: http.client.HTTPSConnection, server_port: int, pids: list[int]) -> int | None:
    """The worker holding the server side of this (open) connection."""
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    inodes = {row[9] for row in rows
              if int(row[1].split(":")[1], 16) == server_port and int(row[2].split(":")[1], 16) == client_port}
    for pid in pids:
        if inodes & _socket_inodes(pid):
            return pid
    return None


def _connect(server: RunningServer, pem: Path) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    context.load_cert_chain(str(pem))
    connection = http.client.HTTPSConnection("localhost", server.port, context=context, timeout=10)
    connection.connect()
    return connection


def _request(connection: http.client.HTTPSConnection, method: str, path: str,
             body: object | None = None) -> tuple[int, dict[str, object]]:
    payload = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
    response = connection.getresponse()
    data = response.read()
    return response.status, (json.loads(data) if data else {})


def _spread(server: RunningServer, pem: Path, pids: list[int],
            expected: int = 200) -> list[tuple[http.client.HTTPSConnection, int]]:
    """Keep-alive connections (one request each) until both workers hold at least two of them."""
    held: list[tuple[http.client.HTTPSConnection, int]] = []
    for _ in range(60):
        connection = _connect(server, pem)
        status, body = _request(connection, "GET", "/certificates/whoami")
        assert status == expected, body
        worker = _worker_of(connection, server.port, pids)
        assert worker in pids
        held.append((connection, worker))
        if all(sum(w == pid for _, w in held) >= 2 for pid in pids):
            return held
    raise AssertionError(f"the connections never reached both workers: {[w for _, w in held]}")


def test_one_ready_line_and_a_revoked_or_edited_down_certificate_is_refused_at_once_in_every_worker(
    workers: RunningServer,
) -> None:
    pids = _worker_pids(workers)
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    assert sum(line.startswith("Server available on:") for line in workers.output) == 1
    admin = workers.admin()
    assert admin.put(f"{workers.url}/admin/databases", params={"name": "Orders"}).status_code == 201

    # Edited down on one worker (ReadWrite -> Read): the next write on every worker is refused.
    writer = workers.generate("w-writer", "ValidUser", {"Orders": "ReadWrite"})
    held = _spread(workers, writer.pem_path, pids)
    for connection, _ in held:
        assert _request(connection, "PUT", "/databases/Orders/docs?id=w/1", {"v": 1})[0] == 201
    edited = admin.post(f"{workers.url}/admin/certificates/edit",
                        json={"Thumbprint": writer.thumbprint, "Name": "w-writer", "SecurityClearance": "ValidUser",
                              "Permissions": {"Orders": "Read"}})
    assert edited.status_code in (200, 201, 204), edited.text
    for connection, worker in held:
        status, body = _request(connection, "PUT", "/databases/Orders/docs?id=w/1", {"v": 2})
        assert status == 403, (worker, status, body)
        assert _request(connection, "GET", "/databases/Orders/docs?id=w/1")[0] == 200

    # Deleted: the very next request on every open connection, and on fresh connections, in both workers.
    reader = workers.generate("w-reader", "ValidUser", {"Orders": "Read"})
    held = _spread(workers, reader.pem_path, pids)
    deleted = admin.delete(f"{workers.url}/admin/certificates", params={"thumbprint": reader.thumbprint})
    assert deleted.status_code == 204, deleted.text
    for connection, worker in held:
        status, body = _request(connection, "GET", "/certificates/whoami")
        assert status == 403, (worker, status, body)
    refused_by = set()
    opened = []  # kept open until the end, as _spread does: the kernel then hands new ones to the other worker too
    for _ in range(60):
        try:
            fresh = _connect(workers, reader.pem_path)
        except (ssl.SSLError, ConnectionError):
            continue  # a handshake refused outright is a refusal too
        worker = _worker_of(fresh, workers.port, pids)
        status, _ = _request(fresh, "GET", "/certificates/whoami")
        assert status == 403, (worker, status)
        refused_by.add(worker)
        opened.append(fresh)
        if refused_by == set(pids):
            break
    for fresh in opened:
        fresh.close()
    assert refused_by == set(pids), refused_by

    # A database deleted through one worker is gone in the other at once.
    assert admin.delete(f"{workers.url}/admin/databases",
                        json={"DatabaseNames": ["Orders"], "HardDelete": True}).status_code in (200, 204)
    admin_held = _spread(workers, workers.admin_pem, pids)
    for connection, worker in admin_held:
        status, body = _request(connection, "GET", "/databases/Orders/docs?id=w/1")
        assert status == 503, (worker, status, body)


def test_two_factor_state_and_the_allowlist_are_the_same_in_every_worker(workers: RunningServer) -> None:
    import pyotp

    from test_allowlist import handshake_bytes

    pids = _worker_pids(workers)
    admin = workers.admin()
    secret = admin.get(f"{workers.url}/admin/certificates/2fa/generate").json()["Secret"]
    cert = workers.generate("w-2fa", "ValidUser", TwoFactorAuthenticationKey=secret)
    held = _spread(workers, cert.pem_path, pids, expected=428)
    on = {worker: connection for connection, worker in held}
    first, second = on[pids[0]], on[pids[1]]
    code = pyotp.TOTP(secret).now()
    assert _request(first, "POST", "/authentication/2fa?hasLimits=false", {"Token": code})[0] == 202
    status, body = _request(second, "POST", "/authentication/2fa?hasLimits=false", {"Token": code})
    assert status == 406 and "already used" in str(body), body  # a replay in the other worker
    assert _request(second, "GET", "/certificates/whoami")[0] == 200  # the session holds there
    assert _request(second, "DELETE", "/authentication/2fa")[0] in (200, 204)
    assert _request(first, "GET", "/certificates/whoami")[0] == 428  # logged out in the other worker

    # The server certificate renewed through one worker: every new handshake, in both workers, presents the new one.
    import hashlib

    before = _connect(workers, workers.admin_pem)
    assert before.sock is not None
    old_der = before.sock.getpeercert(binary_form=True)
    assert old_der is not None
    before.close()
    renewed = admin.post(f"{workers.url}/admin/certificates/refresh")
    assert renewed.status_code in (200, 204), renewed.text
    presented: dict[int | None, set[str]] = {}
    for _ in range(30):
        fresh = _connect(workers, workers.admin_pem)
        assert fresh.sock is not None
        der = fresh.sock.getpeercert(binary_form=True)
        assert der is not None
        worker = _worker_of(fresh, workers.port, pids)
        presented.setdefault(worker, set()).add(hashlib.sha1(der).hexdigest().upper())
        assert _request(fresh, "GET", "/certificates/whoami")[0] == 200
        fresh.close()
        if len(presented) == 2 and all(len(v) for v in presented.values()):
            break
    assert set(presented) == set(pids), presented
    # One certificate, and not the old one.
    assert set().union(*presented.values()) - {hashlib.sha1(old_der).hexdigest().upper()} == \
        set().union(*presented.values()), presented
    assert len(set().union(*presented.values())) == 1, presented
    assert (workers.certs_dir / "server.crt").exists()

    # The allowlist changed through one worker: every new connection from an unlisted address is dropped at
    # accept(), whichever worker accepts it; a listed one still gets its handshake.
    url = f"{workers.url}/admin/security/allowed-ips"
    assert admin.put(url, json={"AllowedIPs": ["127.0.0.1"]}).status_code == 200
    assert [handshake_bytes(workers, "127.0.0.2") for _ in range(12)] == [b""] * 12
    assert all(handshake_bytes(workers, "127.0.0.1")[:1] == b"\x16" for _ in range(6))

    # The file's write lock held elsewhere past SQLite's busy timeout: a write is a 503 that changed nothing, not a
    # 500 (what another worker's long transaction, or a restore, would otherwise produce).
    import sqlite3

    holder = sqlite3.connect(workers.data_dir / "roost.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        busy = admin.put(f"{workers.url}/admin/databases", params={"name": "Locked"}, timeout=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert busy.status_code == 503, busy.text
    assert busy.headers["Retry-After"] == "1"
    assert admin.get(f"{workers.url}/databases/Locked/docs", params={"id": "x"}).status_code == 503
    assert admin.put(f"{workers.url}/admin/databases", params={"name": "Locked"}).status_code == 201


def _kill_under_load(server: RunningServer, pid: int, threads: list[threading.Thread], stop: threading.Event) -> None:
    """Run the load ``threads``, kill -9 worker ``pid`` a second in, wait for its replacement, then stop the load."""
    workers_before = len(_worker_pids(server))
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        server.wait_for_output(f"Worker {pid} exited", timeout=10)
        deadline = time.monotonic() + 20
        while len(_worker_pids(server)) <= workers_before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_a_killed_worker_is_respawned_and_only_its_in_flight_requests_are_lost(workers: RunningServer) -> None:
    pids = _worker_pids(workers)
    errors: list[str] = []
    served = [0]
    stop = threading.Event()
    clients = 3

    def load() -> None:
        while not stop.is_set():
            try:
                connection = _connect(workers, workers.admin_pem)
                status, _ = _request(connection, "GET", "/certificates/whoami")
                connection.close()
                if status == 200:
                    served[0] += 1
                else:
                    errors.append(f"status {status}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))

    _kill_under_load(workers, pids[0], [threading.Thread(target=load) for _ in range(clients)], stop)
    respawned = _worker_pids(workers)[2]
    assert served[0] > 0
    # Each client has one request in flight at a time: at most that many die with the worker.
    assert len(errors) <= clients, errors
    # The new worker serves.
    held = _spread(workers, workers.admin_pem, [pids[1], respawned])
    assert {worker for _, worker in held} == {pids[1], respawned}
    # Stopping the parent stops every worker.
    workers.stop()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in (pids[1], respawned)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids[1]) and not _alive(respawned)


def test_a_schedule_created_through_any_worker_runs_in_the_one_that_runs_schedules(
    workers: RunningServer, tmp_path: Path,
) -> None:
    from test_backups import keypair

    pids = _worker_pids(workers)
    _, public = keypair(tmp_path)
    admin = workers.admin()
    assert admin.put(f"{workers.url}/admin/databases", params={"name": "Shop"}).status_code == 201
    # Through a connection the second worker holds: the first one (index 0) runs schedules and must learn of it.
    second = next(connection for connection, worker in _spread(workers, workers.admin_pem, pids)
                  if worker == pids[1])
    folder = tmp_path / "scheduled"
    status, body = _request(second, "PUT", "/admin/backups/schedules",
                            {"Database": "Shop", "IntervalSeconds": 1, "Retention": 10, "Folder": str(folder),
                             "Recipients": [public]})
    assert status == 200, body
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(folder.glob("Shop-*.roostbackup"))) < 2:
        time.sleep(0.2)
    assert len(list(folder.glob("Shop-*.roostbackup"))) >= 2


# Four workers -------------------------------------------------------------------------------------------------


def _spread_at_once(server: RunningServer, pem: Path, pids: list[int],
                    expected: int = 200) -> list[tuple[http.client.HTTPSConnection, int]]:
    """``_spread`` for more workers: connections opened eight at a time, so that busy workers leave the accept to
    idle ones (one at a time, the kernel may hand every connection to the same few workers)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_: int) -> tuple[http.client.HTTPSConnection, int]:
        connection = _connect(server, pem)
        status, body = _request(connection, "GET", "/certificates/whoami")
        assert status == expected, body
        worker = _worker_of(connection, server.port, pids)
        assert worker in pids
        return connection, worker

    held: list[tuple[http.client.HTTPSConnection, int]] = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(40):
            held += pool.map(one, range(8))
            if all(any(w == pid for _, w in held) for pid in pids):
                return held
    raise AssertionError(f"the connections never reached every worker: {[w for _, w in held]}")


@pytest.fixture
def four_workers(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "data", "--workers", "4")
    yield running
    running.stop()


def test_four_workers_refuse_a_revoked_certificate_on_the_next_request_in_every_worker(
    four_workers: RunningServer,
) -> None:
    pids = _worker_pids(four_workers)
    assert len(pids) == 4 and sum(line.startswith("Server available on:") for line in four_workers.output) == 1
    client = four_workers.generate("four", "ValidUser")
    held = _spread_at_once(four_workers, client.pem_path, pids)
    assert {worker for _, worker in held} == set(pids)
    deleted = four_workers.admin().delete(f"{four_workers.url}/admin/certificates",
                                          params={"thumbprint": client.thumbprint})
    assert deleted.status_code == 204
    # Every held connection, in every worker, refuses its very next request.
    assert [_request(connection, "GET", "/certificates/whoami")[0] for connection, _ in held] == [403] * len(held)


def test_four_workers_a_worker_killed_under_writes_loses_nothing_acknowledged(four_workers: RunningServer) -> None:
    server = four_workers
    pids = _worker_pids(server)
    admin = server.admin()
    assert admin.put(f"{server.url}/admin/databases", params={"name": "Load"}).status_code == 201
    acknowledged: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    clients = 4

    def load(number: int) -> None:
        sequence = 0
        connection = _connect(server, server.admin_pem)
        while not stop.is_set():
            doc_id = f"load/{number}-{sequence}"
            sequence += 1
            try:
                status, _ = _request(connection, "PUT", f"/databases/Load/docs?id={doc_id}", {"n": sequence})
                if status == 201:
                    acknowledged.append(doc_id)
                else:
                    errors.append(f"status {status}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                connection.close()
                connection = _connect(server, server.admin_pem)
        connection.close()

    _kill_under_load(server, pids[2], [threading.Thread(target=load, args=(n,)) for n in range(clients)], stop)
    assert len(_worker_pids(server)) == 5, server.output  # the four, then the replacement of the killed one
    respawned = _worker_pids(server)[4]
    assert _alive(respawned) and not _alive(pids[2])
    assert acknowledged
    # Only requests in flight in the killed worker were lost: at most one per client.
    assert len(errors) <= clients, errors
    # Every acknowledged write is there, whichever worker reads it.
    for start in range(0, len(acknowledged), 200):
        ids = acknowledged[start:start + 200]
        read = admin.post(f"{server.url}/databases/Load/docs", json={"Ids": ids})
        assert read.status_code == 200, read.text
        results = read.json()["Results"]
        assert all(result is not None for result in results), [i for i, r in zip(ids, results, strict=True) if r is None]
    held = _spread_at_once(server, server.admin_pem, [p for p in pids if p != pids[2]] + [respawned])
    assert respawned in {worker for _, worker in held}
