"""kill -9 during a write storm of documents and certificates, over and over, on SQLite and on PostgreSQL.

After every kill the server restarts on the same storage: every write it acknowledged is there (documents with
their last acknowledged body, certificates it created), no certificate whose deletion it acknowledged gets in, and
the SQLite file passes PRAGMA integrity_check.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conftest import ClientCertificate, RunningServer, start_server

KILLS = 10
DATABASE = "Storm"


@dataclass
class Acknowledged:
    documents: dict[str, int] = field(default_factory=dict)  # id -> the last acknowledged value
    certificates: list[ClientCertificate] = field(default_factory=list)
    deleted: list[ClientCertificate] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _storm(server: RunningServer, acked: Acknowledged, stop: threading.Event, seed: int, tmp: Path) -> None:
    """Writes until the server dies under it; records only what got a 2xx."""
    rng = random.Random(seed)
    session = server.admin()
    url = server.url
    counter = 0
    try:
        while not stop.is_set():
            counter += 1
            choice = rng.random()
            if choice < 0.75:
                doc_id = f"items/{seed}-{rng.randrange(40)}"
                value = seed * 1_000_000 + counter
                response = session.put(f"{url}/databases/{DATABASE}/docs", params={"id": doc_id},
                                       json={"Value": value, "@metadata": {"@collection": "Items"}}, timeout=30)
                if response.status_code == 201:
                    with acked.lock:
                        acked.documents[doc_id] = value
            elif choice < 0.9 or not acked.certificates:
                name = f"storm-{seed}-{counter}"
                response = session.post(f"{url}/admin/certificates", timeout=30, json={
                    "Name": name, "SecurityClearance": "ValidUser", "Permissions": {DATABASE: "Read"}})
                if response.status_code == 200:
                    from conftest import unpack_package

                    with acked.lock:
                        acked.certificates.append(unpack_package(response.content, name, tmp))
            else:
                with acked.lock:
                    victim = acked.certificates.pop(rng.randrange(len(acked.certificates)))
                response = session.delete(f"{url}/admin/certificates", params={"thumbprint": victim.thumbprint},
                                          timeout=30)
                with acked.lock:
                    (acked.deleted if response.status_code == 204 else acked.certificates).append(victim)
    except requests.RequestException:
        return  # the kill: whatever was in flight was never acknowledged


def _check(server: RunningServer, acked: Acknowledged) -> None:
    admin = server.admin()
    ids = sorted(acked.documents)
    for start in range(0, len(ids), 100):
        chunk = ids[start:start + 100]
        # Two ids at least, so that a missing one is a null in Results rather than a 404 for the whole load.
        response = admin.get(f"{server.url}/databases/{DATABASE}/docs", params={"id": [*chunk, "items/never"]})
        assert response.status_code == 200, response.text
        found = {doc_id: result and result["Value"] for doc_id, result in zip([*chunk, "items/never"], response.json()["Results"], strict=True) if doc_id in acked.documents}
        lost = {i: (acked.documents[i], found[i]) for i in chunk if found[i] != acked.documents[i]}
        # A write acknowledged later than the one recorded can only be newer (same id, larger value).
        assert all(got is not None and got >= want for want, got in lost.values()), f"lost writes: {lost}"
    for certificate in acked.certificates[-5:]:
        assert server.session(certificate.pem_path).get(f"{server.url}/certificates/whoami").status_code == 200
    for certificate in acked.deleted:
        refused = server.session(certificate.pem_path).get(f"{server.url}/certificates/whoami")
        assert refused.status_code == 403, f"deleted {certificate.name} got {refused.status_code}"


def _integrity(data_dir: Path) -> None:
    with sqlite3.connect(data_dir / "roost.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _run(tmp_path: Path, *args: str) -> tuple[int, int, int]:
    data_dir = tmp_path / "data"
    acked = Acknowledged()
    rng = random.Random(2026)
    server = start_server(data_dir, *args)
    assert server.admin().put(f"{server.url}/admin/databases", params={"name": DATABASE}).status_code == 201
    kills = 0
    try:
        while kills < KILLS:
            stop = threading.Event()
            writers = [threading.Thread(target=_storm, args=(server, acked, stop, kills * 10 + i, tmp_path),
                                        daemon=True) for i in range(3)]
            for writer in writers:
                writer.start()
            time.sleep(rng.uniform(0.3, 1.5))  # a random point in the storm
            server.process.kill()  # SIGKILL: no shutdown code runs
            server.process.wait()
            kills += 1
            stop.set()
            for writer in writers:
                writer.join(timeout=60)
            if not args:
                _integrity(data_dir)
            server = start_server(data_dir, *args)
            _check(server, acked)
    finally:
        server.stop()
    return kills, len(acked.documents), len(acked.deleted)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_during_a_write_storm_on_sqlite(tmp_path: Path) -> None:
    kills, documents, deleted = _run(tmp_path)
    print(f"\nSQLite: {kills} kills survived, {documents} documents and {deleted} deletions acknowledged, all intact")
    assert kills == KILLS and documents > 0


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_kill_9_during_a_write_storm_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    kills, documents, deleted = _run(tmp_path, f"--storage_url={postgres_url}")
    print(f"\nPostgreSQL: {kills} kills survived, {documents} documents and {deleted} deletions acknowledged, "
          "all intact")
    assert kills == KILLS and documents > 0
