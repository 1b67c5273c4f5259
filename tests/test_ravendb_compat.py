"""The pinned RavenDB Python client beyond CRUD: HiLo documents, conditional GETs, stats, lazy operations (multi_get),
counters and attachments, against a real secured Roost server process. Each acceptance has its refusal beside it."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from ravendb.data.operation import AttachmentType
from ravendb.documents.commands.crud import HeadDocumentCommand
from ravendb.documents.operations.attachments import (
    DeleteAttachmentOperation,
    GetAttachmentOperation,
    PutAttachmentOperation,
)
from ravendb.documents.operations.configuration.operations import GetClientConfigurationOperation
from ravendb.documents.operations.counters import (
    CounterBatch,
    CounterBatchOperation,
    CounterOperation,
    CounterOperationType,
    DocumentCountersOperation,
    GetCountersOperation,
)
from ravendb.documents.operations.statistics import GetCollectionStatisticsOperation, GetStatisticsOperation
from ravendb.exceptions.exceptions import AuthorizationException

from conftest import RunningServer, start_server
from roost.backups.format import BackupFormatError, _chunk
from test_backups import keypair, roost
from test_ravendb_client import Target, User, client, new_database


@pytest.fixture(scope="module")
def secured(server: RunningServer) -> Target:
    return Target(server, server.admin_pem, server.ca_pem)


# HiLo ------------------------------------------------------------------------------------------------------------


def test_hilo_state_is_the_raven_hilo_document(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with store.open_session() as session:
            users = [User(f"u{n}") for n in range(33)]  # one more than the first range: a second range at once
            for user in users:
                session.store(user)
            session.save_changes()
            assert (users[0].Id, users[32].Id) == ("users/1-A", "users/33-A")
        with store.open_session() as session:
            hilo = session.load("Raven/Hilo/users", dict)
            # The second range came straight after the first: twice the size (33..96), RavenDB's capacity rule.
            assert hilo["Max"] == 96
            assert session.advanced.get_metadata_for(hilo)["@collection"] == "@hilo"
    # The store closed and returned 34..96: Max is lowered to what was used.
    with client(secured, database) as store:
        with store.open_session() as session:
            hilo = session.load("Raven/Hilo/users", dict)
            assert hilo["Max"] == 33
            # A client that stores the document sets where the next range starts.
            hilo["Max"] = 1000
            session.save_changes()
        with store.open_session() as session:
            user = User("after")
            session.store(user)
            session.save_changes()
            assert user.Id == "users/1001-A"


def test_a_hilo_document_without_a_whole_max_is_refused(secured: Target) -> None:
    database = new_database(secured)
    admin = secured.server.admin()
    base = f"{secured.url}/databases/{database}"
    for bad in ('"12"', "1.5", "-1", "true", str(1 << 63)):
        response = admin.put(f"{base}/docs?id=Raven/Hilo/users", data=f'{{"Max": {bad}}}')
        assert response.status_code == 400, bad
        assert "whole number" in response.json()["Message"]
    assert admin.get(f"{base}/docs?id=Raven/Hilo/users").status_code == 404  # nothing was written
    with client(secured, database) as store, store.open_session() as session:
        session.store(User("first"))
        session.save_changes()
        assert session.load("Raven/Hilo/users", dict)["Max"] == 32


def test_hilo_document_near_the_limit_gives_400_not_an_overflow(secured: Target) -> None:
    database = new_database(secured)
    admin = secured.server.admin()
    base = f"{secured.url}/databases/{database}"
    assert admin.put(f"{base}/docs?id=Raven/Hilo/users", data=f'{{"Max": {(1 << 63) - 2}}}').status_code == 201
    response = admin.get(f"{base}/hilo/next?tag=users")
    assert response.status_code == 400 and "smaller whole Max" in response.json()["Message"]
    assert admin.get(f"{base}/docs?id=Raven/Hilo/users").json()["Results"][0]["Max"] == (1 << 63) - 2


def test_a_reader_loads_the_hilo_document_but_cannot_take_a_range(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    with client(secured, database) as store, store.open_session() as session:
        session.store(User("seed"))
        session.save_changes()
    reader = secured.server.generate("hilo-doc-reader", "ValidUser", {database: "Read"}, directory=tmp_path)
    with client(secured, database, pem=reader.pem_path) as store, store.open_session() as session:
        hilo = session.load("Raven/Hilo/users", dict)
        assert hilo["Max"] == 1  # the writer returned 2..32 on close
        with pytest.raises(AuthorizationException):
            session.store(User("nope"))
        hilo["Max"] = 5000
        with pytest.raises(AuthorizationException):
            session.save_changes()


# Conditional GET and HEAD ---------------------------------------------------------------------------------------


def test_conditional_get_and_head_answer_304_with_the_change_vector(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with store.open_session() as session:
            session.store(User("v1"), "users/1")
            session.store(User("boss"), "users/boss")
            session.save_changes()
        executor = store.get_request_executor()
        head = HeadDocumentCommand("users/1", None)
        executor.execute_command(head)
        change_vector = head.result
        assert change_vector and change_vector.startswith("A:")
        same = HeadDocumentCommand("users/1", change_vector)
        executor.execute_command(same)
        # 304 (7.2.7 then sets result from its empty cache, None: its own 304 branch is never reached).
        assert same.status_code == 304
        missing = HeadDocumentCommand("users/none", None)
        executor.execute_command(missing)
        assert missing.result is None
        assert store.open_session().advanced.exists("users/1")
    admin = secured.server.admin()
    url = f"{secured.url}/databases/{database}/docs?&id=users%2F1"
    first = admin.get(url)
    assert first.headers["ETag"] == f'"{change_vector}"'
    cached = admin.get(url, headers={"If-None-Match": f'"{change_vector}"'})
    assert (cached.status_code, cached.content) == (304, b"")
    assert admin.head(url, headers={"If-None-Match": change_vector}).status_code == 304
    # Refusals: a stale or foreign change vector gets the document again; a missing one is 404 with no ETag.
    stale = admin.get(url, headers={"If-None-Match": '"A:1-other"'})
    assert stale.status_code == 200 and stale.json()["Results"][0]["name"] == "v1"
    gone = admin.head(f"{secured.url}/databases/{database}/docs?id=users/none")
    assert gone.status_code == 404 and "ETag" not in gone.headers
    # Several ids or includes: one ETag over all of them, which changes when any of them does.
    many = f"{secured.url}/databases/{database}/docs?&id=users%2F1&id=users%2Fboss"
    etag = admin.get(many).headers["ETag"]
    assert admin.get(many, headers={"If-None-Match": etag}).status_code == 304
    with client(secured, database) as store, store.open_session() as session:
        session.load("users/boss", User).name = "new boss"
        session.save_changes()
    changed = admin.get(many, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_the_clients_http_cache_never_serves_a_stale_document(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with store.open_session() as session:
            session.store(User("v1"), "users/1")
            session.save_changes()
        for expected in ("v1", "v1"):  # the second load is a 304 answered from the client's cache
            with store.open_session() as session:
                assert session.load("users/1", User).name == expected
        assert len(store.get_request_executor().cache) >= 1
        with store.open_session() as session:
            session.load("users/1", User).name = "v2"
            session.save_changes()
        with store.open_session() as session:
            assert session.load("users/1", User).name == "v2"


# Statistics, client configuration, multi_get ------------------------------------------------------------------


def test_stats_collection_stats_and_client_configuration(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with store.open_session() as session:
            session.store(User("a"), "users/a")
            session.store(User("b"), "users/b")
            session.save_changes()
        stats = store.maintenance.send(GetStatisticsOperation())
        assert (stats.count_of_documents, stats.count_of_indexes, stats.indexes) == (2, 0, [])
        assert stats.last_doc_etag == 2 and stats.database_change_vector.startswith("A:2-")
        collections = store.maintenance.send(GetCollectionStatisticsOperation())
        assert (collections.count_of_documents, collections.collections) == (2, {"Users": 2})
        configuration = store.maintenance.send(GetClientConfigurationOperation())
        assert configuration.configuration is None  # none set: the client keeps its conventions
    # Refusals: a certificate without access to the database, and a database that does not exist.
    other = secured.server.generate("stats-other", "ValidUser", {new_database(secured): "Read"}, directory=tmp_path)
    with client(secured, database, pem=other.pem_path) as store, pytest.raises(AuthorizationException):
        store.maintenance.send(GetStatisticsOperation())
    admin = secured.server.admin()
    for route in ("stats", "collections/stats", "configuration/client"):
        missing = admin.get(f"{secured.url}/databases/no-such-db/{route}")
        assert (missing.status_code, missing.headers.get("Database-Missing")) == (503, "no-such-db"), route


def test_lazy_operations_go_in_one_multi_get(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with store.open_session() as session:
            for n in range(3):
                session.store(User(f"u{n}", n), f"users/{n}")
            session.save_changes()
        with store.open_session() as session:
            first = session.advanced.lazily.load(["users/0"], User)
            second = session.advanced.lazily.load(["users/1", "users/none"], User)
            adults = session.query(object_type=User).where_greater_than("age", 0).lazily()
            before = session.advanced.number_of_requests
            session.advanced.eagerly.execute_all_pending_lazy_operations()
            assert session.advanced.number_of_requests == before + 1  # one round trip for all three
            assert first.value["users/0"].name == "u0"
            assert second.value["users/1"].name == "u1" and second.value["users/none"] is None
            assert sorted(u.name for u in adults.value) == ["u1", "u2"]


def test_multi_get_reads_only_this_database_as_a_direct_request_would(secured: Target, tmp_path: Path) -> None:
    mine, other = new_database(secured), new_database(secured)
    admin = secured.server.admin()
    for database in (mine, other):
        assert admin.put(f"{secured.url}/databases/{database}/docs?id=users/1", json={"db": database}).ok
    reader = secured.server.generate("multi-reader", "ValidUser", {mine: "Read"}, directory=tmp_path)
    session = secured.server.session(reader.pem_path)

    def multi_get(database: str, *inner: dict[str, Any]) -> requests.Response:
        return session.post(f"{secured.url}/databases/{database}/multi_get", json={"Requests": list(inner)})

    ok = multi_get(mine, {"Url": f"/databases/{mine}/docs", "Query": "?id=users/1"},
                   {"Url": f"/databases/{mine}/stats", "Query": ""})
    assert ok.status_code == 200
    [doc, stats] = ok.json()["Results"]
    assert doc["StatusCode"] == 200 and doc["Result"]["Results"][0]["db"] == mine and "ETag" in doc["Headers"]
    assert stats["Result"]["CountOfDocuments"] == 1
    # Refused inside the answer, never dispatched: another database (also spelled with '..'), a write route, a
    # write method, a path outside databases; and the outer request itself for a database the reader lacks.
    refused = multi_get(mine, {"Url": f"/databases/{other}/docs", "Query": "?id=users/1"},
                        {"Url": f"/databases/{mine}/../{other}/docs", "Query": "?id=users/1"},
                        {"Url": f"/databases/{mine}/hilo/next", "Query": "?tag=users"},
                        {"Url": f"/databases/{mine}/docs", "Query": "?id=users/2", "Method": "PUT", "Content": {}},
                        {"Url": "/admin/certificates", "Query": ""},
                        {"Url": f"/databases/{mine}/multi_get", "Method": "POST", "Content": {"Requests": []}})
    assert refused.status_code == 200
    statuses = [r["StatusCode"] for r in refused.json()["Results"]]
    assert statuses == [400, 400, 403, 400, 400, 400]
    assert all(other not in json.dumps(r["Result"].get("Results", "")) for r in refused.json()["Results"])
    assert multi_get(other, {"Url": f"/databases/{other}/docs", "Query": "?id=users/1"}).status_code == 403
    assert admin.get(f"{secured.url}/databases/{mine}/docs?id=users/2").status_code == 404  # the PUT never ran
    for bad in ({"Requests": "x"}, {"Requests": [1]}, {"Requests": [{"Url": 5}]}):
        response = session.post(f"{secured.url}/databases/{mine}/multi_get", json=bad)
        assert response.status_code in (200, 400)
        if response.status_code == 200:
            assert response.json()["Results"][0]["StatusCode"] == 400


# Counters -------------------------------------------------------------------------------------------------------


def test_counters_for_increment_get_delete_and_metadata(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with store.open_session() as session:
            session.store(User("liked"), "users/1")
            session.counters_for("users/1").increment("Likes", 5)
            session.counters_for("users/1").increment("views")
            session.save_changes()
        with store.open_session() as session:
            user = session.load("users/1", User)
            assert sorted(session.advanced.get_metadata_for(user)["@counters"]) == ["Likes", "views"]
            assert session.counters_for("users/1").get("likes") == 5  # names compare case-insensitively
        with store.open_session() as session:
            counters = session.counters_for("users/1")
            counters.increment("Likes", -2)
            counters.delete("views")
            session.save_changes()
        with store.open_session() as session:
            # (the client's CaseInsensitiveDict hands the names back lower-cased)
            assert {k.lower(): v for k, v in session.counters_for("users/1").get_all().items()} == {"likes": 3}
            user = session.load("users/1", User)
            user.name = "edited"  # a PUT of the document keeps its counters
            session.save_changes()
        detail = store.operations.send(GetCountersOperation("users/1", ["Likes", "missing"]))
        # The client de-duplicates the names through a set: the order is its own. A missing counter is null.
        assert sorted((c.counter_name, c.total_value) if c else ("", None) for c in detail.counters) == [
            ("", None), ("Likes", 3)]
        # CounterBatchOperation: the operations API, several documents in one transaction.
        batch = CounterBatch(documents=[DocumentCountersOperation("users/1", [
            CounterOperation("Likes", CounterOperationType.INCREMENT, 10)])])
        assert store.operations.send(CounterBatchOperation(batch)).counters[0].total_value == 13
        with store.open_session() as session:
            session.delete("users/1")
            session.save_changes()
        with store.open_session() as session:
            session.store(User("again"), "users/1")
            session.save_changes()
        with store.open_session() as session:
            assert session.counters_for("users/1").get_all() == {}  # removed with their document


def test_counters_are_refused_for_readers_missing_documents_and_bad_deltas(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    with client(secured, database) as store, store.open_session() as session:
        session.store(User("seed"), "users/1")
        session.counters_for("users/1").increment("Likes", 1)
        session.save_changes()
    reader = secured.server.generate("counter-reader", "ValidUser", {database: "Read"}, directory=tmp_path)
    with client(secured, database, pem=reader.pem_path) as store, store.open_session() as session:
        assert session.counters_for("users/1").get("Likes") == 1
        session.counters_for("users/1").increment("Likes", 1)
        with pytest.raises(AuthorizationException):
            session.save_changes()
    admin = secured.server.admin()
    # RavenDB's answer for counters on a missing document: 404 DocumentDoesNotExistException (the 7.2.7 client
    # reads no body on a 404 from bulk_docs and raises ValueError; the operations API raises the typed exception).
    with client(secured, database) as store, store.open_session() as session:
        session.counters_for("users/none").increment("Likes", 1)
        with pytest.raises(ValueError, match="None response"):
            session.save_changes()
    missing = admin.post(f"{secured.url}/databases/{database}/bulk_docs", json={"Commands": [{
        "Id": "users/none", "Type": "Counters", "Counters": {"DocumentId": "users/none", "Operations": [
            {"Type": "Increment", "CounterName": "Likes", "Delta": 1}]}}]})
    assert missing.status_code == 404 and missing.json()["Type"].endswith("DocumentDoesNotExistException")
    url = f"{secured.url}/databases/{database}/counters"
    for operation in ({"Type": "Increment", "CounterName": "Likes", "Delta": "1"},
                      {"Type": "Increment", "CounterName": "Likes", "Delta": 1 << 63},
                      {"Type": "Increment", "CounterName": "Likes", "Delta": (1 << 63) - 1},  # overflows 1
                      {"Type": "Increment", "CounterName": "", "Delta": 1},
                      {"Type": "Rename", "CounterName": "Likes"}):
        response = admin.post(url, json={"Documents": [{"DocumentId": "users/1", "Operations": [operation]}]})
        assert response.status_code == 400, operation
    assert admin.get(f"{url}?docId=users/1&counter=Likes").json()["Counters"][0]["TotalValue"] == 1  # unchanged
    assert admin.get(f"{url}?docId=users/none").status_code == 404
    assert admin.get(url).status_code == 400


# Attachments ----------------------------------------------------------------------------------------------------


def test_attachments_put_get_head_delete_with_the_client(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    content = b"\x89PNG" + bytes(range(256)) * 40
    with client(secured, database) as store:
        with store.open_session() as session:
            session.store(User("pictured"), "users/1")
            session.save_changes()
        details = store.operations.send(PutAttachmentOperation("users/1", "photo.png", content, "image/png"))
        assert (details.name, details.size, details.content_type) == ("photo.png", len(content), "image/png")
        expected_hash = base64.b64encode(hashlib.blake2b(content, digest_size=32).digest()).decode()
        assert details.hash == expected_hash
        with store.open_session() as session:
            user = session.load("users/1", User)
            [entry] = session.advanced.get_metadata_for(user)["@attachments"]
            assert dict(entry) == {"Name": "photo.png", "Hash": expected_hash, "ContentType": "image/png",
                                   "Size": len(content)}
            user.name = "renamed"  # a PUT of the document keeps its attachments
            session.save_changes()
        result = store.operations.send(GetAttachmentOperation("users/1", "PHOTO.png", AttachmentType.document, None))
        assert result.data == content and result.details.hash == expected_hash
        result.close()
        admin = secured.server.admin()
        url = f"{secured.url}/databases/{database}/attachments?id=users/1&name=photo.png"
        head = admin.head(url)
        assert head.status_code == 200 and head.headers["Attachment-Size"] == str(len(content)) and not head.content
        # Read gets, ReadWrite changes.
        reader = secured.server.generate("attachment-reader", "ValidUser", {database: "Read"}, directory=tmp_path)
        as_reader = secured.server.session(reader.pem_path)
        assert as_reader.get(url).content == content
        assert as_reader.put(url, data=b"x").status_code == 403
        assert as_reader.delete(url).status_code == 403
        # Refusals: no such document, no such attachment, a bad name; nothing is created.
        base = f"{secured.url}/databases/{database}/attachments"
        assert admin.put(f"{base}?id=users/none&name=a", data=b"x").status_code == 404
        assert admin.get(f"{base}?id=users/1&name=other").status_code == 404
        assert admin.put(f"{base}?id=users/1&name=", data=b"x").status_code == 400
        store.operations.send(DeleteAttachmentOperation("users/1", "photo.png"))
        assert admin.get(url).status_code == 404
        store.operations.send(PutAttachmentOperation("users/1", "again", b"abc", "text/plain"))
        with store.open_session() as session:
            session.delete("users/1")
            session.save_changes()
        with store.open_session() as session:
            session.store(User("new"), "users/1")
            session.save_changes()
        assert admin.get(f"{base}?id=users/1&name=again").status_code == 404  # removed with the document


def test_session_attachments_go_in_the_batch_and_count_in_stats(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with store.open_session() as session:
            user = User("pictured")
            session.store(user, "users/1")
            session.advanced.attachments.store(user, "photo.png", b"\x89PNG-1", "image/png")
            session.advanced.attachments.store(user, "notes.txt", b"notes", "text/plain")
            session.store(User("other"), "users/2")
            session.advanced.attachments.store("users/2", "other.png", b"\x89PNG-2", "image/png")
            session.save_changes()
        # The same content again (the client refuses equal contents in one batch): counted once as unique.
        store.operations.send(PutAttachmentOperation("users/2", "copy.png", b"\x89PNG-1", "image/png"))
        with store.open_session() as session:
            loaded = session.load("users/1", User)
            names = sorted(a.name for a in session.advanced.attachments.get_names(loaded))
            assert names == ["notes.txt", "photo.png"]
        result = store.operations.send(GetAttachmentOperation("users/1", "photo.png", AttachmentType.document, None))
        assert result.data == b"\x89PNG-1" and result.details.content_type == "image/png"
        result.close()
        with store.open_session() as session:
            session.counters_for("users/2").increment("likes", 2)
            session.counters_for("users/2").increment("views", 1)
            session.save_changes()
        stats = store.maintenance.send(GetStatisticsOperation())
        assert (stats.count_of_attachments, stats.count_of_unique_attachments, stats.count_of_counter_entries) == (
            4, 3, 2)
        with store.open_session() as session:  # deleted in a session batch too
            session.advanced.attachments.delete("users/1", "notes.txt")
            session.save_changes()
        stats = store.maintenance.send(GetStatisticsOperation())
        assert stats.count_of_attachments == 3
    # Refusals: a reader's batch, an attachment of a document that does not exist, a stream missing; nothing stored.
    reader = secured.server.generate("session-attachment-reader", "ValidUser", {database: "Read"}, directory=tmp_path)
    with client(secured, database, pem=reader.pem_path) as store, store.open_session() as session:
        session.advanced.attachments.store("users/1", "sneaky.txt", b"x", "text/plain")
        with pytest.raises(AuthorizationException):
            session.save_changes()
    admin = secured.server.admin()
    url = f"{secured.url}/databases/{database}/bulk_docs"
    missing = {"Commands": [{"Id": "users/1", "Type": "PUT", "Document": {"name": "changed"}},
                            {"Id": "users/none", "Name": "a.txt", "Type": "AttachmentPUT", "ContentType": "text/plain"}]}
    response = admin.post(url, files={"main": (None, json.dumps(missing)), "a.txt": ("a.txt", b"abc", "text/plain")})
    assert response.status_code == 404 and "users/none" in response.json()["Message"]
    two = {"Commands": [{"Id": "users/1", "Name": "b.txt", "Type": "AttachmentPUT", "ContentType": "text/plain"},
                        {"Id": "users/1", "Name": "c.txt", "Type": "AttachmentPUT", "ContentType": "text/plain"}]}
    response = admin.post(url, files={"main": (None, json.dumps(two)), "b.txt": ("b.txt", b"abc", "text/plain")})
    assert response.status_code == 400 and "attachment stream" in response.json()["Message"]
    document = admin.get(f"{secured.url}/databases/{database}/docs?id=users/1").json()["Results"][0]
    assert document["name"] == "pictured"
    assert [a["Name"] for a in document["@metadata"]["@attachments"]] == ["photo.png"]
    stats = admin.get(f"{secured.url}/databases/{database}/stats").json()
    assert stats["CountOfAttachments"] == 3


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_50_mb_attachment_streams_both_ways_with_flat_server_memory(tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    running = start_server(tmp_path / "data", "--Http.MaxBodySize=67108864")
    try:
        admin = running.admin()
        database = f"big-{uuid.uuid4().hex[:6]}"
        assert admin.put(f"{running.url}/admin/databases?name={database}").status_code == 201
        assert admin.put(f"{running.url}/databases/{database}/docs?id=files/1", json={"n": 1}).status_code == 201
        url = f"{running.url}/databases/{database}/attachments?id=files/1&name=big.bin&contentType=application/x"
        before = _peak_rss_kb(running.process.pid)
        block = bytes(range(256)) * 4096  # 1 MiB

        def body() -> Iterator[bytes]:
            for _ in range(size // len(block)):
                yield block

        put = admin.put(url, data=body())  # chunked: no Content-Length, streamed
        assert put.status_code == 201, put.text
        assert put.json()["Size"] == size
        digest = hashlib.blake2b(digest_size=32)
        received = 0
        with admin.get(url, stream=True) as got:
            assert got.headers["Attachment-Size"] == str(size)
            for chunk in got.iter_content(1024 * 1024):
                digest.update(chunk)
                received += len(chunk)
        assert received == size and base64.b64encode(digest.digest()).decode() == put.json()["Hash"]
        growth_mb = (_peak_rss_kb(running.process.pid) - before) / 1024
        print(f"server peak RSS growth for a 50 MB attachment up and down: {growth_mb:.1f} MB")
        assert growth_mb < 25  # the body was never held whole (50 MB)
        # Refusal: beyond the body limit, a 413 and nothing linked.
        too_big = admin.put(url.replace("big.bin", "huge.bin"), data=iter([block] * 65))
        assert too_big.status_code == 413
        doc = admin.get(f"{running.url}/databases/{database}/docs?id=files/1").json()["Results"][0]
        assert [a["Name"] for a in doc["@metadata"]["@attachments"]] == ["big.bin"]
    finally:
        running.stop()


def test_counters_and_attachments_are_in_backups(fresh_server: RunningServer, tmp_path: Path) -> None:
    target = Target(fresh_server, fresh_server.admin_pem, fresh_server.ca_pem)
    database = new_database(target)
    content = bytes(range(256)) * 5000  # more than one 1 MiB chunk
    with client(target, database) as store:
        with store.open_session() as session:
            session.store(User("kept"), "users/1")
            session.counters_for("users/1").increment("Likes", 7)
            session.save_changes()
        store.operations.send(PutAttachmentOperation("users/1", "file.bin", content, "application/x"))
    key, public = keypair(tmp_path)
    out = tmp_path / "backup.roostbackup"
    data = str(fresh_server.data_dir)
    assert roost("backup", "create", "--data-dir", data, "--db", database, "--out", str(out), "-r", public
                 ).returncode == 0
    restored = roost("backup", "restore", str(out), "--data-dir", data, "--db", "Copy", "-i", str(key))
    assert restored.returncode == 0, restored.stderr
    admin = fresh_server.admin()
    copy = f"{fresh_server.url}/databases/Copy"
    assert admin.get(f"{copy}/counters?docId=users/1&counter=Likes").json()["Counters"][0]["TotalValue"] == 7
    assert admin.get(f"{copy}/attachments?id=users/1&name=file.bin").content == content
    # Refusal: a backup whose attachment chunk is not base64 is refused whole (the format checker's rule).
    with pytest.raises(BackupFormatError):
        _chunk(["token", 0, "not base64!"])


def test_a_malformed_multipart_body_is_a_400_and_changes_nothing(secured: Target) -> None:
    database = new_database(secured)
    admin = secured.server.admin()
    assert admin.put(f"{secured.url}/databases/{database}/docs?id=users/1", json={"name": "one"}).status_code == 201
    bodies = [
        ("multipart/form-data", b"garbage"),  # no boundary
        ("multipart/form-data; boundary=XX", b"garbage"),  # no part starts
        ("multipart/form-data; boundary=XX", b'--XX\r\n\r\n{"Commands":[]}\r\n--XX\r\nbroken'),  # a bad part head
    ]
    # (An attachment upload reads its first part only: what follows it is never parsed.)
    for route, malformed in (("bulk_docs", bodies), ("attachments?id=users/1&name=a.txt", bodies[:2])):
        for content_type, body in malformed:
            method = "POST" if route == "bulk_docs" else "PUT"
            response = admin.request(method, f"{secured.url}/databases/{database}/{route}", data=body,
                                     headers={"Content-Type": content_type})
            assert response.status_code == 400, (route, body, response.text)
            assert "multipart body is malformed" in response.json()["Message"]
    # The twin: a well-formed multipart batch of the same shape is taken.
    response = admin.post(f"{secured.url}/databases/{database}/bulk_docs", data=b'--XX\r\n\r\n{"Commands":[]}\r\n'
                          b"--XX--\r\n", headers={"Content-Type": "multipart/form-data; boundary=XX"})
    assert response.status_code == 201, response.text
    document = admin.get(f"{secured.url}/databases/{database}/docs?id=users/1").json()["Results"][0]
    assert "@attachments" not in document["@metadata"]
