"""Backups and restores on PostgreSQL, with the file format of the SQLite store: a backup taken on SQLite restores
into a PostgreSQL cluster (every node serves it at once) and back, a restore is one transaction (a bad file changes
nothing), and schedules run on a PostgreSQL node."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import RunningServer, start_server
from test_audit_nodes import tagged_nodes
from test_backups import database_exists, fill, keypair, roost, rows

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _pg(url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    import asyncpg

    async def run() -> list[tuple[object, ...]]:
        connection = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await connection.fetch(query, *args)]
        finally:
            await connection.close()

    return asyncio.run(run())


def pg_rows(url: str, name: str) -> str:
    """``test_backups.rows`` for a PostgreSQL store: the same digest of the same columns."""
    digest = hashlib.sha256()
    for row in _pg(url, "SELECT id, collection, body, metadata, change_vector, etag, last_modified FROM documents "
                        "WHERE db = $1 ORDER BY key", name.casefold()):
        digest.update(json.dumps(list(row)).encode())
    meta = _pg(url, "SELECT database_id, last_etag FROM databases WHERE key = $1", name.casefold())
    hilo = _pg(url, "SELECT tag, max FROM hilo WHERE db = $1 ORDER BY tag", name.casefold())
    digest.update(json.dumps([list(meta[0]) if meta else None, [list(h) for h in hilo]]).encode())
    return digest.hexdigest()


def pg_everything(url: str) -> str:
    """A digest of every Roost table's rows, but what the requests themselves move: the audit heads (the refusals
    are audited) and the certificates' last-used times (flushed every few seconds)."""
    digest = hashlib.sha256()
    for table, order in (("databases", "key"), ("documents", "db, key"), ("hilo", "db, tag"),
                         ("attachment_chunks", "db, token, seq")):
        for row in _pg(url, f"SELECT * FROM {table} ORDER BY {order}"):
            digest.update(repr(row).encode())
    for row in _pg(url, "SELECT thumbprint, (definition - 'LastUsedDate')::text FROM certificates ORDER BY 1"):
        digest.update(repr(row).encode())
    for row in _pg(url, "SELECT key, value::text FROM settings WHERE key NOT LIKE 'audit.head%' ORDER BY key"):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def _extras(server: RunningServer, name: str) -> None:
    """What fill() leaves out: a non-ASCII collection, a counter and an attachment (its chunks travel too)."""
    admin = server.admin()
    url = f"{server.url}/databases/{name}"
    put = admin.put(f"{url}/docs", params={"id": "streets/1"},
                    json={"Name": "Hauptstraße", "@metadata": {"@collection": "Straße"}})
    assert put.status_code == 201, put.text
    counters = admin.post(f"{url}/counters", json={"Documents": [{"DocumentId": "streets/1", "Operations": [
        {"Type": "Increment", "CounterName": "Visits", "Delta": 7}]}]})
    assert counters.status_code == 200, counters.text
    attached = admin.put(f"{url}/attachments", params={"id": "streets/1", "name": "map.bin"},
                         data=bytes(range(256)) * 4096, headers={"Content-Type": "application/octet-stream"})
    assert attached.status_code == 201, attached.text


def _check_extras(server: RunningServer, name: str) -> None:
    admin = server.admin()
    url = f"{server.url}/databases/{name}"
    query = admin.post(f"{url}/queries", json={"Query": "from STRASSE"})
    assert query.status_code == 200 and [d["Name"] for d in query.json()["Results"]] == ["Hauptstraße"], query.text
    got = admin.get(f"{url}/attachments", params={"id": "streets/1", "name": "map.bin"})
    assert got.status_code == 200 and got.content == bytes(range(256)) * 4096
    counters = admin.get(f"{url}/counters", params={"docId": "streets/1", "counter": "Visits"})
    assert counters.status_code == 200 and counters.json()["Counters"][0]["TotalValue"] == 7, counters.text


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str) -> Iterator[tuple[RunningServer, RunningServer, str]]:
    with tagged_nodes(tmp_path, postgres_url, "AB") as (a, b):
        yield a, b, postgres_url


