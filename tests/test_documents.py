"""Databases and documents over real HTTPS: RavenDB's shapes, concurrency, and bad input that changes nothing."""

from __future__ import annotations

import requests

from conftest import RunningServer


def _create(server: RunningServer, name: str) -> None:
    response = server.admin().put(f"{server.url}/admin/databases", params={"name": name})
    assert response.status_code == 201, response.text
    assert response.json()["Name"] == name


def test_put_get_delete_with_metadata_and_case_insensitive_ids(server: RunningServer) -> None:
    _create(server, "docs1")
    admin = server.admin()
    url = f"{server.url}/databases/docs1/docs"
    put = admin.put(url, params={"id": "Users/1"}, json={"Name": "Ada", "@metadata": {"@collection": "Users",
                                                                                          "Raven-Python-Type": "m.U"}})
    assert put.status_code == 201
    change_vector = put.json()["ChangeVector"]
    assert change_vector.startswith("A:")
    got = admin.get(url, params={"id": "users/1"})  # another case: same document
    assert got.status_code == 200
    doc = got.json()["Results"][0]
    assert doc["Name"] == "Ada"
    meta = doc["@metadata"]
    assert meta["@id"] == "Users/1" and meta["@collection"] == "Users" and meta["Raven-Python-Type"] == "m.U"
    assert meta["@change-vector"] == change_vector
    assert "." in meta["@last-modified"] and meta["@last-modified"].endswith("Z")
    assert admin.delete(url, params={"id": "USERS/1"}).status_code == 204
    assert admin.get(url, params={"id": "users/1"}).status_code == 404


def test_optimistic_concurrency(server: RunningServer) -> None:
    _create(server, "docs2")
    admin = server.admin()
    url = f"{server.url}/databases/docs2/docs"
    first = admin.put(url, params={"id": "a/1"}, json={"V": 1}).json()["ChangeVector"]
    second = admin.put(url, params={"id": "a/1"}, json={"V": 2}, headers={"If-Match": f'"{first}"'})
    assert second.status_code == 201
    stale = admin.put(url, params={"id": "a/1"}, json={"V": 3}, headers={"If-Match": f'"{first}"'})
    assert stale.status_code == 409
    assert stale.json()["Type"].endswith("ConcurrencyException")
    assert admin.get(url, params={"id": "a/1"}).json()["Results"][0]["V"] == 2


def test_bulk_docs_is_one_transaction(server: RunningServer) -> None:
    _create(server, "docs3")
    admin = server.admin()
    bulk = f"{server.url}/databases/docs3/bulk_docs"
    ok = admin.post(bulk, data='{"Commands": [{"Id": "x/1", "ChangeVector": null, "Type": "PUT", "Document": '
                               '{"N": 1, "@metadata": {"@collection": "Xs"}}}, {"Id": "x/2", "Type": "PUT", '
                               '"Document": {"N": 2}}]}')  # no Content-Type, as RavenDB's clients send it
    assert ok.status_code == 201
    results = ok.json()["Results"]
    assert [r["@id"] for r in results] == ["x/1", "x/2"] and all(r["Type"] == "PUT" for r in results)
    cv1 = results[0]["@change-vector"]
    # A stale change vector on the second command aborts the whole batch: x/3 must not appear.
    failed = admin.post(bulk, json={"Commands": [
        {"Id": "x/3", "Type": "PUT", "Document": {"N": 3}},
        {"Id": "x/1", "Type": "PUT", "ChangeVector": "A:999-nope", "Document": {"N": 9}},
    ]})
    assert failed.status_code == 409
    assert admin.get(f"{server.url}/databases/docs3/docs", params={"id": "x/3"}).status_code == 404
    deleted = admin.post(bulk, json={"Commands": [{"Id": "x/1", "Type": "DELETE", "ChangeVector": cv1}]})
    assert deleted.status_code == 201 and deleted.json()["Results"][0] == {
        "Type": "DELETE", "@id": "x/1", "Id": "x/1", "Deleted": True}


def test_load_many_and_include(server: RunningServer) -> None:
    _create(server, "docs4")
    admin = server.admin()
    url = f"{server.url}/databases/docs4/docs"
    admin.put(url, params={"id": "orders/1"}, json={"Customer": "customers/1"})
    admin.put(url, params={"id": "customers/1"}, json={"Name": "C"})
    many = admin.get(url, params=[("id", "orders/1"), ("id", "missing/1"), ("include", "Customer")]).json()
    assert many["Results"][0]["Customer"] == "customers/1" and many["Results"][1] is None
    assert many["Includes"]["customers/1"]["Name"] == "C"
    posted = admin.post(url, json={"Ids": ["orders/1", "customers/1"]})
    assert [d["@metadata"]["@id"] for d in posted.json()["Results"]] == ["orders/1", "customers/1"]


