"""The Changes API (``/databases/{db}/changes`` over a WebSocket) with the pinned RavenDB Python client's
``store.changes()``, against real secured Roost processes: what each subscription receives, who is refused at the
handshake, and revocation (deleted, disabled, access lost, database deleted) closing an open stream before the next
notification, also when the revocation was made by another worker or another node."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from ravendb.changes.observers import ActionObserver
from ravendb.changes.types import DocumentChange

from conftest import RunningServer, start_server
from test_ravendb_client import Target, User, client, new_database

WAIT = 15.0  # seconds to wait for something that must happen (never a speed assertion)


@pytest.fixture(scope="module")
def secured(server: RunningServer) -> Target:
    return Target(server, server.admin_pem, server.ca_pem)


class Company:
    def __init__(self, name: str | None = None, Id: str | None = None) -> None:
        self.name = name
        self.Id = Id


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_each_subscription_gets_its_documents(secured: Target) -> None:
    database = new_database(secured)
    seen: dict[str, list[tuple[str, str, str | None]]] = {"all": [], "doc": [], "collection": [], "prefix": []}
    with client(secured, database) as store:
        changes = store.changes()
        changes.ensure_connected_now()
        observables = {"all": changes.for_all_documents(), "doc": changes.for_document("users/2"),
                       "collection": changes.for_documents_in_collection("Companies"),
                       "prefix": changes.for_documents_start_with("users/1")}
        closers = []
        for name, observable in observables.items():
            def record(change: DocumentChange, name: str = name) -> None:
                seen[name].append((str(change.type_of_change), change.key, change.collection_name))
            closers.append(observable.subscribe_with_observer(ActionObserver(on_next=record)))
            observable.ensure_subscribe_now()  # the server confirmed the watch command
        with store.open_session() as session:
            session.store(User("one"), "users/1")
            session.store(User("two"), "users/2")
            session.store(User("ten"), "users/10")
            session.store(Company("acme"), "companies/1")
            session.save_changes()
        with store.open_session() as session:
            session.delete("users/2")
            session.save_changes()
        _wait_for(lambda: len(seen["all"]) == 5, "five changes on for_all_documents")
        time.sleep(0.3)  # anything wrongly sent to the narrower subscriptions arrives by now
        for close in closers:
            close()
        changes.close()
    assert seen["all"] == [("Put", "users/1", "Users"), ("Put", "users/2", "Users"), ("Put", "users/10", "Users"),
                           ("Put", "companies/1", "Companies"), ("Delete", "users/2", "Users")]
    assert seen["doc"] == [("Put", "users/2", "Users"), ("Delete", "users/2", "Users")]
    assert seen["collection"] == [("Put", "companies/1", "Companies")]
    assert seen["prefix"] == [("Put", "users/1", "Users"), ("Put", "users/10", "Users")]


# A raw WebSocket, for what the client hides (it retries, and reports errors to callbacks only) ---------------


def _open(server: RunningServer, pem: Path, database: str) -> websocket.WebSocket:
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    context.load_cert_chain(str(pem))
    socket = websocket.WebSocket(sslopt={"context": context})
    socket.connect(f"wss://localhost:{server.port}/databases/{database}/changes", suppress_origin=True, timeout=WAIT)
    return socket


def _messages(socket: websocket.WebSocket) -> Iterator[dict[str, Any]]:
    """Each message is one JSON array of one object (RavenDB's framing); ends when the server closes."""
    while True:
        try:
            opcode, data = socket.recv_data()
        except websocket.WebSocketConnectionClosedException:
            return
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return
        [message] = json.loads(data)
        yield message


def _watch_all(socket: websocket.WebSocket) -> None:
    socket.send(json.dumps({"CommandId": 1, "Command": "watch-docs", "Param": None}))
    assert next(_messages(socket)) == {"Type": "Confirm", "CommandId": 1}


def _put(server: RunningServer, database: str, doc_id: str) -> None:
    response = server.admin().put(f"{server.url}/databases/{database}/docs?id={doc_id}",
                                  json={"v": 1, "@metadata": {"@collection": "Things"}})
    assert response.status_code == 201, response.text


def test_a_certificate_without_read_access_is_refused_at_the_handshake(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    stranger = secured.server.generate("changes-stranger", "ValidUser", {new_database(secured): "Read"},
                                       directory=tmp_path)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _open(secured.server, stranger.pem_path, database)
    assert refused.value.status_code == 403
    # The client reports the refusal to on_error and never connects.
    errors: list[Exception] = []
    with client(secured, database, pem=stranger.pem_path) as store:
        changes = store.changes(on_error=errors.append)
        _wait_for(lambda: bool(errors), "the client's on_error")
        changes.close()
    # Its twin: a reader of this database is let in and gets the change.
    reader = secured.server.generate("changes-reader", "ValidUser", {database: "Read"}, directory=tmp_path)
    socket = _open(secured.server, reader.pem_path, database)
    _watch_all(socket)
    _put(secured.server, database, "things/1")
    change = next(_messages(socket))
    stored = secured.server.admin().get(f"{secured.url}/databases/{database}/docs?id=things/1").json()["Results"][0]
    assert change == {"Type": "DocumentChange", "Value": {
        "Type": "Put", "Id": "things/1", "CollectionName": "Things",
        "ChangeVector": stored["@metadata"]["@change-vector"]}}
    socket.close()


def test_an_upgrade_from_another_site_is_refused(secured: Target) -> None:
    database = new_database(secured)
    context = ssl.create_default_context(cafile=str(secured.server.ca_pem))
    context.load_cert_chain(str(secured.server.admin_pem))
    socket = websocket.WebSocket(sslopt={"context": context})
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        socket.connect(f"wss://localhost:{secured.server.port}/databases/{database}/changes",
                       origin="https://evil.example", timeout=WAIT)
    assert refused.value.status_code == 403


def _revoke(server: RunningServer, how: str, thumbprint: str, database: str, via: Any = None) -> None:
    admin = via or server.admin()
    if how == "deleted":
        response = admin.delete(f"{server.url}/admin/certificates?thumbprint={thumbprint}")
    elif how == "disabled":
        response = admin.post(f"{server.url}/admin/certificates/edit", json={
            "Thumbprint": thumbprint, "Name": "changes-revoked", "SecurityClearance": "ValidUser",
            "Permissions": {database: "Read"}, "Disabled": True})
    elif how == "access lost":
        response = admin.post(f"{server.url}/admin/certificates/edit", json={
            "Thumbprint": thumbprint, "Name": "changes-revoked", "SecurityClearance": "ValidUser",
            "Permissions": {f"other-{uuid.uuid4().hex[:6]}": "Read"}, "Disabled": False})
    else:
        assert how == "database deleted"
        response = admin.delete(f"{server.url}/admin/databases", json={"DatabaseNames": [database],
                                                                       "HardDelete": True})
    assert response.status_code < 300, response.text


def _assert_closed_before_the_next_change(socket: websocket.WebSocket, server: RunningServer, database: str,
                                          how: str) -> None:
    if how != "database deleted":
        _put(server, database, "things/after")  # the notification that must not be delivered
    messages = list(_messages(socket))
    assert [m["Type"] for m in messages] == ["Error"], messages
    assert "things/after" not in json.dumps(messages)
    assert socket.sock is None or not socket.connected or socket.recv_data()[0] == websocket.ABNF.OPCODE_CLOSE


@pytest.mark.parametrize("how", ["deleted", "disabled", "access lost", "database deleted"])
def test_revocation_closes_an_open_stream_before_the_next_notification(secured: Target, tmp_path: Path,
                                                                       how: str) -> None:
    database = new_database(secured)
    reader = secured.server.generate("changes-revoked", "ValidUser", {database: "Read"}, directory=tmp_path)
    socket = _open(secured.server, reader.pem_path, database)
    _watch_all(socket)
    _put(secured.server, database, "things/before")
    assert next(_messages(socket))["Value"]["Id"] == "things/before"
    _revoke(secured.server, how, reader.thumbprint, database)
    _assert_closed_before_the_next_change(socket, secured.server, database, how)
    if how != "database deleted":
        with pytest.raises(websocket.WebSocketBadStatusException):  # and it cannot come back
            _open(secured.server, reader.pem_path, database)


def test_a_stream_without_changes_closes_too_when_revoked(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    reader = secured.server.generate("changes-idle", "ValidUser", {database: "Read"}, directory=tmp_path)
    socket = _open(secured.server, reader.pem_path, database)
    _watch_all(socket)
    _revoke(secured.server, "deleted", reader.thumbprint, database)
    messages = list(_messages(socket))  # no write at all: the periodic check closes it
    assert [m["Type"] for m in messages] == ["Error"], messages


def test_unknown_commands_are_answered_with_an_error_and_the_stream_stays(secured: Target) -> None:
    database = new_database(secured)
    socket = _open(secured.server, secured.server.admin_pem, database)
    socket.send(json.dumps({"CommandId": 1, "Command": "watch-index", "Param": "Orders/ByCompany"}))
    error = next(_messages(socket))
    assert error["Type"] == "Error" and "not supported by Roost" in error["Exception"]
    socket.send("not json")
    assert next(_messages(socket))["Type"] == "Error"
    _watch_all(socket)
    socket.close()


def test_a_plain_get_on_the_changes_route_is_a_400(secured: Target) -> None:
    database = new_database(secured)
    response = secured.server.admin().get(f"{secured.url}/databases/{database}/changes")
    assert response.status_code == 400 and "WebSocket" in response.json()["Message"]


# Other workers -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_revocation_made_through_another_worker_closes_the_stream(tmp_path: Path) -> None:
    from test_workers import _worker_of, _worker_pids

    running = start_server(tmp_path / "data", "--workers", "2")
    try:
        pids = _worker_pids(running)
        target = Target(running, running.admin_pem, running.ca_pem)
        database = new_database(target)
        reader = running.generate("changes-workers", "ValidUser", {database: "Read"}, directory=tmp_path)
        held: dict[int, websocket.WebSocket] = {}
        for _ in range(60):  # a stream on each worker
            socket = _open(running, reader.pem_path, database)
            worker = _worker_of(socket, running.port, pids)  # type: ignore[arg-type]
            if worker in pids and worker not in held:
                held[worker] = socket
            else:
                socket.close()
            if len(held) == 2:
                break
        assert len(held) == 2, "the streams never reached both workers"
        for socket in held.values():
            _watch_all(socket)
        _revoke(running, "deleted", reader.thumbprint, database)  # served by one of the two workers
        for socket in held.values():
            _assert_closed_before_the_next_change(socket, running, database, "deleted")
    finally:
        running.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_revocation_made_on_another_node_closes_the_stream(tmp_path: Path, postgres_url: str) -> None:
    from test_cluster import _node

    ca_dir = tmp_path / "ca"
    a = _node(tmp_path / "a", postgres_url, ca_dir)
    try:
        b = _node(tmp_path / "b", postgres_url, ca_dir)
        try:
            database = new_database(Target(a, a.admin_pem, a.ca_pem))
            reader = a.generate("changes-nodes", "ValidUser", {database: "Read"}, directory=tmp_path)
            socket = _open(b, reader.pem_path, database)
            _watch_all(socket)
            _put(b, database, "things/before")
            assert next(_messages(socket))["Value"]["Id"] == "things/before"
            _revoke(a, "deleted", reader.thumbprint, database)
            _assert_closed_before_the_next_change(socket, b, database, "deleted")
        finally:
            b.stop()
    finally:
        a.stop()


def test_many_changes_arrive_in_commit_order(secured: Target) -> None:
    database = new_database(secured)
    socket = _open(secured.server, secured.server.admin_pem, database)
    _watch_all(socket)
    received: list[str] = []

    def read() -> None:
        for message in _messages(socket):
            received.append(message["Value"]["Id"])
            if len(received) == 300:
                return

    reader = threading.Thread(target=read)
    reader.start()
    with client(secured, database) as store, store.bulk_insert() as bulk:
        for n in range(300):
            bulk.store_as(User(f"u{n}"), f"users/{n}")
    reader.join(WAIT)
    socket.close()
    assert received == [f"users/{n}" for n in range(300)]


def test_an_address_taken_off_the_allowlist_loses_its_stream(fresh_server: RunningServer, tmp_path: Path) -> None:
    import socket as sockets

    server = fresh_server
    database = new_database(Target(server, server.admin_pem, server.ca_pem))
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    context.load_cert_chain(str(server.admin_pem))

    def open_from(source: str) -> websocket.WebSocket:
        raw = sockets.create_connection(("127.0.0.1", server.port), timeout=WAIT, source_address=(source, 0))
        stream = websocket.WebSocket()
        stream.connect(f"wss://localhost:{server.port}/databases/{database}/changes", suppress_origin=True,
                       socket=context.wrap_socket(raw, server_hostname="localhost"))
        return stream

    outside, inside = open_from("127.0.0.2"), open_from("127.0.0.1")
    _watch_all(outside)
    _watch_all(inside)
    response = server.admin().put(f"{server.url}/admin/security/allowed-ips", json={"AllowedIPs": ["127.0.0.1"]})
    assert response.status_code == 200, response.text
    _put(server, database, "things/after")
    messages = list(_messages(outside))
    assert [m["Type"] for m in messages] == ["Error"] and "Security.AllowedIPs" in messages[0]["Exception"]
    # Its twin: the address still allowed keeps its stream and gets the change.
    assert next(_messages(inside))["Value"]["Id"] == "things/after"
    inside.close()


def test_the_clients_stream_reports_the_revocation_and_delivers_nothing_after_it(secured: Target,
                                                                                 tmp_path: Path) -> None:
    database = new_database(secured)
    reader = secured.server.generate("changes-client-revoked", "ValidUser", {database: "Read"}, directory=tmp_path)
    seen: list[str] = []
    errors: list[Exception] = []
    with client(secured, database, pem=reader.pem_path) as store:
        changes = store.changes(on_error=errors.append)
        changes.ensure_connected_now()
        observable = changes.for_all_documents()
        close = observable.subscribe_with_observer(ActionObserver(on_next=lambda c: seen.append(c.key)))
        observable.ensure_subscribe_now()
        _put(secured.server, database, "things/before")
        _wait_for(lambda: seen == ["things/before"], "the change before the revocation")
        _revoke(secured.server, "deleted", reader.thumbprint, database)
        _put(secured.server, database, "things/after")
        _wait_for(lambda: bool(errors), "the client's on_error")
        time.sleep(0.5)  # a change wrongly sent after the revocation would have arrived by now
        assert seen == ["things/before"]
        close()
        changes.close()
