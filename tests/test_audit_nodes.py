"""Audit per node: each node of a cluster keeps its own hash chain, names itself in every entry and keeps its own
head in the shared storage (``audit.head.<tag>``), read by ``roost audit verify`` through the Storage protocol on
either backend. Tampering with one node's log fails that node's verify only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, RunningServer, start_server
from roost.security import audit


def roost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roost", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def _lines(node: RunningServer) -> list[dict[str, object]]:
    return [json.loads(line) for line in (node.data_dir / "audit.log").read_text().splitlines()]


# The chain on its own (no server) ---------------------------------------------------------------------------------


def _write_chain(path: Path, node: str, count: int) -> None:
    log = audit.AuditLog(path, node)
    for n in range(count):
        log.record(audit.Event.DATABASE_CREATED, Database=f"db{n}")


def test_every_entry_names_its_node_and_verifies_as_that_nodes_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write_chain(path, "B", 3)
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["Node"] for e in entries] == ["B", "B", "B"]
    assert audit.verify(path, None, "B").ok


def test_another_nodes_chain_does_not_pass_as_this_nodes(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write_chain(path, "B", 3)
    result = audit.verify(path, None, "A")
    assert not result.ok and "written by node 'B', not 'A'" in result.message and result.first_bad_seq == 1


def _chain(entries: list[dict[str, object]]) -> bytes:
    """Lines as AuditLog writes them, each carrying the previous one's hash."""
    lines, prev = [], audit.GENESIS
    for seq, fields in enumerate(entries, start=1):
        line = json.dumps({"Seq": seq, "Time": "2026-12-01T00:00:00.000Z", **fields, "Prev": prev},
                          ensure_ascii=False, separators=(",", ":")).encode()
        lines.append(line)
        prev = audit.line_hash(line)
    return b"\n".join(lines) + b"\n"


def test_entries_of_an_older_roost_name_no_node_and_still_verify(tmp_path: Path) -> None:
    """A log begun before per-node chains: its first entries name no node; the upgraded server's do."""
    path = tmp_path / "audit.log"
    path.write_bytes(_chain([{"Event": "database.created", "Database": "old1"},
                             {"Event": "database.created", "Database": "old2"}]))
    upgraded = audit.AuditLog(path, "A")
    upgraded.record(audit.Event.DATABASE_CREATED, Database="new")
    assert audit.verify(path, upgraded.head, "A").ok


def test_an_entry_naming_no_node_after_one_that_does_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(_chain([{"Event": "database.created", "Node": "A", "Database": "one"},
                             {"Event": "database.created", "Database": "moved-in"}]))
    result = audit.verify(path, None, "A")
    assert not result.ok and result.first_bad_seq == 2 and "written by node None" in result.message


# Three real nodes on PostgreSQL -----------------------------------------------------------------------------------


@contextlib.contextmanager
def tagged_nodes(tmp_path: Path, postgres_url: str, tags: str) -> Iterator[list[RunningServer]]:
    """One ``roost serve`` per tag on one PostgreSQL database and one CA directory, each with its own data dir."""
    ca_dir = tmp_path / "cluster-ca"
    started: list[RunningServer] = []
    try:
        for tag in tags:
            started.append(start_server(tmp_path / tag.lower(), f"--storage_url={postgres_url}",
                                        f"--Security.Ca.Path={ca_dir}", f"--NodeTag={tag}"))
        yield started
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def three_tagged_nodes(tmp_path: Path, postgres_url: str) -> Iterator[tuple[list[RunningServer], str]]:
    with tagged_nodes(tmp_path, postgres_url, "ABC") as started:
        yield started, postgres_url


def _stored_heads(postgres_url: str) -> dict[str, list[object]]:
    import asyncpg

    async def read() -> dict[str, list[object]]:
        connection = await asyncpg.connect(postgres_url)
        try:
            rows = await connection.fetch("SELECT key, value::text FROM settings WHERE key LIKE 'audit.head%'")
        finally:
            await connection.close()
        return {r[0]: json.loads(r[1]) for r in rows}

    return asyncio.run(read())


