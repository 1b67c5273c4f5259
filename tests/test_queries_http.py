"""``POST /databases/{db}/queries`` and includes over HTTP: answers, and a clear 400 (never a 500) for bad input."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RunningServer


@pytest.fixture(scope="module")
def database(server: RunningServer, admin: requests.Session) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"{server.url}/admin/databases?name={name}").status_code == 201
    commands = [
        {"Id": "users/1", "Type": "PUT", "ChangeVector": None,
         "Document": {"Name": "Ann", "Age": 31, "Boss": "users/2", "Refs": ["users/2", "x\\y", 7],
                      "@metadata": {"@collection": "Users"}}},
        {"Id": "users/2", "Type": "PUT", "ChangeVector": None,
         "Document": {"Name": "Bo", "Age": 45, "@metadata": {"@collection": "Users"}}},
        {"Id": "orders/1", "Type": "PUT", "ChangeVector": None,
         "Document": {"Lines": [{"Product": "users/1"}, {"Product": "users/2"}],
                      "@metadata": {"@collection": "Orders"}}},
    ]
    assert admin.post(f"{server.url}/databases/{name}/bulk_docs", json={"Commands": commands}).status_code == 201
    return name


def query(server: RunningServer, admin: requests.Session, database: str, body: Any) -> requests.Response:
    # No Content-Type, as the RavenDB clients send it.
    return admin.post(f"{server.url}/databases/{database}/queries?queryHash=1", data=json.dumps(body).encode())


def test_query_answers_in_ravendbs_shape(server: RunningServer, admin: requests.Session, database: str) -> None:
    response = query(server, admin, database, {"Query": "from Users where Age > $a", "QueryParameters": {"a": 40}})
    assert response.status_code == 200
    body = response.json()
    assert [r["@metadata"]["@id"] for r in body["Results"]] == ["users/2"]
    assert body["Results"][0]["@metadata"]["@change-vector"]
    assert (body["TotalResults"], body["LongTotalResults"], body["SkippedResults"], body["IsStale"]) == (1, 1, 0, False)
    assert body["IndexName"] == "collection/Users" and body["NodeTag"] == "A"
    assert body["IndexTimestamp"].endswith("Z") and "." in body["IndexTimestamp"]  # fractional seconds
    assert "ETag" not in response.headers  # the client would cache by it


def test_result_etag_changes_with_the_answer(server: RunningServer, admin: requests.Session, database: str) -> None:
    def etag(text: str) -> int:
        return int(query(server, admin, database, {"Query": text}).json()["ResultEtag"])

    assert etag("from Users") == etag("from Users")
    assert etag("from Users") != etag("from Users where Age > 40")


def test_start_and_page_size_apply_when_the_text_has_no_limit(
    server: RunningServer, admin: requests.Session, database: str
) -> None:
    body = query(server, admin, database, {"Query": "from Users order by Age", "Start": 1, "PageSize": 5}).json()
    assert [r["Name"] for r in body["Results"]] == ["Bo"] and body["TotalResults"] == 2
    body = query(server, admin, database, {"Query": "from Users order by Age limit 1", "PageSize": 5}).json()
    assert [r["Name"] for r in body["Results"]] == ["Ann"]


def test_query_includes_follow_lists_and_skip_values_that_are_not_ids(
    server: RunningServer, admin: requests.Session, database: str
) -> None:
    body = query(server, admin, database, {"Query": "from Orders include Lines[].Product"}).json()
    assert sorted(body["Includes"]) == ["users/1", "users/2"]
    assert body["IncludedPaths"] == ["Lines[].Product"]
    # "x\\y" can never be a document id, and 7 is not a string: neither fails the query.
    body = query(server, admin, database, {"Query": "from Users where id() = 'users/1' include Refs"}).json()
    assert list(body["Includes"]) == ["users/2"]
    assert query(server, admin, database, {"Query": "from Users"}).json()["Includes"] == {}


def test_load_includes_use_the_same_paths(server: RunningServer, admin: requests.Session, database: str) -> None:
    url = f"{server.url}/databases/{database}/docs?&id=orders%2F1&include=Lines[].Product"
    assert sorted(admin.get(url).json()["Includes"]) == ["users/1", "users/2"]
    url = f"{server.url}/databases/{database}/docs?&id=users%2F1&include=Refs"
    assert list(admin.get(url).json()["Includes"]) == ["users/2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Query": 5}, "Query must be a string of RQL"),
        ({}, "Query must be a string of RQL"),
        ({"Query": "from Users", "QueryParameters": [1]}, "QueryParameters must be a JSON object"),
        ({"Query": "from Users", "Start": -1}, "Start must be a whole number"),
        ({"Query": "from Users", "PageSize": True}, "PageSize must be a whole number"),
        ({"Query": "from Users where"}, "line 1, column 17: expected a field name"),
        ({"Query": "from Users where Age > $p"}, r"uses \$p but QueryParameters does not give it"),
        ({"Query": "from Users where Age > $p", "QueryParameters": {"p": [1]}}, "needs a single value"),
        ({"Query": "from index 'X'"}, "static indexes"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_queries_are_400_with_a_message(
    server: RunningServer, admin: requests.Session, database: str, body: Any, message: str
) -> None:
    response = query(server, admin, database, body)
    assert response.status_code == 400, response.text
    assert re.search(message, response.json()["Message"]), response.json()["Message"]


def test_a_query_on_a_missing_database_is_503_database_missing(server: RunningServer, admin: requests.Session) -> None:
    response = query(server, admin, "no-such-db", {"Query": "from Users"})
    assert (response.status_code, response.headers["Database-Missing"]) == (503, "no-such-db")


def test_a_too_deeply_nested_body_is_400_not_500(server: RunningServer, admin: requests.Session, database: str) -> None:
    depth = 100_000
    nested = '{"Query": "from Users", "QueryParameters": {"p": ' + "[" * depth + "]" * depth + "}}"
    response = admin.post(f"{server.url}/databases/{database}/queries", data=nested.encode())
    assert response.status_code == 400 and "nested too deeply" in response.json()["Message"]
    shallow = '{"Query": "from Users", "QueryParameters": {"p": ' + "[" * 50 + "]" * 50 + "}}"
    assert admin.post(f"{server.url}/databases/{database}/queries", data=shallow.encode()).status_code == 200


def test_a_malformed_body_is_400(server: RunningServer, admin: requests.Session, database: str) -> None:
    response = admin.post(f"{server.url}/databases/{database}/queries", data=b"{not json")
    assert response.status_code == 400 and "Malformed JSON" in response.json()["Message"]


RQL_PIECES = ["from", "Users", "@all_docs", "where", "Age", "Name", "=", ">", "(", ")", "and", "or", "not",
              "'Ann'", "31", "$p", "in", "order by", "desc", "as long", "limit", "1", ",", "include", "Boss",
              "startsWith(Name, 'A')", "exists(Age)", "id()", "select", "\u00e9", "'", "$", "/*"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(RQL_PIECES), max_size=14),
       st.dictionaries(st.just("p"), st.none() | st.integers() | st.text(max_size=3) | st.lists(st.integers())))
def test_no_query_text_makes_the_server_fail(
    server: RunningServer, admin: requests.Session, database: str, words: list[str], params: dict[str, Any]
) -> None:
    response = query(server, admin, database, {"Query": " ".join(words), "QueryParameters": params})
    assert response.status_code in (200, 400), response.text
