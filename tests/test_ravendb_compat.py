"""The pinned RavenDB Python client beyond CRUD: HiLo documents, conditional GETs, stats, lazy operations (multi_get),
counters and attachments, against a real secured Roost server process. Each acceptance has its refusal beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
from ravendb.documents.commands.crud import HeadDocumentCommand
from ravendb.exceptions.exceptions import AuthorizationException

from conftest import RunningServer
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