def _verify(node: RunningServer, tag: str, postgres_url: str) -> subprocess.CompletedProcess[str]:
    return roost("audit", "verify", "--node", tag, "--data-dir", str(node.data_dir), f"--storage_url={postgres_url}")


@pytest.mark.postgres
@pytest.mark.slow
def test_each_nodes_chain_verifies_alone_and_tampering_fails_only_that_node(
    three_tagged_nodes: tuple[list[RunningServer], str],
) -> None:
    nodes, postgres_url = three_tagged_nodes
    for node, tag in zip(nodes, "ABC", strict=True):
        admin = node.admin()
        for n in range(1, 3 if tag != "B" else 4):  # B writes one entry more: the chains differ in length too
            assert admin.put(f"{node.url}/admin/databases", params={"name": f"{tag}-{n}"}).status_code == 201
    for node in nodes:
        node.stop()  # the heads are written by the servers; stopped, nothing is in flight

    for node, tag in zip(nodes, "ABC", strict=True):
        assert {e["Node"] for e in _lines(node)} == {tag}
    heads = _stored_heads(postgres_url)
    assert sorted(heads) == ["audit.head.A", "audit.head.B", "audit.head.C"]  # one key per node, no shared one
    assert [heads[f"audit.head.{t}"][0] for t in "ABC"] == [2, 3, 2]
    for node, tag in zip(nodes, "ABC", strict=True):
        done = _verify(node, tag, postgres_url)
        assert done.returncode == 0 and f"intact: {3 if tag == 'B' else 2} entries (node {tag}'s chain)" in \
            done.stdout, done.stdout + done.stderr

    a, b, c = nodes
    path = b.data_dir / "audit.log"
    intact = path.read_text()
    path.write_text(intact.replace('"Database":"B-2"', '"Database":"B-X"'))  # an edit in B's log
    edited = _verify(b, "B", postgres_url)
    assert edited.returncode == 1 and "entry 2 was altered" in edited.stdout, edited.stdout
    for node, tag in ((a, "A"), (c, "C")):
        assert _verify(node, tag, postgres_url).returncode == 0

    path.write_text("".join(intact.splitlines(keepends=True)[:2]))  # B's last entry cut: only B's head knows
    cut = _verify(b, "B", postgres_url)
    assert cut.returncode == 1 and "Entries 3 to 3 are missing" in cut.stdout, cut.stdout
    for node, tag in ((a, "A"), (c, "C")):
        assert _verify(node, tag, postgres_url).returncode == 0

    wrong = _verify(a, "B", postgres_url)  # A's log offered as B's chain
    assert wrong.returncode == 1 and "written by node 'A', not 'B'" in wrong.stdout, wrong.stdout


def test_verify_without_node_uses_this_nodes_tag_from_its_settings(tmp_path: Path) -> None:
    """SQLite, one node tagged D in its roost.toml: ``roost audit verify`` needs no --node."""
    data_dir = tmp_path / "d"
    data_dir.mkdir(mode=0o700)
    (data_dir / "roost.toml").write_text('node_tag = "D"\n')
    node = start_server(data_dir)
    try:
        assert node.admin().put(f"{node.url}/admin/databases", params={"name": "one"}).status_code == 201
    finally:
        node.stop()
    assert [e["Node"] for e in _lines(node)] == ["D"]
    done = roost("audit", "verify", "--data-dir", str(data_dir))
    assert done.returncode == 0 and "intact: 1 entries (node D's chain)" in done.stdout, done.stdout + done.stderr
    other = roost("audit", "verify", "--data-dir", str(data_dir), "--node", "A")
    assert other.returncode == 1 and "written by node 'D', not 'A'" in other.stdout, other.stdout
    # Cut the only line: the head (audit.head.D, in roost.db) still says there was one.
    (data_dir / "audit.log").write_text("")
    cut = roost("audit", "verify", "--data-dir", str(data_dir))
    assert cut.returncode == 1 and "Entries 1 to 1 are missing" in cut.stdout, cut.stdout


