"""The Storage contract, run on every backend: the embedded SQLite store and PostgreSQL (a database per test).

Each test opens real storage inside its own event loop. Tests named ``*_two_nodes`` open the same store twice, as two
Roost nodes sharing it would.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roost.storage import open_storage
from roost.storage.base import (
    COUNTER_VALUES,
    ChangeVectorMismatch,
    CounterOperation,
    CountersCommand,
    DeleteCommand,
    InvalidAttachment,
    InvalidCounterOperation,
    InvalidHiLoDocument,
    JsonObject,
    PutCommand,
    Storage,
)

NOW = "2026-11-23T08:00:00.0000000Z"
Body = Callable[[Storage], Awaitable[None]]
TwoNodeBody = Callable[[Storage, Storage], Awaitable[None]]


@dataclass
class Backend:
    name: str
    url: str | None
    data_dir: Path

    async def open(self) -> Storage:
        return await open_storage(self.url, self.data_dir)

    def run(self, body: Body) -> None:
        async def main() -> None:
            storage = await self.open()
            try:
                await body(storage)
            finally:
                await storage.close()

        asyncio.run(main())

    def run_two_nodes(self, body: TwoNodeBody) -> None:
        async def main() -> None:
            first = await self.open()
            second = await self.open()
            try:
                await body(first, second)
            finally:
                await first.close()
                await second.close()

        asyncio.run(main())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    yield Backend(request.param, url, tmp_path)


def definition(thumbprint: str, name: str = "app", **extra: object) -> JsonObject:
    return {"Thumbprint": thumbprint, "Name": name, "SecurityClearance": "ValidUser", "Permissions": {}, **extra}


def put(doc_id: str, body: JsonObject | None = None, collection: str | None = "Users",
        expected: str | None = None, metadata: JsonObject | None = None) -> PutCommand:
    return PutCommand(doc_id, collection, body if body is not None else {"Name": doc_id}, metadata or {}, expected)


# Certificates -----------------------------------------------------------------------------------------------------


def test_certificates_put_load_update_delete(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.load_certificates() == []
        await storage.put_certificates([definition("AA01"), definition("BB02", "other")])
        assert sorted(d["Thumbprint"] for d in await storage.load_certificates()) == ["AA01", "BB02"]
        # A second put of the same thumbprint replaces the definition; it does not add a row.
        await storage.put_certificates([definition("AA01", "renamed", Permissions={"Orders": "Read"})])
        loaded = {d["Thumbprint"]: d for d in await storage.load_certificates()}
        assert len(loaded) == 2
        assert loaded["AA01"]["Name"] == "renamed"
        assert loaded["AA01"]["Permissions"] == {"Orders": "Read"}
        assert [d["Name"] for d in await storage.get_certificates(["AA01", "MISSING"])] == ["renamed"]
        await storage.delete_certificates(["AA01", "NEVER-THERE"])
        assert [d["Thumbprint"] for d in await storage.load_certificates()] == ["BB02"]
        assert await storage.get_certificates(["AA01"]) == []

    backend.run(body)


def test_record_last_used_sets_the_date_and_keeps_the_rest(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.put_certificates([definition("AA01", Permissions={"Orders": "ReadWrite"})])
        await storage.record_last_used({"AA01": NOW, "UNKNOWN": NOW})
        [stored] = await storage.load_certificates()
        assert stored["LastUsedDate"] == NOW
        assert stored["Permissions"] == {"Orders": "ReadWrite"}
        assert stored["Name"] == "app"
        # Recording never creates a certificate.
        assert len(await storage.load_certificates()) == 1

    backend.run(body)


# Databases --------------------------------------------------------------------------------------------------------


def test_create_database_twice_and_case_insensitive_names(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.create_database("Orders", "id-1", NOW) is True
        assert await storage.create_database("Orders", "id-2", NOW) is False
        assert await storage.create_database("ORDERS", "id-3", NOW) is False
        row = await storage.get_database("oRdErS")
        assert row is not None
        assert (row.name, row.database_id, row.created) == ("Orders", "id-1", NOW)
        assert await storage.get_database("Missing") is None
        await storage.create_database("accounts", "id-4", NOW)
        assert [r.name for r in await storage.list_databases()] == ["accounts", "Orders"]

    backend.run(body)


def test_delete_database_removes_documents_hilo_and_updates_certificates_together(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Orders", "id-1", NOW)
        await storage.create_database("Keep", "id-2", NOW)
        await storage.apply_batch("Orders", [put("orders/1"), put("orders/2")], NOW)
        await storage.apply_batch("Keep", [put("keep/1")], NOW)
        await storage.next_hilo_range("Orders", "orders", 32)
        await storage.put_certificates([definition("AA01", Permissions={"Orders": "Read", "Keep": "Read"})])

        updated = definition("AA01", Permissions={"Keep": "Read"})
        assert await storage.delete_database("ORDERS", [updated]) is True
        assert await storage.get_database("Orders") is None
        [stored] = await storage.load_certificates()
        assert stored["Permissions"] == {"Keep": "Read"}
        assert await storage.count_documents("Orders") == 0
        assert await storage.count_documents("Keep") == 1

        # Recreated under the same name, it starts empty: no documents, HiLo from 1 again.
        assert await storage.create_database("Orders", "id-3", NOW) is True
        assert await storage.scan_documents("Orders", None) == []
        assert await storage.get_documents("Orders", ["orders/1"]) == [None]
        assert await storage.next_hilo_range("Orders", "orders", 32) == (1, 32)

    backend.run(body)


def test_delete_missing_database_changes_nothing(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.put_certificates([definition("AA01", Permissions={"Ghost": "Read"})])
        assert await storage.delete_database("Ghost", [definition("AA01", Permissions={})]) is False
        [stored] = await storage.load_certificates()
        assert stored["Permissions"] == {"Ghost": "Read"}

    backend.run(body)


# Documents --------------------------------------------------------------------------------------------------------


def test_document_ids_are_case_insensitive(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.apply_batch("Db", [put("Users/1", {"v": 1})], NOW)
        [found] = await storage.get_documents("db", ["USERS/1"])
        assert found is not None and found.id == "Users/1" and found.body == {"v": 1}
        await storage.apply_batch("Db", [put("users/1", {"v": 2})], NOW)
        assert await storage.count_documents("Db") == 1
        [found] = await storage.get_documents("Db", ["Users/1"])
        assert found is not None and found.body == {"v": 2}
        results = await storage.apply_batch("Db", [DeleteCommand("USERS/1")], NOW)
        assert results[0].deleted is True
        assert await storage.get_documents("Db", ["users/1"]) == [None]

    backend.run(body)


def test_get_documents_keeps_the_order_asked_and_reports_missing(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.apply_batch("Db", [put(f"users/{i}") for i in range(1, 4)], NOW)
        found = await storage.get_documents("Db", ["users/3", "users/9", "users/1"])
        assert [d.id if d else None for d in found] == ["users/3", None, "users/1"]
        many = await storage.get_documents("Db", [f"users/{i}" for i in range(1, 1201)])
        assert len(many) == 1200 and sum(d is not None for d in many) == 3

    backend.run(body)


def test_body_and_metadata_round_trip(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        document = {"zeta": 1, "alpha": [1, 2.5, None, True], "nested": {"é": "ünïcødé ✓", "b": {}}, "s": "x\u0000y"}
        metadata = {"Raven-Python-Type": "app.User", "@flags": "HasAttachments"}
        [result] = await storage.apply_batch("Db", [put("docs/1", document, "Docs", metadata=metadata)], NOW)
        [found] = await storage.get_documents("Db", ["docs/1"])
        assert found is not None
        assert found.body == document
        assert list(found.body) == ["zeta", "alpha", "nested", "s"]  # the client's key order comes back
        assert found.metadata == metadata
        assert found.collection == "Docs"
        assert found.last_modified == NOW
        assert result.document == found

    backend.run(body)


def test_change_vectors_and_etags_per_database(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("One", "ID-ONE", NOW)
        await storage.create_database("Two", "ID-TWO", NOW)
        first = await storage.apply_batch("One", [put("a"), put("b")], NOW)
        other = await storage.apply_batch("Two", [put("a")], NOW)
        again = await storage.apply_batch("One", [put("a"), DeleteCommand("b"), put("c")], NOW)
        etags = [r.document.etag for r in first + again if r.document]
        assert etags == [1, 2, 3, 4]
        assert other[0].document is not None and other[0].document.etag == 1
        for result in first + again + other:
            if result.document is None:
                continue
            match = re.fullmatch(r"A:(\d+)-(.+)", result.document.change_vector)
            assert match is not None, result.document.change_vector
            assert int(match[1]) == result.document.etag
            assert match[2] == ("ID-TWO" if result in other else "ID-ONE")
        # A delete of a missing document does not consume an etag.
        missing = await storage.apply_batch("One", [DeleteCommand("never")], NOW)
        assert missing[0].deleted is False and missing[0].document is None
        [latest] = await storage.apply_batch("One", [put("d")], NOW)
        assert latest.document is not None and latest.document.change_vector == "A:5-ID-ONE"

    backend.run(body)


def test_apply_batch_is_atomic_on_a_change_vector_mismatch(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        [existing] = await storage.apply_batch("Db", [put("keep", {"v": 1})], NOW)
        assert existing.document is not None
        batch = [put("new/1"), DeleteCommand("keep"), put("new/2"), put("keep", {"v": 2}, expected="A:999-dbid")]
        with pytest.raises(ChangeVectorMismatch) as raised:
            await storage.apply_batch("Db", batch, NOW)
        assert raised.value.document_id == "keep"
        assert raised.value.expected == "A:999-dbid"
        assert raised.value.actual is None  # deleted earlier in the same (rolled back) batch
        # Nothing of the batch was written: the delete is undone and no etag was consumed.
        assert await storage.get_documents("Db", ["new/1", "new/2"]) == [None, None]
        [kept] = await storage.get_documents("Db", ["keep"])
        assert kept is not None and kept.body == {"v": 1} and kept.change_vector == existing.document.change_vector
        assert await storage.count_documents("Db") == 1
        [after] = await storage.apply_batch("Db", [put("next")], NOW)
        assert after.document is not None and after.document.etag == 2

    backend.run(body)


def test_expected_change_vectors(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        # "" means the document must not exist yet.
        [created] = await storage.apply_batch("Db", [put("users/1", {"v": 1}, expected="")], NOW)
        assert created.document is not None
        current = created.document.change_vector
        with pytest.raises(ChangeVectorMismatch) as raised:
            await storage.apply_batch("Db", [put("USERS/1", {"v": 2}, expected="")], NOW)
        assert raised.value.actual == current
        # The right change vector is accepted; a stale one is refused, for a put and for a delete.
        [updated] = await storage.apply_batch("Db", [put("users/1", {"v": 2}, expected=current)], NOW)
        assert updated.document is not None
        with pytest.raises(ChangeVectorMismatch):
            await storage.apply_batch("Db", [put("users/1", {"v": 3}, expected=current)], NOW)
        with pytest.raises(ChangeVectorMismatch):
            await storage.apply_batch("Db", [DeleteCommand("users/1", expected_change_vector=current)], NOW)
        with pytest.raises(ChangeVectorMismatch) as raised:
            await storage.apply_batch("Db", [put("users/404", expected="A:1-dbid")], NOW)
        assert raised.value.actual is None
        [deleted] = await storage.apply_batch(
            "Db", [DeleteCommand("users/1", expected_change_vector=updated.document.change_vector)], NOW
        )
        assert deleted.deleted is True
        [found] = await storage.get_documents("Db", ["users/1"])
        assert found is None

    backend.run(body)


def test_apply_batch_applies_commands_in_order_within_one_batch(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        batch = [put("a", {"v": 1}), DeleteCommand("A"), put("a", {"v": 2}, expected=""), put("b"),
                 put("B", {"v": 3}, expected="A:3-dbid"), DeleteCommand("c")]
        results = await storage.apply_batch("Db", batch, NOW)
        assert [r.deleted for r in results if r.kind == "DELETE"] == [True, False]
        [a, b] = await storage.get_documents("Db", ["a", "b"])
        assert a is not None and a.body == {"v": 2} and a.etag == 2
        assert b is not None and b.body == {"v": 3} and b.change_vector == "A:4-dbid"
        assert await storage.count_documents("Db") == 2

    backend.run(body)


def test_apply_batch_on_a_missing_database_raises_lookup_error(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        with pytest.raises(LookupError):
            await storage.apply_batch("Nope", [put("a")], NOW)
        assert await storage.get_database("Nope") is None

    backend.run(body)


def test_scan_by_collection_and_count(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.create_database("Other", "otherid", NOW)
        await storage.apply_batch("Db", [put("u/1", collection="Users"), put("o/1", collection="Orders"),
                                         put("u/2", collection="users"), put("n/1", collection=None)], NOW)
        await storage.apply_batch("Other", [put("u/9", collection="Users")], NOW)
        await storage.apply_batch("Db", [put("u/1", {"v": "again"}, collection="Users")], NOW)
        assert [d.id for d in await storage.scan_documents("Db", "USERS")] == ["u/2", "u/1"]  # by etag
        assert [d.id for d in await storage.scan_documents("db", "orders")] == ["o/1"]
        assert await storage.scan_documents("Db", "Missing") == []
        assert [d.id for d in await storage.scan_documents("Db", None)] == ["o/1", "u/2", "n/1", "u/1"]
        assert await storage.count_documents("DB") == 4
        assert await storage.count_documents("Other") == 1
        assert await storage.count_documents("Missing") == 0

    backend.run(body)


# One folding rule for collection names, on both backends: Python's casefold (storage.base.collection_key), the one
# RQL's ``from`` uses. SQLite's NOCASE folds ASCII only and PostgreSQL's lower() follows the locale: neither may
# decide which documents a collection holds.
_UNICODE_COLLECTIONS = [("s/1", "Straße"), ("s/2", "STRASSE"), ("s/3", "strasse"), ("a/1", "Ärzte"),
                        ("a/2", "ärzte"), ("a/3", "ÄRZTE"), ("t/1", "İzmir"), ("t/2", "izmir"), ("t/3", "IZMIR"),
                        ("t/4", "ızmir"), ("n/1", None)]


async def _unicode_answers(storage: Storage) -> dict[str, object]:
    scans = {name: [d.id for d in await storage.scan_documents("Db", name)]
             for name in ("strasse", "STRAßE", "ärzte", "ÄRZTE", "izmir", "İzmir", "İZMIR", "IZMIR", "ızmır")}
    counts = await storage.collection_counts("Db")
    assert counts is not None
    return {"scans": scans, "counts": counts[1]}


_UNICODE_EXPECTED = {
    "scans": {"strasse": ["s/1", "s/2", "s/3"], "STRAßE": ["s/1", "s/2", "s/3"], "ärzte": ["a/1", "a/2", "a/3"],
              "ÄRZTE": ["a/1", "a/2", "a/3"],
              # casefold keeps Turkish dotted İ as i + U+0307 and dotless ı as itself: three collections, the same
              # three on both backends.
              "izmir": ["t/2", "t/3"], "IZMIR": ["t/2", "t/3"], "İzmir": ["t/1"], "İZMIR": ["t/1"], "ızmır": []},
    # Each collection under one of its spellings, the same on both backends (the least in code point order).
    "counts": {"STRASSE": 3, "ÄRZTE": 3, "İzmir": 1, "IZMIR": 2, "ızmir": 1, None: 1},
}


def test_non_ascii_collection_names_answer_identically_on_every_backend(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.apply_batch("Db", [put(i, collection=c) for i, c in _UNICODE_COLLECTIONS], NOW)
        assert await _unicode_answers(storage) == _UNICODE_EXPECTED

    backend.run(body)


def test_a_different_collection_spelling_is_a_different_collection(backend: Backend) -> None:
    """The refusing twin: folding is casefold, not a looser match (accents and dotless ı stay distinct)."""

    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.apply_batch("Db", [put("s/1", collection="Straße"), put("s/2", collection="Strase"),
                                         put("a/1", collection="Ärzte"), put("a/2", collection="Arzte")], NOW)
        assert [d.id for d in await storage.scan_documents("Db", "STRASSE")] == ["s/1"]
        assert [d.id for d in await storage.scan_documents("Db", "ärzte")] == ["a/1"]
        assert [d.id for d in await storage.scan_documents("Db", "arzte")] == ["a/2"]

    backend.run(body)


# The documents table as Roost created it before collection_key (stop 19), with its BINARY/lower() index.
_OLD_DOCUMENTS = """
CREATE TABLE databases (key TEXT PRIMARY KEY, name TEXT NOT NULL, database_id TEXT NOT NULL, created TEXT NOT NULL,
    last_etag {int} NOT NULL DEFAULT 0, record {json} NOT NULL DEFAULT '{{}}');
