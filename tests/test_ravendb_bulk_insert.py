"""Bulk insert with the pinned RavenDB Python client (``store.bulk_insert()``) against a real secured Roost process:
the stream, its operation id and kill, ReadWrite to write (Read refused), and a bad stream refused with 400 after
exactly the commands the answer names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from ravendb.exceptions.documents.bulkinsert import BulkInsertAbortedException
from ravendb.exceptions.exceptions import AuthorizationException

from conftest import RunningServer, start_server
from test_ravendb_client import Target, User, client, new_database


@pytest.fixture(scope="module")
def secured(server: RunningServer) -> Target:
    return Target(server, server.admin_pem, server.ca_pem)


def _count(target: Target, database: str) -> int:
    stats = target.server.admin().get(f"{target.url}/databases/{database}/stats").json()
    return int(stats["CountOfDocuments"])


def test_bulk_insert_stores_ten_thousand_documents_and_their_counters(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with store.bulk_insert() as bulk:
            for n in range(10_000):
                bulk.store_as(User(f"user {n}", age=n), f"users/{n}")
            bulk.counters_for("users/7").increment("likes", 5)
        with store.open_session() as session:
            user = session.load("users/9999", User)
            assert (user.name, user.age) == ("user 9999", 9999)
            assert session.advanced.get_metadata_for(user)["@collection"] == "Users"
            assert session.counters_for("users/7").get("likes") == 5
        with store.open_session() as session:  # ids from the client's HiLo work as they do in a session
            with store.bulk_insert() as bulk:
                generated = bulk.store(User("hilo"))
            assert session.load(generated, User).name == "hilo"
    assert _count(secured, database) == 10_002  # and Raven/Hilo/users


def test_a_reader_cannot_bulk_insert(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    reader = secured.server.generate("bulk-reader", "ValidUser", {database: "Read"}, directory=tmp_path)
    with client(secured, database, pem=reader.pem_path) as store:
        with pytest.raises((BulkInsertAbortedException, AuthorizationException)):
            with store.bulk_insert() as bulk:
                for n in range(100):
                    bulk.store_as(User(f"r{n}"), f"users/{n}")
    session = secured.server.session(reader.pem_path)
    response = session.post(f"{secured.url}/databases/{database}/bulk_insert?id=1", data=b'[{"Id":"a","Type":"PUT",'
                            b'"Document":{"@metadata":{"@collection":"A"}}}]')
    assert response.status_code == 403
    assert _count(secured, database) == 0
    # A writer on the same database is let in: the refusal was the permission, not the route.
    writer = secured.server.generate("bulk-writer", "ValidUser", {database: "ReadWrite"}, directory=tmp_path)
    with client(secured, database, pem=writer.pem_path) as store, store.bulk_insert() as bulk:
        bulk.store_as(User("w"), "users/w")
    assert _count(secured, database) == 1


def _stream(commands: Iterator[bytes]) -> Iterator[bytes]:
    yield b"["
    first = True
    for command in commands:
        if not first:
            yield b","
        first = False
        yield command
    yield b"]"


def _put(n: int) -> bytes:
    return json.dumps({"Id": f"items/{n}", "Type": "PUT",
                       "Document": {"n": n, "@metadata": {"@collection": "Items"}}}).encode()


def test_a_bad_command_is_refused_after_exactly_the_commands_it_names(secured: Target) -> None:
    database = new_database(secured)
    admin = secured.server.admin()
    url = f"{secured.url}/databases/{database}/bulk_insert?id=42"
    # 2,500 good commands (two whole batches and half of a third), then one that is not a bulk insert command.
    body = b"".join(_stream(iter([*(_put(n) for n in range(2500)), b'{"Id":"x","Type":"DELETE"}', _put(9999)])))
    response = admin.post(url, data=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["Type"] == "Raven.Client.Exceptions.Documents.BulkInsert.BulkInsertProtocolViolationException"
    assert "command #2501" in error["Message"] and "The first 2500 command(s)" in error["Message"]
    assert _count(secured, database) == 2500
    state = admin.get(f"{secured.url}/databases/{database}/operations/state?id=42").json()
    assert state["Status"] == "Faulted"
    # Malformed JSON in the middle of a chunk, a stream that never closes, garbage after the array, and text that
    # is not UTF-8: each a 400, nothing stored from the bad command on.
    for n, bad in enumerate([b'[' + _put(1) + b',{"Id": "a", "Type": "PUT", "Document": {]',
                             b'[' + _put(1) + b',' + _put(2),
                             b'[' + _put(1) + b'] [',
                             b'[' + _put(1) + b',{"Id":"\xff","Type":"PUT","Document":{}}]',
                             b'{"Id":"a"}',
                             b'[' + _put(1) + b',{"Id":"b","Type":"PUT","Document":{"v":NaN}}]']):
        other = new_database(secured)
        response = admin.post(f"{secured.url}/databases/{other}/bulk_insert?id={100 + n}", data=bad)
        assert response.status_code == 400, (bad, response.text)
        stored = 0 if bad.startswith(b"{") else 2 if n == 1 else 1  # n == 1: both complete commands are stored
        assert f"The first {stored} command(s)" in response.json()["Message"]
        assert _count(secured, other) == stored, bad


def test_a_document_split_across_many_chunks_is_parsed_whole(secured: Target) -> None:
    database = new_database(secured)
    big = json.dumps({"Id": "big/1", "Type": "PUT", "Document": {"text": "x" * 300_000, "@metadata": {}}}).encode()

    def trickle() -> Iterator[bytes]:
        data = b"[" + _put(1) + b"," + big + b"," + _put(2) + b"]"
        for start in range(0, len(data), 1000):
            yield data[start:start + 1000]

    response = secured.server.admin().post(f"{secured.url}/databases/{database}/bulk_insert?id=7", data=trickle())
    assert response.status_code == 201, response.text
    doc = secured.server.admin().get(f"{secured.url}/databases/{database}/docs?id=big/1").json()["Results"][0]
    assert len(doc["text"]) == 300_000
    assert _count(secured, database) == 3


def test_attachments_in_a_bulk_insert_are_refused_not_misread(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database) as store:
        with pytest.raises(BulkInsertAbortedException):
            with store.bulk_insert() as bulk:
                bulk.store_as(User("a"), "users/a")
                bulk.attachments_for("users/a").store("photo.png", b"\x89PNG binary")
    response = secured.server.admin().post(
        f"{secured.url}/databases/{database}/bulk_insert?id=9",
        data=b'[{"Id":"users/a","Type":"AttachmentPUT","Name":"p","ContentLength":3}abc]')
    assert response.status_code == 400 and "not supported by Roost yet" in response.json()["Message"]


def test_kill_stops_a_running_bulk_insert(secured: Target) -> None:
    database = new_database(secured)
    admin = secured.server.admin()
    base = f"{secured.url}/databases/{database}"
    operation = admin.get(f"{base}/operations/next-operation-id").json()
    assert operation["NodeTag"] == "A" and isinstance(operation["Id"], int)
    killed = []

    def stream() -> Iterator[bytes]:
        yield b"[" + _put(0)
        for n in range(1, 5000):
            yield b"," + _put(n)
            if n == 2000:
                # The server has stored the first batches by now; kill it from another connection.
                response = requests.post(f"{base}/operations/kill?id={operation['Id']}",
                                         cert=str(secured.server.admin_pem), verify=str(secured.server.ca_pem))
                killed.append(response.status_code)
        yield b"]"

    try:
        response = admin.post(f"{base}/bulk_insert?id={operation['Id']}", data=stream())
        status = response.status_code
        message = response.json()["Message"]
    except requests.ConnectionError:  # the server answered and closed while the client was still sending
        status, message = 400, ""
    assert killed == [204]
    assert status == 400
    stored = _count(secured, database)
    assert stored < 5000
    if message:
        assert "was killed" in message and f"The first {stored} command(s)" in message
    state = admin.get(f"{base}/operations/state?id={operation['Id']}").json()
    assert state["Status"] == "Faulted"
    # Killing what does not run, and killing from a reader, are refused.
    assert admin.post(f"{base}/operations/kill?id=12345").status_code == 404


def test_a_reader_may_take_an_operation_id_but_not_kill(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    reader = secured.server.generate("op-reader", "ValidUser", {database: "Read"}, directory=tmp_path)
    session = secured.server.session(reader.pem_path)
    base = f"{secured.url}/databases/{database}"
    assert session.get(f"{base}/operations/next-operation-id").status_code == 200
    assert session.post(f"{base}/operations/kill?id=1").status_code == 403
    stranger = secured.server.generate("op-stranger", "ValidUser", {}, directory=tmp_path)
    assert secured.server.session(stranger.pem_path).get(f"{base}/operations/next-operation-id").status_code == 403


def test_the_new_routes_answer_with_ravendbs_error_types(secured: Target, tmp_path: Path) -> None:
    """What the clients dispatch on: each status with its ``Type`` (the class the client raises)."""
    admin = secured.server.admin()
    database = new_database(secured)
    base = f"{secured.url}/databases"
    missing = "Raven.Client.Exceptions.Database.DatabaseDoesNotExistException"
    for method, route in [("POST", "bulk_insert?id=1"), ("GET", "operations/next-operation-id"),
                          ("POST", "operations/kill?id=1"), ("GET", "operations/state?id=1"), ("GET", "changes")]:
        response = admin.request(method, f"{base}/no-such-db/{route}", data=b"[]")
        assert (response.status_code, response.headers.get("Database-Missing")) == (503, "no-such-db"), route
        assert response.json()["Type"] == missing, route
    cases = [
        ("POST", "bulk_insert?id=2", b"[{]", 400,
         "Raven.Client.Exceptions.Documents.BulkInsert.BulkInsertProtocolViolationException"),
        ("POST", "operations/kill?id=12345", None, 404, "Raven.Client.Exceptions.NotFoundException"),
        ("POST", "operations/kill", None, 400, "System.ArgumentException"),
        ("GET", "operations/state?id=x", None, 400, "System.ArgumentException"),
        ("GET", "changes", None, 400, "System.ArgumentException"),
    ]
    for method, route, body, status, error_type in cases:
        response = admin.request(method, f"{base}/{database}/{route}", data=body)
        assert (response.status_code, response.json()["Type"]) == (status, error_type), route
    # A batch attachment of a document that does not exist: DocumentDoesNotExistException, as RavenDB.
    batch = {"Commands": [{"Id": "users/none", "Name": "a", "Type": "AttachmentPUT", "ContentType": ""}]}
    response = admin.post(f"{base}/{database}/bulk_docs", files={"main": (None, json.dumps(batch)),
                                                                 "a": ("a", b"x", "text/plain")})
    assert (response.status_code, response.json()["Type"]) == (
        404, "Raven.Client.Exceptions.Documents.DocumentDoesNotExistException")
    # No access: RavenDB's InvalidAuth (403), on every new route.
    stranger = secured.server.generate("errors-stranger", "ValidUser", {}, directory=tmp_path)
    session = secured.server.session(stranger.pem_path)
    for method, route in [("POST", "bulk_insert?id=3"), ("GET", "operations/next-operation-id"),
                          ("POST", "operations/kill?id=1"), ("GET", "operations/state?id=1"), ("GET", "changes")]:
        response = session.request(method, f"{base}/{database}/{route}", data=b"[]")
        assert (response.status_code, response.json()["Type"]) == (403, "InvalidAuth"), route


@pytest.mark.postgres
def test_bulk_insert_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    running = start_server(tmp_path / "data", f"--storage_url={postgres_url}")
    try:
        target = Target(running, running.admin_pem, running.ca_pem)
        database = new_database(target)
        with client(target, database) as store:
            with store.bulk_insert() as bulk:
                for n in range(3000):
                    bulk.store_as(User(f"user {n}", age=n), f"users/{n}")
                bulk.counters_for("users/3").increment("likes", 2)
            with store.open_session() as session:
                assert session.load("users/2999", User).age == 2999
                assert session.counters_for("users/3").get("likes") == 2
        assert _count(target, database) == 3000
        body = b"".join(_stream(iter([*(_put(n) for n in range(1500)), b'{"Id":"x","Type":"PATCH"}'])))
        response = running.admin().post(f"{running.url}/databases/{database}/bulk_insert?id=3", data=body)
        assert response.status_code == 400 and "The first 1500 command(s)" in response.json()["Message"]
        assert _count(target, database) == 4500
    finally:
        running.stop()