def _good_backup(node: RunningServer, tmp_path: Path, documents: int) -> tuple[Path, Path]:
    """``Shop`` with ``documents`` documents on ``node``, backed up to a file: (file, key)."""
    fill(node, "Shop", documents)
    key, public = keypair(tmp_path)
    good = tmp_path / "good.roostbackup"
    made = roost("backup", "create", "--data-dir", str(node.data_dir), "--db", "Shop", "--out", str(good),
                 "-r", public)
    assert made.returncode == 0, made.stderr
    return good, key


def test_a_sqlite_backup_restores_into_a_postgres_cluster_and_back(
    cluster: tuple[RunningServer, RunningServer, str], tmp_path: Path,
) -> None:
    a, b, postgres_url = cluster
    embedded = start_server(tmp_path / "sqlite")
    try:
        fill(embedded, "Shop", 40)
        _extras(embedded, "Shop")
        key, public = keypair(tmp_path)
        from_sqlite = tmp_path / "from-sqlite.roostbackup"
        made = roost("backup", "create", "--data-dir", str(embedded.data_dir), "--db", "Shop", "--out",
                     str(from_sqlite), "-r", public)
        assert made.returncode == 0, made.stderr

        restored = roost("backup", "restore", str(from_sqlite), "--data-dir", str(a.data_dir), "--db", "Shop",
                         "-i", str(key))
        assert restored.returncode == 0, restored.stderr
        assert "Restored 41 documents from 'Shop' into 'Shop'" in restored.stdout, restored.stdout
        # Identical rows (ids, bodies as written, change vectors, etags, HiLo), and node B serves it at once.
        assert pg_rows(postgres_url, "Shop") == rows(embedded.data_dir, "Shop")
        assert database_exists(b, "Shop")
        order = b.admin().get(f"{b.url}/databases/Shop/docs", params={"id": "orders/3"})
        assert order.status_code == 200 and order.json()["Results"][0]["Number"] == 3
        _check_extras(b, "Shop")

        # And back: a backup taken on PostgreSQL (through node B) restores into the SQLite store.
        from_postgres = tmp_path / "from-postgres.roostbackup"
        made = roost("backup", "create", "--data-dir", str(b.data_dir), "--db", "Shop", "--out", str(from_postgres),
                     "-r", public)
        assert made.returncode == 0, made.stderr
        back = roost("backup", "restore", str(from_postgres), "--data-dir", str(embedded.data_dir), "--db", "Back",
                     "-i", str(key))
        assert back.returncode == 0, back.stderr
        assert rows(embedded.data_dir, "Back") == rows(embedded.data_dir, "Shop")
        _check_extras(embedded, "Back")
        # The two files carry the same content (only the header's time may differ).
        plain = [_plaintext(path, key) for path in (from_sqlite, from_postgres)]
        assert plain[0][1:] == plain[1][1:]
    finally:
        embedded.stop()


def _plaintext(path: Path, key: Path) -> list[dict[str, object]]:
    from pyrage import x25519

    from roost.backups import crypto

    identity = x25519.Identity.from_str(key.read_text().strip())
    out = io.BytesIO()
    with path.open("rb") as src:
        crypto.decrypt(src, out, identities=[identity], passphrase=None)
    return [json.loads(line) for line in gzip.decompress(out.getvalue()).splitlines()]


def _sealed_file(directory: Path, entries: list[dict[str, object]]) -> tuple[Path, Path]:
    """A correctly encrypted file holding ``entries``, and the key that opens it."""
    from pyrage import x25519

    from roost.backups import crypto

    identity = x25519.Identity.generate()
    key = directory / f"seal-{time.monotonic_ns()}.txt"
    key.write_text(f"{identity}\n")
    plain = "".join(json.dumps(e) + "\n" for e in entries).encode()
    out = io.BytesIO()
    crypto.encrypt(io.BytesIO(gzip.compress(plain)), out, recipients=[identity.to_public()])
    path = directory / f"sealed-{time.monotonic_ns()}.roostbackup"
    path.write_bytes(out.getvalue())
    return path, key