def test_missing_database_is_503_with_database_missing(server: RunningServer) -> None:
    response = server.admin().get(f"{server.url}/databases/nosuchdb/docs", params={"id": "a"})
    assert response.status_code == 503
    assert response.headers["Database-Missing"] == "nosuchdb"
    assert response.json()["Type"].endswith("DatabaseDoesNotExistException")


def test_bad_input_is_400_and_changes_nothing(server: RunningServer) -> None:
    _create(server, "docs5")
    admin = server.admin()
    url = f"{server.url}/databases/docs5/docs"
    cases: list[tuple[requests.Response, str]] = [
        (admin.put(url, params={"id": "a/1"}, data=b"{not json"), "Malformed JSON body at line 1"),
        (admin.put(url, params={"id": "a/1"}, data=b"[1, 2]"), "must be a JSON object"),
        (admin.put(url, params={"id": "a/\x01"}, json={}), "control characters"),
        (admin.put(url, params={"id": "a\\b"}, json={}), "backslash"),
        (admin.put(url, params={"id": "a/1"}, data=b'{"x": NaN}'), "NaN is not valid JSON"),
        (admin.post(f"{server.url}/databases/docs5/bulk_docs", json={"Commands": [{"Type": "PATCH", "Id": "a"}]}),
         "Type 'PATCH' is not supported"),
        (admin.put(f"{server.url}/admin/databases", params={"name": "../etc"}), "path separator"),
        (admin.put(f"{server.url}/admin/databases", params={"name": "bad\x00name"}), "control characters"),
        (admin.put(f"{server.url}/admin/databases", params={"name": ""}), "Database name is required"),
        (admin.post(f"{server.url}/admin/certificates", json={"Name": "x", "SecurityClearance": "God",
                                                              "Permissions": {}}), "Invalid SecurityClearance"),
        (admin.post(f"{server.url}/admin/certificates", json={"Name": "x", "SecurityClearance": "ValidUser",
                                                              "Permissions": {"db": "Write"}}), "invalid access Write"),
        (admin.post(f"{server.url}/admin/certificates", json={"Name": "x", "SecurityClearance": "ValidUser",
                                                              "Permissions": {}, "Bogus": 1}), "Unknown field(s)"),
        (admin.post(f"{server.url}/admin/certificates", json={"SecurityClearance": "ValidUser", "Permissions": {}}),
         "Name is a required field"),
    ]
    for response, fragment in cases:
        assert response.status_code == 400, (response.status_code, response.text)
        assert fragment in response.json()["Message"], (fragment, response.text)
    assert admin.get(url, params={"id": "a/1"}).status_code == 404
    names = admin.get(f"{server.url}/databases", params={"namesOnly": "true"}).json()["Databases"]
    assert "../etc" not in names and "docs5" in names
    listed = admin.get(f"{server.url}/admin/certificates", params={"name": "x"}).json()["Results"]
    assert listed == []


def test_body_over_the_limit_is_413(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import start_server

    small = start_server(tmp_path / "data", "--max_body_bytes=2048")
    try:
        admin = small.admin()
        assert admin.put(f"{small.url}/admin/databases", params={"name": "lim"}).status_code == 201
        big = admin.put(f"{small.url}/databases/lim/docs", params={"id": "a"}, json={"x": "y" * 5000})
        assert big.status_code == 413
        assert "limit" in big.json()["Message"]
        assert admin.get(f"{small.url}/databases/lim/docs", params={"id": "a"}).status_code == 404
        fits = admin.put(f"{small.url}/databases/lim/docs", params={"id": "a"}, json={"x": "y" * 100})
        assert fits.status_code == 201
    finally:
        small.stop()


def test_deleting_a_database_removes_it_from_permissions(server: RunningServer) -> None:
    _create(server, "gone")
    _create(server, "kept")
    user = server.generate("perm-user", "ValidUser", {"gone": "ReadWrite", "kept": "Read"})
    admin = server.admin()
    deleted = admin.delete(f"{server.url}/admin/databases", json={"DatabaseNames": ["gone"], "HardDelete": True})
    assert deleted.status_code == 200 and "RaftCommandIndex" in deleted.json()
    entry = admin.get(f"{server.url}/admin/certificates", params={"thumbprint": user.thumbprint}).json()["Results"][0]
    assert entry["Permissions"] == {"kept": "Read"}
    # Re-creating the database does not bring old access back (RavenDB PR #13351).
    _create(server, "gone")
    refused = server.session(user.pem_path).get(f"{server.url}/databases/gone/docs", params={"id": "a"})
    assert refused.status_code == 403
    missing = admin.delete(f"{server.url}/admin/databases", json={"DatabaseNames": ["never-was"]})
    assert missing.status_code == 404


def test_duplicate_database_is_409(server: RunningServer) -> None:
    _create(server, "twice")
    again = server.admin().put(f"{server.url}/admin/databases", params={"name": "TWICE"})
    assert again.status_code == 409
    assert "already exists" in again.json()["Message"]
