"""The official RavenDB Python client (``ravendb``, pinned in pyproject) against a real Roost server process.

One test per thing a RavenDB user does, secured (mutual TLS, hostname verification on) and, where
certificates play no part, unsecured (``--ServerUrl=http://127.0.0.1:0``) as well. Each acceptance
has its refusal beside it. The client is synchronous (requests), so it runs in the test thread
against the server subprocess.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ravendb import DocumentStore
from ravendb.documents.commands.crud import DeleteDocumentCommand, GetDocumentsCommand, PutDocumentCommand
from ravendb.documents.session.misc import OrderingType
from ravendb.exceptions.exceptions import AuthorizationException, DatabaseDoesNotExistException
from ravendb.exceptions.raven_exceptions import ConcurrencyException, RavenException
from ravendb.serverwide.database_record import DatabaseRecord
from ravendb.serverwide.operations.certificates import (
    CreateClientCertificateOperation,
    DatabaseAccess,
    DeleteCertificateOperation,
    EditClientCertificateOperation,
    GetCertificateMetadataOperation,
    GetCertificateOperation,
    GetCertificatesMetadataOperation,
    GetCertificatesOperation,
    PutClientCertificateOperation,
    ReplaceClusterCertificateOperation,
    SecurityClearance,
)
from ravendb.serverwide.operations.common import (
    CreateDatabaseOperation,
    DeleteDatabaseOperation,
    GetBuildNumberOperation,
    GetDatabaseNamesOperation,
    GetDatabaseRecordOperation,
)

from conftest import RunningServer, start_server


class User:
    def __init__(self, name: str | None = None, age: int | None = None, manager: str | None = None,
                 Id: str | None = None) -> None:  # the client fills Id
        self.name = name
        self.age = age
        self.manager = manager
        self.Id = Id


@dataclass
class Target:
    """Where a client connects and with what: a secured server and its admin certificate, or plain HTTP."""

    server: RunningServer
    pem: Path | None
    trust: Path | None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def secured(self) -> bool:
        return self.url.startswith("https://")


@contextmanager
def client(target: Target, database: str | None = None, *, pem: Path | None | bool = True,
           trust: Path | None | bool = True) -> Iterator[DocumentStore]:
    """A DocumentStore the way a RavenDB user sets one up (``pem``/``trust`` True: the target's own)."""
    store = DocumentStore(urls=[target.url], database=database)
    if target.secured:
        chosen_pem = target.pem if pem is True else pem
        chosen_trust = target.trust if trust is True else trust
        if chosen_pem:
            store.certificate_pem_path = str(chosen_pem)
        if chosen_trust:
            store.trust_store_path = str(chosen_trust)
    store.initialize()
    try:
        yield store
    finally:
        store.close()


def new_database(target: Target) -> str:
    name = f"db-{uuid.uuid4().hex[:10]}"
    with client(target) as store:
        store.maintenance.server.send(CreateDatabaseOperation(DatabaseRecord(name)))
    return name


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("plain") / "data", "--ServerUrl=http://127.0.0.1:0")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secured(server: RunningServer) -> Target:
    return Target(server, server.admin_pem, server.ca_pem)


@pytest.fixture(scope="module", params=["secured", "unsecured"])
def target(request: pytest.FixtureRequest, server: RunningServer) -> Target:
    if request.param == "secured":
        return Target(server, server.admin_pem, server.ca_pem)
    plain: RunningServer = request.getfixturevalue("plain_server")
    return Target(plain, None, None)


# ---------------------------------------------------------------------------------------------------
# Connection: topology, cluster topology, build version, hostname verification


def test_the_client_connects_and_switches_to_the_reported_node(target: Target) -> None:
    database = new_database(target)
    with client(target, database) as store:
        with store.open_session() as session:
            assert session.load("users/none", User) is None
        node = store.get_request_executor().topology_nodes[0]
        assert (node.url, node.cluster_tag, node.database, node.server_role) == (target.url, "A", database, "Member")
        build = store.maintenance.server.send(GetBuildNumberOperation())
        assert build.product_version.startswith("7.")
        assert build.full_version.startswith("7.")