def test_a_corrupt_or_foreign_file_changes_nothing_on_postgres(
    cluster: tuple[RunningServer, RunningServer, str], tmp_path: Path,
) -> None:
    a, b, postgres_url = cluster
    good, key = _good_backup(a, tmp_path, 10)
    before = pg_everything(postgres_url)

    blob = good.read_bytes()
    tampered = tmp_path / "tampered.roostbackup"
    tampered.write_bytes(blob[:-20] + bytes([blob[-20] ^ 1]) + blob[-19:])
    foreign = tmp_path / "foreign.roostbackup"
    foreign.write_bytes(b"PK\x03\x04 not a Roost backup at all" * 100)
    # Well encrypted and well formed up to the second row, whose id repeats the first: the restore has written
    # rows inside its transaction when it meets it, and must roll them back.
    header = {"Format": "roost-backup", "Version": 1, "Scope": "database", "Created": "2026-12-01T00:00:00Z",
              "Databases": ["Dup"]}
    section = {"Name": "Dup", "DatabaseId": "dupdbid", "Created": "2026-12-01T00:00:00Z", "LastEtag": 2, "Record": {}}
    row = ["dup/1", "Dups", {"N": 1}, {}, "A:1-dupdbid", 1, "2026-12-01T00:00:00.0000000Z"]
    duplicate, duplicate_key = _sealed_file(tmp_path, [
        header, {"Database": section}, {"D": row}, {"D": ["DUP/1", *row[1:5], 2, row[6]]}, {"Hilo": []},
        {"EndDatabase": "Dup", "Documents": 2}, {"End": True, "Databases": 1, "Documents": 2}])
    cases = [(tampered, key, "Shop2", "does not authenticate"), (foreign, key, "Shop2", "400"),
             (duplicate, duplicate_key, "Dup", "a document id appears twice"),
             (good, key, "Shop", "409")]  # into a database that holds documents
    for path, identity, target, expected in cases:
        refused = roost("backup", "restore", str(path), "--data-dir", str(a.data_dir), "--db", target,
                        "-i", str(identity))
        assert refused.returncode == 1 and expected in refused.stderr, (path.name, refused.stderr)
        assert pg_everything(postgres_url) == before, f"{path.name} changed the store"
        assert not database_exists(b, target) or target == "Shop"
    assert _pg(postgres_url, "SELECT count(*) FROM documents WHERE db LIKE '~restore/%'") == [(0,)]
    events = [json.loads(line)["Event"] for line in (a.data_dir / "audit.log").read_text().splitlines()]
    assert events.count("backup.restore-refused") == len(cases)


def test_the_twin_a_good_restore_does_change_the_postgres_store(
    cluster: tuple[RunningServer, RunningServer, str], tmp_path: Path,
) -> None:
    """The refusal test's digest can see a restore: the same digest moves when a restore succeeds."""
    a, _, postgres_url = cluster
    good, key = _good_backup(a, tmp_path, 5)
    before = pg_everything(postgres_url)
    restored = roost("backup", "restore", str(good), "--data-dir", str(a.data_dir), "--db", "Shop2", "-i", str(key))
    assert restored.returncode == 0, restored.stderr
    assert pg_everything(postgres_url) != before
    assert pg_rows(postgres_url, "Shop2") == pg_rows(postgres_url, "Shop")


def test_a_schedule_runs_on_a_postgres_node(cluster: tuple[RunningServer, RunningServer, str], tmp_path: Path) -> None:
    a, _, _ = cluster
    fill(a, "Shop", 5)
    key, public = keypair(tmp_path)
    folder = tmp_path / "scheduled"
    set_ = roost("backup", "schedule", "set", "--data-dir", str(a.data_dir), "--db", "Shop", "--every", "1s",
                 "--keep", "2", "--folder", str(folder), "-r", public)
    assert set_.returncode == 0, set_.stderr
    deadline = time.monotonic() + 60
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        status = a.admin().get(f"{a.url}/admin/backups/schedules").json()["Schedules"][0]["Status"]
        if int(status.get("Runs", 0)) >= 2:  # type: ignore[call-overload]
            break
        time.sleep(0.5)
    assert int(status.get("Runs", 0)) >= 2 and status["LastError"] is None, status  # type: ignore[call-overload]
    assert roost("backup", "schedule", "set", "--data-dir", str(a.data_dir), "--db", "Shop", "--every", "1h",
                 "--keep", "2", "--folder", str(folder), "-r", public).returncode == 0
    time.sleep(1.5)
    files = sorted(folder.glob("Shop-*.roostbackup"))
    assert files
    checked = roost("backup", "verify", str(files[-1]), "-i", str(key))
    assert checked.returncode == 0 and "Shop: 5 documents" in checked.stdout, checked.stdout + checked.stderr