def test_a_malformed_node_tag_is_refused_by_verify(tmp_path: Path) -> None:
    done = roost("audit", "verify", "--data-dir", str(tmp_path), "--node", "b c")
    assert done.returncode != 0 and "NodeTag 'b c'" in done.stderr, done.stdout + done.stderr


def test_a_malformed_node_tag_is_refused_at_start(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "roost", "serve", "--data-dir", str(tmp_path / "x"), "--port", "0",
                           "--NodeTag=b c"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode != 0 and "NodeTag 'b c'" in (done.stdout + done.stderr)


# The worker processes of one node share its log -------------------------------------------------------------------


def _write_from_a_process(path: str, count: int, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    log = audit.AuditLog(Path(path), "A")
    for n in range(count):
        log.record(audit.Event.DATABASE_CREATED, Database=f"p{n}")


def test_worker_processes_appending_together_keep_one_chain(tmp_path: Path) -> None:
    """roost serve --workers N: N processes, one audit.log, one chain (each append continues the last line)."""
    import multiprocessing

    path = tmp_path / "audit.log"
    audit.AuditLog(path, "A").record(audit.Event.DATABASE_CREATED, Database="first")
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [context.Process(target=_write_from_a_process, args=(str(path), 40, start)) for _ in range(3)]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    result = audit.verify(path, None, "A")
    assert result.ok and result.entries == 121, result.message
    assert [json.loads(line)["Seq"] for line in path.read_text().splitlines()] == list(range(1, 122))


def test_lines_cut_off_while_the_server_runs_stay_a_gap(tmp_path: Path) -> None:
    """The twin: a running log never carries on from a file that shrank (that would hide the cut)."""
    path = tmp_path / "audit.log"
    log = audit.AuditLog(path, "A")
    for n in range(3):
        log.record(audit.Event.DATABASE_CREATED, Database=f"db{n}")
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))  # entry 3 cut off
    log.record(audit.Event.DATABASE_CREATED, Database="after")
    result = audit.verify(path, log.head, "A")
    assert not result.ok and "entry 3 is missing" in result.message, result.message


@pytest.mark.slow
def test_roost_serve_with_two_workers_keeps_one_verifiable_chain(tmp_path: Path) -> None:
    from test_workers import _request, _spread, _worker_pids

    server = start_server(tmp_path / "data", "--workers", "2")
    try:
        pids = _worker_pids(server)
        held = _spread(server, server.admin_pem, pids)
        for n, (connection, _) in enumerate(held * 3):  # both workers, interleaved
            status, body = _request(connection, "PUT", f"/admin/databases?name=w{n}")
            assert status == 201, body
        written = len(held) * 3
        for connection, _ in held:
            connection.close()
    finally:
        server.stop()
    done = roost("audit", "verify", "--data-dir", str(server.data_dir))
    assert done.returncode == 0 and f"intact: {written} entries" in done.stdout, done.stdout + done.stderr


def test_the_head_an_older_roost_kept_counts_for_an_embedded_store_only(tmp_path: Path) -> None:
    """Before per-node chains one key (audit.head) held the head: on SQLite (one node) it is this node's until the
    upgraded server writes audit.head.<tag>; on a shared store it could be any node's and is not used."""
    from roost.storage import open_storage

    async def main() -> None:
        storage = await open_storage(None, tmp_path)
        try:
            await storage.put_setting(audit.HEAD_SETTING, [4, "ab" * 32])
            assert await audit.stored_head(storage, "A", single_node=True) == (4, "ab" * 32)
            assert await audit.stored_head(storage, "A") is None
            await storage.put_setting(audit.head_key("A"), [5, "cd" * 32])
            assert await audit.stored_head(storage, "A", single_node=True) == (5, "cd" * 32)
            assert await audit.stored_head(storage, "B", single_node=False) is None
        finally:
            await storage.close()

    asyncio.run(main())