def test_topology_answers_name_this_node_with_a_7x_server_version(target: Target) -> None:
    database = new_database(target)
    session = target.server.admin() if target.secured else requests.Session()
    response = session.get(f"{target.url}/topology?name={database}&first-topology-update&applicationIdentifier=x")
    assert response.status_code == 200
    assert response.headers["Raven-Server-Version"].startswith("7.")
    assert response.json()["Nodes"] == [
        {"Url": target.url, "ClusterTag": "A", "Database": database, "ServerRole": "Member"}
    ]
    cluster = session.get(f"{target.url}/cluster/topology?first-topology-update").json()
    assert cluster["Topology"]["Members"] == {"A": target.url}
    assert {"Leader", "NodeTag", "Etag", "Status"} <= cluster.keys()
    missing = session.get(f"{target.url}/topology?name=no-such-db")
    assert (missing.status_code, missing.headers["Database-Missing"]) == (503, "no-such-db")


def test_build_version_is_open_but_topology_needs_a_certificate(secured: Target) -> None:
    anonymous = secured.server.session()  # verifies the server, presents no certificate
    version = anonymous.get(f"{secured.url}/build/version")
    assert version.status_code == 200 and version.json()["ProductVersion"].startswith("7.")
    assert anonymous.get(f"{secured.url}/topology?name=x").status_code == 403
    assert anonymous.get(f"{secured.url}/cluster/topology").status_code == 403


def test_the_client_verifies_the_server_certificate(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database, trust=None) as store, store.open_session() as session:
        # No trust store: requests falls back to the public CAs, which never signed Roost's certificate.
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            session.load("users/1", User)


def test_without_a_client_certificate_the_client_gets_authorization_exception(secured: Target) -> None:
    database = new_database(secured)
    with client(secured, database, pem=None) as store, store.open_session() as session:
        with pytest.raises(AuthorizationException, match="a certificate is required"):
            session.load("users/1", User)


# ---------------------------------------------------------------------------------------------------
# Server-wide operations: databases


def test_create_list_read_and_delete_databases(target: Target) -> None:
    name = f"db-{uuid.uuid4().hex[:10]}"
    with client(target) as store:
        server = store.maintenance.server
        result = server.send(CreateDatabaseOperation(DatabaseRecord(name)))
        assert result.name == name
        assert name in server.send(GetDatabaseNamesOperation(0, 1000))
        record = server.send(GetDatabaseRecordOperation(name))
        assert record is not None and record.database_name == name
        with pytest.raises(ConcurrencyException):  # RavenDB's 409 for a name that exists
            server.send(CreateDatabaseOperation(DatabaseRecord(name)))
        deleted = server.send(DeleteDatabaseOperation(name, hard_delete=True))
        assert deleted.raft_command_index > 0
        assert name not in server.send(GetDatabaseNamesOperation(0, 1000))
        assert server.send(GetDatabaseRecordOperation(name)) is None


def test_a_user_lists_only_its_databases_and_cannot_create_one(secured: Target, tmp_path: Path) -> None:
    mine, other = new_database(secured), new_database(secured)
    user = secured.server.generate("lister", "ValidUser", {mine: "Read"}, directory=tmp_path)
    with client(secured, pem=user.pem_path) as store:
        names = store.maintenance.server.send(GetDatabaseNamesOperation(0, 1000))
        assert mine in names and other not in names
        # The 7.2.7 client cannot build its AuthorizationException on server-wide calls (node.database is None):
        # it raises TypeError instead, a client bug the wire reference records. The server did refuse.
        with pytest.raises((AuthorizationException, TypeError)):
            store.maintenance.server.send(CreateDatabaseOperation(DatabaseRecord(f"x-{uuid.uuid4().hex[:6]}")))


# ---------------------------------------------------------------------------------------------------
# Server-wide operations: certificates


def _package(raw: bytes, name: str) -> tuple[bytes, bytes]:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        return archive.read(f"{name}.crt"), archive.read(f"{name}.key")