def _big_backup(node: RunningServer, postgres_url: str, tmp_path: Path, count: int) -> tuple[Path, Path]:
    """Database ``Big`` with ``count`` documents (written straight into PostgreSQL: faster than the API), backed up
    to a file: (file, key)."""
    import asyncpg

    assert node.admin().put(f"{node.url}/admin/databases", params={"name": "Big"}).status_code == 201

    async def fill_directly() -> None:
        connection = await asyncpg.connect(postgres_url)
        try:
            database_id = await connection.fetchval("SELECT database_id FROM databases WHERE key = 'big'")
            await connection.copy_records_to_table("documents", columns=[
                "db", "key", "id", "collection", "collection_key", "body", "metadata", "change_vector", "etag",
                "last_modified"], records=[
                ("big", f"items/{i}", f"items/{i}", "Items", "items", json.dumps({"Index": i, "Pad": "x" * 200}),
                 json.dumps({"@collection": "Items"}), f"A:{i + 1}-{database_id}", i + 1,
                 "2026-01-01T00:00:00.0000000Z") for i in range(count)])
            await connection.execute("UPDATE databases SET last_etag = $1 WHERE key = 'big'", count)
        finally:
            await connection.close()

    asyncio.run(fill_directly())
    key, public = keypair(tmp_path)
    path = tmp_path / "big.roostbackup"
    assert roost("backup", "create", "--data-dir", str(node.data_dir), "--db", "Big", "--out", str(path),
                 "-r", public).returncode == 0
    return path, key


_RESTORING = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'roost backup restore' "
              "AND xact_start IS NOT NULL")


