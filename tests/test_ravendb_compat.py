"""The pinned RavenDB Python client beyond CRUD: HiLo documents, conditional GETs, stats, lazy operations (multi_get),
counters and attachments, against a real secured Roost server process. Each acceptance has its refusal beside it."""

from __future__ import annotations

from pathlib import Path

import pytest
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