def test_every_certificate_operation_of_the_client(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    with client(secured) as store:
        server = store.maintenance.server
        # Create: the client keeps the raw zip; its .crt and unencrypted .key make a PEM requests can use.
        created = server.send(CreateClientCertificateOperation(
            "client-made", {database: DatabaseAccess.READ_WRITE}, SecurityClearance.VALID_USER))
        crt, key = _package(bytes(created.raw_data), "client-made")
        assert b"BEGIN CERTIFICATE" in crt and b"PRIVATE KEY" in key and b"ENCRYPTED" not in key
        pem = tmp_path / "client-made.pem"
        pem.write_bytes(crt + key)
        thumbprint = x509.load_pem_x509_certificate(crt).fingerprint(hashes.SHA1()).hex().upper()

        definition = server.send(GetCertificateOperation(thumbprint))
        assert (definition.name, definition.thumbprint) == ("client-made", thumbprint)
        assert definition.permissions == {database: DatabaseAccess.READ_WRITE}
        assert any(c.thumbprint == thumbprint for c in server.send(GetCertificatesOperation(0, 100)))
        metadata = server.send(GetCertificateMetadataOperation(thumbprint))
        assert metadata.name == "client-made"
        assert [m.name for m in server.send(GetCertificatesMetadataOperation("client-made"))] == ["client-made"]

        with client(secured, database, pem=pem) as user_store, user_store.open_session() as session:
            session.store(User("made"), "users/made")
            session.save_changes()

        # Put: base64 of the DER (the C# convention) and base64 of the PEM text (what the upstream test sends).
        for form in ("der", "pem"):
            key_obj = ec.generate_private_key(ec.SECP256R1())
            cert = _self_signed(key_obj, f"put-{form}", server_auth=False)
            payload = cert.public_bytes(serialization.Encoding.DER if form == "der" else serialization.Encoding.PEM)
            server.send(PutClientCertificateOperation(
                f"put-{form}", base64.b64encode(payload).decode(), {database: DatabaseAccess.READ},
                SecurityClearance.VALID_USER))
            put_thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
            assert server.send(GetCertificateOperation(put_thumbprint)).name == f"put-{form}"

        # Edit, including Disabled: a disabled certificate is refused, an enabled one works again.
        def edit(name: str, disabled: bool) -> None:
            server.send(EditClientCertificateOperation(EditClientCertificateOperation.Parameters(
                thumbprint, {database: DatabaseAccess.READ_WRITE}, name, SecurityClearance.VALID_USER, disabled)))

        edit("renamed", disabled=True)
        edited = server.send(GetCertificateOperation(thumbprint))
        assert (edited.name, edited.disabled) == ("renamed", True)
        with client(secured, database, pem=pem) as user_store, user_store.open_session() as session:
            with pytest.raises(AuthorizationException, match="disabled"):
                session.load("users/made", User)
        edit("renamed", disabled=False)
        with client(secured, database, pem=pem) as user_store, user_store.open_session() as session:
            assert session.load("users/made", User).name == "made"

        # Delete: gone from the lists (404 -> None in the client) and refused from then on.
        server.send(DeleteCertificateOperation(thumbprint))
        assert server.send(GetCertificateOperation(thumbprint)) is None
        with client(secured, database, pem=pem) as user_store, user_store.open_session() as session:
            with pytest.raises(AuthorizationException):
                session.load("users/made", User)


def test_replace_cluster_certificate_refuses_garbage(secured: Target) -> None:
    with client(secured) as store, pytest.raises(RavenException, match="certificate"):
        store.maintenance.server.send(ReplaceClusterCertificateOperation(b"not a certificate", True))


def test_replace_cluster_certificate_serves_the_new_one(fresh_server: RunningServer, tmp_path: Path) -> None:
    target = Target(fresh_server, fresh_server.admin_pem, fresh_server.ca_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, "replacement", server_auth=True)
    pfx = pkcs12.serialize_key_and_certificates(b"replacement", key, cert, None, serialization.NoEncryption())
    with client(target) as store:
        store.maintenance.server.send(ReplaceClusterCertificateOperation(pfx, True))
    new_trust = tmp_path / "replacement.crt"
    new_trust.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    database = new_database(Target(fresh_server, fresh_server.admin_pem, new_trust))
    with client(Target(fresh_server, fresh_server.admin_pem, new_trust), database) as store:
        with store.open_session() as session:
            assert session.load("users/1", User) is None
    # The old trust store no longer matches what the server presents.
    with client(target, database) as store, store.open_session() as session:
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            session.load("users/1", User)


# ---------------------------------------------------------------------------------------------------
# Sessions


def test_store_without_ids_uses_hilo_and_loads_back(target: Target) -> None:
    database = new_database(target)
    with client(target, database) as store:
        with store.open_session() as session:
            first, second = User("John", 30), User("Jane", 25)
            session.store(first)
            session.store(second)
            session.store(User("Given", 40), "people/given")
            session.save_changes()
            assert (first.Id, second.Id) == ("users/1-A", "users/2-A")
        with store.open_session() as session:
            assert session.load("users/1-A", User).name == "John"
            assert session.load("people/given", User).age == 40
            assert session.load("users/999-A", User) is None


def test_hilo_return_lets_the_next_client_continue_without_a_gap(target: Target) -> None:
    database = new_database(target)
    with client(target, database) as store, store.open_session() as session:
        session.store(User("first"))
        session.save_changes()
    # The first store closed and returned 2..32, so the next client starts at 2.
    with client(target, database) as store, store.open_session() as session:
        user = User("second")
        session.store(user)
        session.save_changes()
        assert user.Id == "users/2-A"
        # While that store is open its range stays taken: another client gets the next range.
        with client(target, database) as other, other.open_session() as other_session:
            third = User("third")
            other_session.store(third)
            other_session.save_changes()
            assert third.Id == "users/34-A"


def test_hilo_refuses_bad_parameters_with_400(secured: Target) -> None:
    database = new_database(secured)
    admin = secured.server.admin()
    base = f"{secured.url}/databases/{database}/hilo"
    assert admin.get(f"{base}/next?tag=users&lastBatchSize=0&lastRangeAt=&identityPartsSeparator=/").ok
    for query in ("tag=", "tag=users&lastBatchSize=x", "tag=users&identityPartsSeparator=ab",
                  "tag=users&lastRangeAt=yesterday"):
        response = admin.get(f"{base}/next?{query}")
        assert response.status_code == 400, query
    assert admin.put(f"{base}/return?tag=users&end=32&last=1").status_code == 204
    assert admin.put(f"{base}/return?tag=users&end=1&last=32").status_code == 400
    assert admin.put(f"{base}/return?tag=users").status_code == 400


def test_load_many_include_and_delete(target: Target) -> None:
    database = new_database(target)
    with client(target, database) as store:
        with store.open_session() as session:
            session.store(User("Boss"), "users/boss")
            for n in range(3):
                session.store(User(f"u{n}", n, manager="users/boss"), f"users/{n}")
            session.save_changes()
        with store.open_session() as session:
            loaded = session.load(["users/0", "users/1", "users/none"], User)
            assert loaded["users/0"].name == "u0" and loaded["users/none"] is None
            worker = session.include("manager").load(["users/2"], User)["users/2"]
            requests_so_far = session.advanced.number_of_requests
            assert session.load(worker.manager, User).name == "Boss"
            assert session.advanced.number_of_requests == requests_so_far  # the include came with the load
        with store.open_session() as session:
            plain = session.load("users/2", User)
            before = session.advanced.number_of_requests
            session.load(plain.manager, User)
            assert session.advanced.number_of_requests == before + 1  # without include: one more request
            session.delete("users/0")
            session.save_changes()
        with store.open_session() as session:
            assert session.load("users/0", User) is None
            assert session.load("users/1", User) is not None


def test_a_long_id_list_is_loaded_with_post(target: Target) -> None:
    database = new_database(target)
    ids = [f"users/{'x' * 40}-{n}" for n in range(40)]  # well past the client's 1024-character limit for GET
    with client(target, database) as store:
        with store.open_session() as session:
            for doc_id in ids:
                session.store(User(doc_id[-3:]), doc_id)
            session.save_changes()
        command = GetDocumentsCommand.from_multiple_ids(ids + ["users/missing"])
        executor = store.get_request_executor()
        assert command.create_request(executor.topology_nodes[0]).method == "POST"
        executor.execute_command(command)
        results = command.result.results
        # The client de-duplicates the ids through a set, so their order is its own; one stays unfound.
        assert sorted(r["@metadata"]["@id"] for r in results if r is not None) == sorted(ids)
        assert [r for r in results if r is None] == [None]
        with store.open_session() as session:
            loaded = session.load(ids, User)
            assert all(loaded[i] is not None for i in ids)


def test_optimistic_concurrency_raises_concurrency_exception(target: Target) -> None:
    database = new_database(target)
    with client(target, database) as store:
        with store.open_session() as session:
            session.store(User("v1"), "users/cc")
            session.save_changes()
        stale = store.open_session()
        stale.advanced.use_optimistic_concurrency = True
        stale_user = stale.load("users/cc", User)
        with store.open_session() as other:
            other.load("users/cc", User).name = "v2"
            other.save_changes()
        stale_user.name = "v3"
        with pytest.raises(ConcurrencyException):
            stale.save_changes()
        # Without the check, the last write wins (RavenDB's default).
        with store.open_session() as session:
            session.load("users/cc", User).name = "v4"
            session.save_changes()
        with store.open_session() as session:
            assert session.load("users/cc", User).name == "v4"


def test_put_and_delete_document_commands_with_change_vectors(target: Target) -> None:
    database = new_database(target)
    with client(target, database) as store:
        executor = store.get_request_executor()
        document = {"name": "raw", "@metadata": {"@collection": "Users"}}
        put = PutDocumentCommand("users/raw", None, document)
        executor.execute_command(put)
        assert put.result.key == "users/raw" and put.result.change_vector
        current = put.result.change_vector
        with pytest.raises(ConcurrencyException):
            executor.execute_command(PutDocumentCommand("users/raw", "A:999-stale", document))
        update = PutDocumentCommand("users/raw", current, {**document, "name": "raw2"})
        executor.execute_command(update)
        with pytest.raises(ConcurrencyException):
            executor.execute_command(DeleteDocumentCommand("users/raw", current))  # now stale
        executor.execute_command(DeleteDocumentCommand("users/raw", update.result.change_vector))
        with store.open_session() as session:
            assert session.load("users/raw", User) is None


# ---------------------------------------------------------------------------------------------------
# Queries


PEOPLE = [("Alice", 30), ("bob", 25), ("Carol", 41), ("dave", 9), ("Eve", 100)]


@pytest.fixture(scope="module")
def people(target: Target) -> str:
    database = new_database(target)
    with client(target, database) as store, store.open_session() as session:
        for n, (name, age) in enumerate(PEOPLE):
            session.store(User(name, age, manager="users/0" if n else None), f"users/{n}")
        session.save_changes()
    return database


def names(query: Any) -> list[str]:
    return [u.name for u in query]


def test_query_where_operators(target: Target, people: str) -> None:
    with client(target, people) as store, store.open_session() as s:
        def q() -> Any:
            return s.query(object_type=User)

        assert names(q().where_equals("name", "ALICE")) == ["Alice"]
        assert names(q().where_not_equals("name", "alice").order_by("name")) == ["bob", "Carol", "dave", "Eve"]
        assert names(q().where_greater_than("age", 30).order_by("age", OrderingType.LONG)) == ["Carol", "Eve"]
        assert names(q().where_greater_than_or_equal("age", 30).order_by("name")) == ["Alice", "Carol", "Eve"]
        assert names(q().where_less_than("age", 25)) == ["dave"]
        assert names(q().where_less_than_or_equal("age", 25).order_by("name")) == ["bob", "dave"]
        assert names(q().where_in("name", ["bob", "eve", "nobody"]).order_by("name")) == ["bob", "Eve"]
        assert names(q().where_starts_with("name", "c")) == ["Carol"]
        assert names(q().where_equals("name", "nobody")) == []


def test_query_logic_and_subclauses(target: Target, people: str) -> None:
    with client(target, people) as store, store.open_session() as s:
        query = (s.query(object_type=User).where_greater_than("age", 90).or_else()
                 .open_subclause().where_starts_with("name", "a").and_also().where_less_than("age", 50)
                 .close_subclause().order_by("name"))
        assert names(query) == ["Alice", "Eve"]
        negated = s.query(object_type=User).where_exists("age").and_also().not_().where_starts_with("name", "a")
        assert sorted(names(negated)) == ["Carol", "Eve", "bob", "dave"]


def test_query_ordering_as_string_and_as_number(target: Target, people: str) -> None:
    with client(target, people) as store, store.open_session() as s:
        assert names(s.query(object_type=User).order_by("age", OrderingType.LONG)) == [
            "dave", "bob", "Alice", "Carol", "Eve"]
        assert names(s.query(object_type=User).order_by_descending("age", OrderingType.LONG)) == [
            "Eve", "Carol", "Alice", "bob", "dave"]
        # As text, "100" sorts before "25" and "9" last, as in RavenDB.
        assert names(s.advanced.raw_query("from Users order by age as string", User)) == [
            "Eve", "bob", "Alice", "Carol", "dave"]
        assert names(s.query(object_type=User).order_by_descending("name")) == ["Eve", "dave", "Carol", "bob", "Alice"]


def test_query_paging_parameters_and_statistics(target: Target, people: str) -> None:
    with client(target, people) as store, store.open_session() as s:
        page = s.query(object_type=User).order_by("age", OrderingType.LONG).skip(1).take(2)
        assert names(page) == ["bob", "Alice"]
        assert s.query(object_type=User).where_greater_than("age", 20).count() == 4
        raw = s.advanced.raw_query("from 'Users' where age >= $min order by age as long desc limit 2 offset 1", User)
        assert names(raw.add_parameter("min", 25)) == ["Carol", "Alice"]
        assert names(s.advanced.raw_query("from Users limit 1, 2", User)) == ["bob", "Carol"]


class NameOnly:
    def __init__(self, name: str | None = None) -> None:
        self.name = name


def test_query_projections_with_select_fields(target: Target, people: str) -> None:
    with client(target, people) as store, store.open_session() as s:
        projected = list(s.query(object_type=User).where_less_than("age", 26).select_fields(NameOnly, "name"))
        assert sorted((type(p).__name__, p.name) for p in projected) == [("NameOnly", "bob"), ("NameOnly", "dave")]
        with pytest.raises(RavenException, match="'select distinct' is not supported"):
            list(s.advanced.raw_query("from Users select distinct name", User))


def test_query_include_brings_the_referenced_documents(target: Target, people: str) -> None:
    with client(target, people) as store, store.open_session() as s:
        found = list(s.query(object_type=User).where_equals("name", "bob").include("manager"))
        before = s.advanced.number_of_requests
        assert s.load(found[0].manager, User).name == "Alice"
        assert s.advanced.number_of_requests == before


def test_a_malformed_query_is_a_400_with_the_position(target: Target, people: str) -> None:
    with client(target, people) as store, store.open_session() as s:
        with pytest.raises(RavenException, match=r"line 1, column 25: expected a value") as caught:
            list(s.advanced.raw_query("from Users where name = = 1", User))
        assert "status code: 400" in str(caught.value)
        with pytest.raises(RavenException, match=r"\$missing"):
            list(s.advanced.raw_query("from Users where name = $missing", User))
        assert names(s.advanced.raw_query("from Users where name = 'bob'", User)) == ["bob"]


# ---------------------------------------------------------------------------------------------------
# Errors and refusals


def test_a_user_without_access_to_a_database_gets_authorization_exception(secured: Target, tmp_path: Path) -> None:
    allowed, forbidden = new_database(secured), new_database(secured)
    user = secured.server.generate("one-db", "ValidUser", {allowed: "ReadWrite"}, directory=tmp_path)
    with client(secured, forbidden, pem=user.pem_path) as store, store.open_session() as session:
        with pytest.raises(AuthorizationException, match=f"Forbidden access to {forbidden}"):
            session.load("users/1", User)
    with client(secured, allowed, pem=user.pem_path) as store:
        with store.open_session() as session:
            session.store(User("mine"), "users/1")
            session.save_changes()
        with store.open_session() as session:
            assert session.load("users/1", User).name == "mine"


def test_a_read_only_user_can_load_and_query_but_not_write(secured: Target, tmp_path: Path) -> None:
    database = new_database(secured)
    with client(secured, database) as store, store.open_session() as session:
        session.store(User("seed"), "users/1")
        session.save_changes()
    reader = secured.server.generate("reader", "ValidUser", {database: "Read"}, directory=tmp_path)
    with client(secured, database, pem=reader.pem_path) as store:
        with store.open_session() as session:
            assert session.load("users/1", User).name == "seed"
            assert names(session.query(object_type=User)) == ["seed"]
        with store.open_session() as session:
            session.store(User("nope"), "users/2")
            with pytest.raises(AuthorizationException):
                session.save_changes()
        with store.open_session() as session, pytest.raises(AuthorizationException, match="writing needs"):
            session.store(User("nope"))  # an id from HiLo reserves ids: a write too, refused at once


def test_a_missing_database_is_database_does_not_exist_exception(target: Target) -> None:
    with client(target, "no-such-database") as store, store.open_session() as session:
        with pytest.raises(DatabaseDoesNotExistException):
            session.load("users/1", User)
    database = new_database(target)
    with client(target, database) as store, store.open_session() as session:
        assert session.load("users/1", User) is None


def test_a_missing_document_is_none_as_ravendb_answers_404(target: Target) -> None:
    database = new_database(target)
    session = target.server.admin() if target.secured else requests.Session()
    response = session.get(f"{target.url}/databases/{database}/docs?&id=users%2Fnone")
    assert response.status_code == 404
    with client(target, database) as store, store.open_session() as s:
        assert s.load("users/none", User) is None
        s.store(User("here"), "users/here")
        s.save_changes()
        assert s.load("users/here", User) is not None


# ---------------------------------------------------------------------------------------------------
# Started like a RavenDB server


def _self_signed(key: ec.EllipticCurvePrivateKey, name: str, *, server_auth: bool) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server_auth else [])
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server_auth:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_started_with_ravendb_flags_the_test_harness_way(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, "ravendb-style server", server_auth=True)
    pfx = tmp_path / "server.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(b"server", key, cert, None, serialization.NoEncryption()))
    trust = tmp_path / "server.crt"
    trust.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # RavenDB's test harness logs in with the server's own certificate (ClusterNode), as python.pem.
    harness_pem = tmp_path / "python.pem"
    harness_pem.write_bytes(trust.read_bytes() + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    running = start_server(
        tmp_path / "unused-data", "--ServerUrl=https://localhost:0", f"--Security.Certificate.Path={pfx}",
        "--RunInMemory=true", "--Setup.Mode=None", "--License.Eula.Accepted=true",
        "--Features.Availability=Experimental", "--Logs.Mode=None",
    )
    try:
        assert running.url.startswith("https://localhost:")
        warnings = [line for line in running.output if "ignoring settings" in line]
        assert len(warnings) == 1
        for flag in ("Setup.Mode", "License.Eula.Accepted", "Features.Availability", "Logs.Mode"):
            assert flag in warnings[0]
        harness = Target(running, harness_pem, trust)
        database = new_database(harness)
        with client(harness, database) as store:
            with store.open_session() as session:
                session.store(User("harness"))
                session.save_changes()
            with store.open_session() as session:
                assert session.load("users/1-A", User).name == "harness"
            assert store.maintenance.server.send(GetDatabaseRecordOperation(database)).topology["Members"] == ["A"]
        # Hostname verification is on: this certificate names only localhost, so 127.0.0.1 is refused.
        by_address = Target(running, harness_pem, trust)
        by_address.server = RunningServer(running.url.replace("localhost", "127.0.0.1"), running.port,
                                          running.data_dir, running.process)
        with client(by_address, database) as store, store.open_session() as session:
            with pytest.raises(Exception, match="127.0.0.1"):
                session.load("users/1-A", User)
    finally:
        running.stop()
    assert not (tmp_path / "unused-data").exists()  # RunInMemory wrote nothing where it was told not to


def test_without_foreign_flags_there_is_no_ignoring_warning(plain_server: RunningServer) -> None:
    assert not [line for line in plain_server.output if "ignoring settings" in line]
    assert any(line == f"Server available on: {plain_server.url}" for line in plain_server.output)