def _restore_interrupted(node: RunningServer, postgres_url: str, path: Path, key: Path,
                         interrupt: Callable[[], None]) -> subprocess.CompletedProcess[str]:
    """Restore ``path`` into ``Copy`` and call ``interrupt`` once the restore's transaction is writing rows."""
    import threading

    done: list[subprocess.CompletedProcess[str]] = []
    thread = threading.Thread(target=lambda: done.append(roost(
        "backup", "restore", str(path), "--data-dir", str(node.data_dir), "--db", "Copy", "-i", str(key))),
        daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        if _pg(postgres_url, _RESTORING) != [(0,)]:  # the restore's transaction has begun writing rows
            time.sleep(0.05)
            interrupt()
            break
        time.sleep(0.005)
    else:
        raise AssertionError("the restore was never seen writing")
    thread.join(timeout=120)
    deadline = time.monotonic() + 10  # PostgreSQL ends the interrupted transaction (a rollback)
    while _pg(postgres_url, _RESTORING) != [(0,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    return done[0]


@pytest.mark.timeout(300)
def test_a_restore_killed_half_way_on_postgres_leaves_nothing_and_a_retry_works(
    tmp_path: Path, postgres_url: str,
) -> None:
    import signal

    count = 40_000  # 20 batches of the restore: long enough to be caught half-way
    with tagged_nodes(tmp_path, postgres_url, "A") as (node,):
        path, key = _big_backup(node, postgres_url, tmp_path, count)
        before = pg_everything(postgres_url)

        def kill() -> None:
            node.process.send_signal(signal.SIGKILL)  # kill -9 in the middle of writing documents
            node.process.wait()

        _restore_interrupted(node, postgres_url, path, key, kill)
        # PostgreSQL rolled the whole restore back: not a row of it, and no database.
        assert pg_everything(postgres_url) == before
        assert _pg(postgres_url, "SELECT count(*) FROM databases WHERE key = 'copy'") == [(0,)]

    with tagged_nodes(tmp_path, postgres_url, "A") as (again,):
        assert not database_exists(again, "Copy")
        retry = roost("backup", "restore", str(path), "--data-dir", str(again.data_dir), "--db", "Copy",
                      "-i", str(key))
        assert retry.returncode == 0 and f"Restored {count} documents" in retry.stdout, retry.stdout + retry.stderr
    assert pg_rows(postgres_url, "Big") == pg_rows(postgres_url, "Copy")


@pytest.mark.timeout(300)
def test_a_restore_whose_connection_is_cut_is_a_503_and_changes_nothing(tmp_path: Path, postgres_url: str) -> None:
    """PostgreSQL restarting under a restore (here: its backend terminated) answers 503 Retry-After, never a 500, and
    rolls the restore back; the server serves on and a retry works."""
    count = 80_000  # 40 batches: the cut lands while rows are being written
    with tagged_nodes(tmp_path, postgres_url, "A") as (node,):
        path, key = _big_backup(node, postgres_url, tmp_path, count)
        before = pg_everything(postgres_url)

        def cut() -> None:
            _pg(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE application_name = 'roost backup restore'")

        refused = _restore_interrupted(node, postgres_url, path, key, cut)
        assert refused.returncode == 1 and "503" in refused.stderr, refused.stderr + "\n".join(node.output[-60:])
        assert pg_everything(postgres_url) == before
        retry = roost("backup", "restore", str(path), "--data-dir", str(node.data_dir), "--db", "Copy",
                      "-i", str(key))
        assert retry.returncode == 0 and f"Restored {count} documents" in retry.stdout, retry.stdout + retry.stderr
    assert pg_rows(postgres_url, "Big") == pg_rows(postgres_url, "Copy")


def test_two_nodes_restoring_into_one_new_name_at_once_give_one_database(
    cluster: tuple[RunningServer, RunningServer, str], tmp_path: Path,
) -> None:
    """One restore wins, the other is refused (409: the target holds documents by then); never a 500, never twice."""
    import threading

    a, b, postgres_url = cluster
    good, key = _good_backup(a, tmp_path, 200)
    blob, identity = good.read_bytes(), key.read_text().strip()
    answers: list[int] = []
    start = threading.Barrier(2)

    def restore(node: RunningServer) -> None:
        session = node.admin()
        start.wait()
        answer = session.post(f"{node.url}/admin/backups/restore", params={"database": "Twin"}, data=blob,
                              headers={"Roost-Backup-Identity": identity}, timeout=120)
        answers.append(answer.status_code)

    threads = [threading.Thread(target=restore, args=(node,)) for node in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert sorted(answers) == [201, 409], answers
    assert pg_rows(postgres_url, "Twin") == pg_rows(postgres_url, "Shop")


def test_a_schedule_shared_by_two_nodes_runs_once_per_interval(tmp_path: Path, postgres_url: str) -> None:
    """The nodes share the schedules; each interval's run is taken by one node (a lease in storage), not by each."""
    interval = 2
    ca_dir = tmp_path / "cluster-ca"
    with tagged_nodes(tmp_path, postgres_url, "A") as (a,):
        fill(a, "Shop", 3)
        _, public = keypair(tmp_path)
        assert roost("backup", "schedule", "set", "--data-dir", str(a.data_dir), "--db", "Shop", "--every",
                     f"{interval}s", "--keep", "50", "--folder", "scheduled", "-r", public).returncode == 0
        # B starts after the schedule exists (a schedule reaches other nodes at their start).
        b = start_server(tmp_path / "b", f"--storage_url={postgres_url}", f"--Security.Ca.Path={ca_dir}",
                         "--NodeTag=B")
        try:
            time.sleep(interval * 6)
            statuses = [n.admin().get(f"{n.url}/admin/backups/schedules").json()["Schedules"][0]["Status"]
                        for n in (a, b)]
        finally:
            b.stop()
    logs = [tmp_path / node / "audit.log" for node in ("a", "b")]
    runs = [json.loads(line)["Time"] for log in logs if log.exists() for line in log.read_text().splitlines()
            if json.loads(line)["Event"] == "backup.created"]
    times = sorted(runs)
    assert len(times) >= 3, (times, statuses)
    gaps = [(_seconds(later) - _seconds(earlier)) for earlier, later in zip(times, times[1:], strict=False)]
    assert min(gaps) >= interval * 0.8, (times, statuses)  # never two runs of one interval
    # The other node's timers found the lease taken.
    assert sum(int(s.get("Skipped", 0)) for s in statuses) >= 2, statuses
    assert sum(int(s.get("Runs", 0)) for s in statuses) == len(times), statuses


def _seconds(stamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