CREATE TABLE documents (db TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL, collection TEXT,
    body TEXT NOT NULL, metadata TEXT NOT NULL, change_vector TEXT NOT NULL, etag {int} NOT NULL,
    last_modified TEXT NOT NULL, PRIMARY KEY (db, key));
CREATE INDEX documents_by_collection ON documents (db, {collection}, etag);
"""


def _old_rows() -> list[tuple[object, ...]]:
    return [("db", i.casefold(), i, c, '{"Name":"x"}', "{}", f"A:{n}-dbid", n, NOW)
            for n, (i, c) in enumerate(_UNICODE_COLLECTIONS, start=1)]


def _make_old_store(backend: Backend) -> None:
    if backend.url is None:
        import sqlite3

        with sqlite3.connect(backend.data_dir / "roost.db") as db:
            db.executescript(_OLD_DOCUMENTS.format(int="INTEGER", json="TEXT", collection="collection"))
            db.execute("INSERT INTO databases VALUES ('db', 'Db', 'dbid', ?, ?, '{}')", (NOW, len(_old_rows())))
            db.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", _old_rows())
        return
    import asyncpg

    async def create() -> None:
        connection = await asyncpg.connect(backend.url)
        try:
            await connection.execute(_OLD_DOCUMENTS.format(int="BIGINT", json="JSONB", collection="lower(collection)"))
            await connection.execute("INSERT INTO databases VALUES ('db', 'Db', 'dbid', $1, $2, '{}')", NOW,
                                     len(_old_rows()))
            await connection.executemany("INSERT INTO documents VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                                         _old_rows())
        finally:
            await connection.close()

    asyncio.run(create())


def test_a_store_made_by_the_old_schema_is_migrated_and_answers_the_same(backend: Backend) -> None:
    _make_old_store(backend)

    async def body(storage: Storage) -> None:
        assert await _unicode_answers(storage) == _UNICODE_EXPECTED
        # Written after the migration: found by the same key as the migrated rows.
        await storage.apply_batch("Db", [put("s/4", collection="STRAßE")], NOW)
        assert [d.id for d in await storage.scan_documents("Db", "Strasse")] == ["s/1", "s/2", "s/3", "s/4"]

    backend.run(body)
    backend.run(_reopened)  # opening again: no second migration, nothing lost


async def _reopened(storage: Storage) -> None:
    assert [d.id for d in await storage.scan_documents("Db", "Strasse")] == ["s/1", "s/2", "s/3", "s/4"]


def test_collection_queries_use_the_collection_key_index_on_sqlite(tmp_path: Path) -> None:
    """``EXPLAIN QUERY PLAN`` of the statements scan_documents and collection_counts run: the index, no scan of
    the table and no temporary B-tree for ORDER BY / GROUP BY."""
    import sqlite3

    from roost.storage import sqlite as sqlite_storage

    asyncio.run(_open_and_close(tmp_path))
    with sqlite3.connect(tmp_path / "roost.db") as db:
        for statement in ("SELECT * FROM documents WHERE db = ? AND collection_key = ? ORDER BY etag",
                          "SELECT min(collection), count(*) FROM documents WHERE db = ? GROUP BY collection_key"):
            assert statement.split(" WHERE ")[1] in _statements_of(sqlite_storage)
            plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement,
                                                           ("db", "users")[:statement.count("?")]))
            assert "documents_by_collection_key" in plan, plan
            assert "TEMP B-TREE" not in plan and not re.search(r"\bSCAN documents\b(?! USING)", plan), plan


def test_the_old_binary_index_could_not_serve_a_nocase_query(tmp_path: Path) -> None:
    """The twin that shows the plan check can fail: the query stop 19 ran, on the index it had."""
    import sqlite3

    with sqlite3.connect(tmp_path / "old.db") as db:
        db.executescript(_OLD_DOCUMENTS.format(int="INTEGER", json="TEXT", collection="collection"))
        plan = " | ".join(row[3] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM documents WHERE db = ? AND collection = ? COLLATE NOCASE "
            "ORDER BY etag", ("db", "users")))
    assert "TEMP B-TREE" in plan, plan


@pytest.mark.postgres
def test_postgres_can_use_the_collection_key_index(postgres_url: str, tmp_path: Path) -> None:
    import asyncpg

    from roost.storage import postgres as postgres_storage

    async def main() -> None:
        await _open_and_close(tmp_path, postgres_url)
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute("SET enable_seqscan = off")  # an empty table: ask whether it *can*
            statement = ("SELECT id FROM documents WHERE db = $1 AND collection_key = $2 ORDER BY etag")
            assert "WHERE db = $1 AND collection_key = $2 ORDER BY etag" in _statements_of(postgres_storage)
            plan = "\n".join(r[0] for r in await connection.fetch("EXPLAIN " + statement, "db", "users"))
            assert "documents_by_collection_key" in plan and "Sort" not in plan, plan
            counts = "SELECT min(collection), count(*) FROM documents WHERE db = $1 GROUP BY collection_key"
            plan = "\n".join(r[0] for r in await connection.fetch("EXPLAIN " + counts, "db"))
            assert "documents_by_collection_key" in plan, plan
        finally:
            await connection.close()

    asyncio.run(main())


async def _open_and_close(data_dir: Path, url: str | None = None) -> None:
    storage = await open_storage(url, data_dir)
    await storage.close()


def _statements_of(module: object) -> str:
    """The module's source with its string literals' adjacent pieces joined, to find a statement in it."""
    import inspect

    source = inspect.getsource(module)  # type: ignore[arg-type]
    return re.sub(r'"\s*\n\s*"', "", source)


def test_page_documents_lists_the_most_recently_changed_first(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.create_database("Other", "otherid", NOW)
        await storage.apply_batch("Db", [put(f"u/{i}") for i in range(1, 6)], NOW)
        await storage.apply_batch("Other", [put("x/1")], NOW)
        await storage.apply_batch("Db", [put("u/2", {"v": "changed"})], NOW)  # now the most recent
        assert [d.id for d in await storage.page_documents("DB", 0, 3)] == ["u/2", "u/5", "u/4"]
        assert [d.id for d in await storage.page_documents("db", 3, 3)] == ["u/3", "u/1"]
        assert await storage.page_documents("Db", 5, 3) == []
        assert await storage.page_documents("Missing", 0, 3) == []

    backend.run(body)


def test_concurrent_writers_on_two_nodes_get_distinct_etags(backend: Backend) -> None:
    async def body(first: Storage, second: Storage) -> None:
        await first.create_database("Db", "dbid", NOW)
        writes = [
            (first if i % 2 else second).apply_batch("Db", [put(f"docs/{i}"), put("shared", {"by": i})], NOW)
            for i in range(30)
        ]
        results = await asyncio.gather(*writes)
        etags = sorted(r.document.etag for batch in results for r in batch if r.document)
        assert etags == list(range(1, 61))
        assert await second.count_documents("Db") == 31
        [shared] = await first.get_documents("Db", ["shared"])
        last_shared = max(r.document.etag for batch in results for r in batch if r.document and r.id == "shared")
        assert shared is not None and shared.etag == last_shared

    backend.run_two_nodes(body)


def test_concurrent_optimistic_writers_exactly_one_wins(backend: Backend) -> None:
    async def body(first: Storage, second: Storage) -> None:
        await first.create_database("Db", "dbid", NOW)
        attempts = [
            (first if i % 2 else second).apply_batch("Db", [put("users/1", {"by": i}, expected="")], NOW)
            for i in range(20)
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(o, ChangeVectorMismatch) for o in outcomes if isinstance(o, BaseException))

    backend.run_two_nodes(body)


# HiLo -------------------------------------------------------------------------------------------------------------


def test_hilo_ranges_follow_each_other_per_database_and_tag(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.next_hilo_range("Db", "users", 32) == (1, 32)
        assert await storage.next_hilo_range("DB", "Users", 32) == (33, 64)
        assert await storage.next_hilo_range("Db", "users", 10) == (65, 74)
        assert await storage.next_hilo_range("Db", "orders", 32) == (1, 32)
        assert await storage.next_hilo_range("Other", "users", 32) == (1, 32)

    backend.run(body)


def test_return_hilo_range_only_when_nobody_took_a_range_since(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.next_hilo_range("Db", "users", 32) == (1, 32)
        assert await storage.return_hilo_range("DB", "Users", 32, 5) is True  # used 1..5, gives back 6..32
        assert await storage.next_hilo_range("Db", "users", 32) == (6, 37)
        assert await storage.return_hilo_range("Db", "users", 32, 5) is False  # stale: 37 is the max now
        assert await storage.next_hilo_range("Db", "users", 32) == (38, 69)
        assert await storage.return_hilo_range("Db", "orders", 32, 0) is False  # no such tag

    backend.run(body)


def test_concurrent_hilo_callers_never_overlap(backend: Backend) -> None:
    async def body(first: Storage, second: Storage) -> None:
        calls = [(first if i % 2 else second).next_hilo_range("Db", "users", 1 + i % 7) for i in range(60)]
        ranges = sorted(await asyncio.gather(*calls))
        for (_, high), (low, _) in zip(ranges, ranges[1:], strict=False):
            assert low == high + 1
        assert ranges[0][0] == 1
        assert ranges[-1][1] == sum(1 + i % 7 for i in range(60))

    backend.run_two_nodes(body)


# Settings ---------------------------------------------------------------------------------------------------------


def test_settings_get_put_delete(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.get_setting("allowed_ips") is None
        await storage.put_setting("allowed_ips", ["10.0.0.0/8", "::1"])
        assert await storage.get_setting("allowed_ips") == ["10.0.0.0/8", "::1"]
        await storage.put_setting("allowed_ips", {"replaced": True, "n": 2})
        assert await storage.get_setting("allowed_ips") == {"replaced": True, "n": 2}
        await storage.put_setting("text", "plain")
        assert await storage.get_setting("text") == "plain"
        await storage.delete_setting("allowed_ips")
        await storage.delete_setting("never-set")
        assert await storage.get_setting("allowed_ips") is None
        assert await storage.get_setting("text") == "plain"

    backend.run(body)


def test_a_lease_is_held_by_one_taker_until_it_runs_out(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.take_lease("job", 100.0, 190.0)
        assert not await storage.take_lease("job", 150.0, 240.0)  # held by the first taker until 190
        assert await storage.take_lease("other", 150.0, 240.0)  # leases are independent
        assert await storage.take_lease("job", 190.0, 280.0)  # ran out: the next taker gets it
        assert not await storage.take_lease("job", 200.0, 290.0)

    backend.run(body)


def test_a_lease_given_back_can_be_taken_again_and_only_its_holder_gives_it_back(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.take_lease("renewal", 100.0, 110.0)
        assert not await storage.take_lease("renewal", 101.0, 111.0)
        await storage.release_lease("renewal", 110.0)
        assert await storage.take_lease("renewal", 102.0, 112.0)  # given back: free before it ran out
        await storage.release_lease("renewal", 110.0)  # the old holder's late give-back: not its lease any more
        assert not await storage.take_lease("renewal", 103.0, 113.0)

    backend.run(body)


def test_two_nodes_taking_one_lease_at_once_one_gets_it(backend: Backend) -> None:
    async def body(first: Storage, second: Storage) -> None:
        for round_ in range(20):
            now = 1000.0 * (round_ + 1)
            taken = await asyncio.gather(first.take_lease("job", now, now + 500),
                                         second.take_lease("job", now, now + 500))
            assert sorted(taken) == [False, True], (round_, taken)

    backend.run_two_nodes(body)


def test_two_factor_state_put_load_delete(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.load_two_factor() == {}
        await storage.put_two_factor("AA01", {"LastStep": 1, "Failures": 0, "Sessions": {"s": "2026-11-23"}})
        await storage.put_two_factor("BB02", {"LastStep": 7})
        await storage.put_two_factor("AA01", {"LastStep": 2, "Failures": 3})
        assert await storage.load_two_factor() == {"AA01": {"LastStep": 2, "Failures": 3}, "BB02": {"LastStep": 7}}
        await storage.delete_two_factor(["AA01", "NEVER"])
        assert await storage.load_two_factor() == {"BB02": {"LastStep": 7}}

    backend.run(body)


def test_reopening_keeps_everything(backend: Backend) -> None:
    """The schema is created idempotently: opening an existing store again finds its data."""

    async def write(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.apply_batch("Db", [put("a")], NOW)
        await storage.put_certificates([definition("AA01")])
        await storage.put_setting("k", 1)

    async def read(storage: Storage) -> None:
        assert await storage.count_documents("Db") == 1
        assert len(await storage.load_certificates()) == 1
        assert await storage.get_setting("k") == 1
        [result] = await storage.apply_batch("Db", [put("b")], NOW)
        assert result.document is not None and result.document.etag == 2

    backend.run(write)
    backend.run(read)


# Certificate notifications ----------------------------------------------------------------------------------------


class RecordingWatcher:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[str] | None]] = []
        self.changed = asyncio.Event()
        self.behind = 0
        self.caught_up = 0

    async def certificates_changed(self, thumbprints: list[str] | None) -> None:
        self.events.append(("changed", thumbprints))
        self.changed.set()

    def certificates_behind(self) -> None:
        self.behind += 1

    def certificates_caught_up(self) -> None:
        self.caught_up += 1

    async def certificates_channel_lost(self) -> None:
        self.events.append(("lost", None))
        self.changed.set()

    async def certificates_channel_resumed(self) -> None:
        self.events.append(("resumed", None))
        self.changed.set()

    async def wait_for(self, kind: str, timeout: float = 10.0) -> list[tuple[str, list[str] | None]]:
        async def until() -> None:
            while not any(k == kind for k, _ in self.events):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.events


def test_sqlite_has_nothing_to_watch(tmp_path: Path) -> None:
    async def body(storage: Storage) -> None:
        watcher = RecordingWatcher()
        await storage.watch_certificates(watcher)
        await storage.put_certificates([definition("AA01")])
        await asyncio.sleep(0.05)
        assert watcher.events == []

    Backend("sqlite", None, tmp_path).run(body)


@pytest.mark.postgres
def test_postgres_notifies_other_nodes_of_certificate_changes(postgres_url: str, tmp_path: Path) -> None:
    async def body(writer: Storage, reader: Storage) -> None:
        watcher = RecordingWatcher()
        await reader.watch_certificates(watcher)
        # A writer that listens too returns only once its own listener heard the change (an echo token, which
        # is never reported as a change): by then PostgreSQL has handed it to every listening node.
        own = RecordingWatcher()
        await writer.watch_certificates(own)
        await writer.put_certificates([definition("AA01"), definition("BB02")])
        assert writer._echoes == {}  # type: ignore[attr-defined]
        events = await watcher.wait_for("changed")
        assert sorted(t for _, batch in events for t in batch or []) == ["AA01", "BB02"]
        assert watcher.behind >= 1 and watcher.caught_up >= 1
        watcher.events.clear()
        # Settings and last-used times are not certificate changes; a rolled-back write sends nothing.
        await writer.record_last_used({"AA01": NOW})
        await writer.put_setting("x", 1)
        await writer.create_database("Db", "dbid", NOW)
        with pytest.raises(ChangeVectorMismatch):
            await writer.apply_batch("Db", [put("a", expected="A:1-nope")], NOW)
        await writer.delete_certificates(["AA01"])
        events = await watcher.wait_for("changed")
        assert events == [("changed", ["AA01"])]
        watcher.events.clear()
        await writer.delete_database("Db", [definition("BB02", Permissions={})])
        assert await watcher.wait_for("changed") == [("changed", ["BB02"])]
        await own.wait_for("changed")
        assert all(not t.startswith("echo:") for _, batch in own.events + watcher.events for t in batch or [])

    Backend("postgres", postgres_url, tmp_path).run_two_nodes(body)


@pytest.mark.postgres
def test_postgres_reports_a_lost_channel_and_its_return(postgres_url: str, tmp_path: Path) -> None:
    async def body(writer: Storage, reader: Storage) -> None:
        watcher = RecordingWatcher()
        await reader.watch_certificates(watcher)
        # Cut the listening connection from the server side, as a PostgreSQL restart or failover would.
        killed = await writer._pool.fetchval(  # type: ignore[attr-defined]
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'roost certificate listener%'"
        )
        assert killed == 1
        events = await watcher.wait_for("resumed")
        assert [kind for kind, _ in events] == ["lost", "resumed"]
        watcher.events.clear()
        await writer.put_certificates([definition("CC03")])
        assert await watcher.wait_for("changed") == [("changed", ["CC03"])]

    Backend("postgres", postgres_url, tmp_path).run_two_nodes(body)


# HiLo as RavenDB keeps it: the document Raven/Hilo/<tag> ----------------------------------------------------------


def test_hilo_document_ranges_follow_max_and_are_written_as_the_document(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        assert await storage.take_hilo_document_range("Db", "users", 32, 0, NOW) == (1, 32)
        [doc] = await storage.get_documents("db", ["raven/hilo/USERS"])
        assert doc is not None and (doc.id, doc.collection, doc.body) == ("Raven/Hilo/users", "@hilo", {"Max": 32})
        # A client stored the document: the next range starts after its Max, and other properties are kept.
        await storage.apply_batch("Db", [PutCommand("Raven/Hilo/users", "@hilo", {"Max": 100, "Note": "x"}, {})], NOW)
        assert await storage.take_hilo_document_range("Db", "users", 64, 0, NOW) == (101, 164)
        [doc] = await storage.get_documents("Db", ["Raven/Hilo/users"])
        assert doc is not None and doc.body == {"Max": 164, "Note": "x"}
        assert await storage.take_hilo_document_range("Db", "users", 32, 500, NOW) == (501, 532)  # lastMax
        # Return: only the last range handed out, only when last is inside it.
        assert await storage.return_hilo_document_range("Db", "users", 532, 510, NOW) is True
        assert await storage.return_hilo_document_range("Db", "users", 532, 510, NOW) is False
        assert await storage.take_hilo_document_range("Db", "users", 32, 0, NOW) == (511, 542)
        assert await storage.return_hilo_document_range("Db", "orders", 32, 1, NOW) is False
        with pytest.raises(LookupError):
            await storage.take_hilo_document_range("Nope", "users", 32, 0, NOW)

    backend.run(body)


def test_hilo_document_refuses_a_max_that_is_not_a_whole_number(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        for bad in ("12", 1.5, True, -1, 1 << 63):
            await storage.apply_batch("Db", [PutCommand("Raven/Hilo/bad", "@hilo", {"Max": bad}, {})], NOW)
            with pytest.raises(InvalidHiLoDocument):
                await storage.take_hilo_document_range("Db", "bad", 32, 0, NOW)
        [doc] = await storage.get_documents("Db", ["Raven/Hilo/bad"])
        assert doc is not None and doc.body == {"Max": 1 << 63}  # refused: nothing written

    backend.run(body)


def test_hilo_document_continues_an_older_roosts_counter(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        assert await storage.next_hilo_range("Db", "users", 40) == (1, 40)  # the table an older Roost used
        assert await storage.take_hilo_document_range("Db", "users", 32, 0, NOW) == (41, 72)

    backend.run(body)


def test_concurrent_hilo_document_callers_never_overlap_two_nodes(backend: Backend) -> None:
    async def body(first: Storage, second: Storage) -> None:
        await first.create_database("Db", "dbid", NOW)
        calls = [(first if i % 2 else second).take_hilo_document_range("Db", "users", 1 + i % 7, 0, NOW)
                 for i in range(40)]
        ranges = sorted(await asyncio.gather(*calls))
        for (_, high), (low, _) in zip(ranges, ranges[1:], strict=False):
            assert low == high + 1
        assert ranges[0][0] == 1 and ranges[-1][1] == sum(1 + i % 7 for i in range(40))
        [doc] = await second.get_documents("Db", ["Raven/Hilo/users"])
        assert doc is not None and doc.body["Max"] == ranges[-1][1]

    backend.run_two_nodes(body)


def test_collection_counts_and_last_etag(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        assert await storage.collection_counts("Db") is None
        await storage.create_database("Db", "dbid", NOW)
        assert await storage.collection_counts("db") == (0, {})
        await storage.apply_batch("Db", [put("users/1"), put("users/2", collection="USERS"), put("orders/1", collection=None)],
                                  NOW)
        last_etag, counts = await storage.collection_counts("Db") or (0, {})
        assert last_etag == 3 and sorted(counts.values()) == [1, 2] and counts[None] == 1
        await storage.apply_batch("Db", [DeleteCommand("users/1")], NOW)
        assert (await storage.collection_counts("Db") or (0, {}))[1][None] == 1

    backend.run(body)


def test_counters_apply_in_the_batch_kept_by_a_put_and_deleted_with_the_document(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.apply_batch("Db", [put("users/1")], NOW)
        likes = CountersCommand("users/1", (CounterOperation("Increment", "Likes", 5),))
        [result] = await storage.apply_batch("Db", [likes], NOW)
        assert result.kind == "Counters" and result.counters == (("Likes", 5),)
        assert result.document is not None and result.document.etag == 2  # the document changed with it
        [result] = await storage.apply_batch(
            "Db", [CountersCommand("users/1", (CounterOperation("Increment", "likes", -1),
                                               CounterOperation("Get", "missing")))], NOW)
        assert result.counters == (("Likes", 4), ("missing", None))
        await storage.apply_batch("Db", [put("users/1", {"Name": "edited"})], NOW)
        [doc] = await storage.get_documents("Db", ["users/1"])
        assert doc is not None and doc.metadata[COUNTER_VALUES] == {"Likes": 4} and doc.body == {"Name": "edited"}
        overflow = CountersCommand("users/1", (CounterOperation("Increment", "Likes", (1 << 63) - 1),))
        with pytest.raises(InvalidCounterOperation):
            await storage.apply_batch("Db", [put("users/2"), overflow], NOW)
        assert (await storage.get_documents("Db", ["users/2"])) == [None]  # the whole batch rolled back
        await storage.apply_batch("Db", [DeleteCommand("users/1"), put("users/1")], NOW)
        [doc] = await storage.get_documents("Db", ["users/1"])
        assert doc is not None and COUNTER_VALUES not in doc.metadata
        with pytest.raises(InvalidCounterOperation):
            await storage.apply_batch("Db", [CountersCommand("users/none", likes.operations)], NOW)

    backend.run(body)


def test_attachments_are_staged_linked_read_in_chunks_and_removed_with_the_document(backend: Backend) -> None:
    async def chunks(storage: Storage, token: str) -> list[bytes]:
        return [chunk async for chunk in storage.read_attachment_chunks("Db", token)]

    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.apply_batch("Db", [put("users/1")], NOW)
        for seq, data in enumerate((b"ab", b"cd")):
            await storage.write_attachment_chunk("Db", "t1", seq, data)
        entry = {"Name": "a.txt", "Hash": "h", "ContentType": "text/plain", "Size": 4, "Token": "t1"}
        stored = await storage.attach("db", "USERS/1", entry, NOW)
        assert stored.metadata["@attachments"] == [entry] and stored.etag == 2
        assert await chunks(storage, "t1") == [b"ab", b"cd"]
        await storage.write_attachment_chunk("Db", "t2", 0, b"new")
        await storage.attach("Db", "users/1", {**entry, "Name": "A.TXT", "Token": "t2"}, NOW)  # replaces a.txt
        assert await chunks(storage, "t1") == [] and await chunks(storage, "t2") == [b"new"]
        with pytest.raises(InvalidAttachment):
            await storage.attach("Db", "users/none", entry, NOW)
        assert await storage.detach("Db", "users/1", "nope", NOW) is False
        await storage.write_attachment_chunk("Db", "t3", 0, b"x")
        await storage.attach("Db", "users/1", {**entry, "Name": "b", "Token": "t3"}, NOW)
        assert await storage.detach("Db", "users/1", "a.txt", NOW) is True
        assert await chunks(storage, "t2") == []
        await storage.apply_batch("Db", [put("users/1", {"Name": "edited"})], NOW)  # a PUT keeps them
        [doc] = await storage.get_documents("Db", ["users/1"])
        assert doc is not None and [a["Name"] for a in doc.metadata["@attachments"]] == ["b"]
        await storage.apply_batch("Db", [DeleteCommand("users/1")], NOW)
        assert await chunks(storage, "t3") == []

    backend.run(body)


def test_attachment_and_counter_counts_follow_the_documents(backend: Backend) -> None:
    async def body(storage: Storage) -> None:
        await storage.create_database("Db", "dbid", NOW)
        await storage.create_database("Other", "dbid2", NOW)
        assert await storage.attachment_and_counter_counts("Db") == (0, 0, 0)
        await storage.apply_batch("Db", [put("users/1"), put("users/2"), put("users/3")], NOW)
        await storage.apply_batch("Other", [put("users/1")], NOW)
        entry = {"Name": "a.txt", "Hash": "H1", "ContentType": "text/plain", "Size": 2, "Token": "t1"}
        await storage.attach("Db", "users/1", entry, NOW)
        await storage.attach("Db", "users/1", {**entry, "Name": "b.txt", "Token": "t2"}, NOW)  # same content
        await storage.attach("Db", "users/2", {**entry, "Hash": "H2", "Token": "t3"}, NOW)
        await storage.attach("Other", "users/1", {**entry, "Token": "t4"}, NOW)  # another database's
        counters = (CounterOperation("Increment", "Likes", 1), CounterOperation("Increment", "Views", 3))
        await storage.apply_batch("Db", [CountersCommand("users/3", counters)], NOW)
        assert await storage.attachment_and_counter_counts("Db") == (3, 2, 2)
        await storage.apply_batch("Db", [DeleteCommand("users/1"), DeleteCommand("users/3")], NOW)
        assert await storage.attachment_and_counter_counts("Db") == (1, 1, 0)
        assert await storage.attachment_and_counter_counts("Other") == (1, 1, 0)

    backend.run(body)
