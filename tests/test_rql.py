"""The RQL subset: parsing, RavenDB's comparison semantics, ordering, paging and refusals.

Every "matches" test has its "does not match" twin, and every accepted form its refused neighbour.
The property tests at the end prove that no input, however hostile, raises anything but a
BadRequestError (the HTTP layer renders that as a 400, never a 500).
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roost.documents import rql
from roost.errors import BadRequestError


def doc(doc_id: str, collection: str | None = "Users", **fields: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"@id": doc_id}
    if collection is not None:
        metadata["@collection"] = collection
    return {**fields, "@metadata": metadata}


def ids(result: rql.QueryResult) -> list[str]:
    return [r["@metadata"]["@id"] for r in result.results]  # type: ignore[index]


def matching(query: str, docs: list[dict[str, Any]], **params: Any) -> list[str]:
    return ids(rql.parse(query).run(docs, params))


PEOPLE = [
    doc("users/1", Name="Alice", Age=30, Address={"City": "Lyon"}, Tags=["a", "b"]),
    doc("users/2", Name="bob", Age=25, Address={"City": "Nice"}, Tags=["c"]),
    doc("users/3", Name="Carol", Age=41.5, Address={"City": "lyon"}),
    doc("users/4", Name=None, Age="30"),
    doc("users/5", Email="e@x"),
    doc("orders/1", "Orders", Name="Alice", Age=30),
]


# ---------------------------------------------------------------------------------------------------
# from


@pytest.mark.parametrize(
    ("text", "collection"),
    [
        ("from Users", "Users"),
        ("from 'Users'", "Users"),
        ('from "Users"', "Users"),
        ("FROM Users", "Users"),
        ("from 'Order Lines'", "Order Lines"),
        ("from @all_docs", None),
        ("from @ALL_DOCS", None),
    ],
)
def test_from_names_the_collection_storage_can_push_down(text: str, collection: str | None) -> None:
    assert rql.parse(text).collection == collection


def test_from_a_collection_keeps_only_that_collection_case_insensitively() -> None:
    assert matching("from users", PEOPLE) == ["users/1", "users/2", "users/3", "users/4", "users/5"]
    assert matching("from Orders", PEOPLE) == ["orders/1"]
    assert matching("from Nothing", PEOPLE) == []


def test_from_all_docs_keeps_every_collection_including_documents_without_one() -> None:
    docs = [*PEOPLE, doc("misc/1", None)]
    assert len(matching("from @all_docs", docs)) == len(docs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("select Name from Users", "line 1, column 1: expected 'from' at the start"),
        ("Users", "expected 'from' at the start"),
        ("from", "expected a collection name"),
        ("from ''", "expected a collection name"),
        ("from @empty", "unknown collection @empty"),
        ("from index 'Users/ByName'", "static indexes"),
        ("from Users group by Name", "'group by' is not supported"),
        ("from Users where Name = 'a' load Manager as m", "'load' is not supported"),
        ("declare function f() {} from Users", "'declare function' is not supported"),
        ("from Users x", "expected 'where', 'order by', 'select', 'include' or 'limit'"),
    ],
)
def test_from_refuses_what_is_not_a_collection_query(text: str, expected: str) -> None:
    with pytest.raises(rql.RqlSyntaxError, match=expected):
        rql.parse(text)


# ---------------------------------------------------------------------------------------------------
# where: comparisons


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Age = 30", ["users/1"]),
        ("Age = 30.0", ["users/1"]),
        ("Age != 30", ["users/2", "users/3", "users/4", "users/5"]),
        ("Age <> 30", ["users/2", "users/3", "users/4", "users/5"]),
        ("Age < 30", ["users/2"]),
        ("Age <= 30", ["users/1", "users/2"]),
        ("Age > 30", ["users/3"]),
        ("Age >= 30", ["users/1", "users/3"]),
        ("Age == 25", ["users/2"]),
        ("Age between 25 and 30", ["users/1", "users/2"]),
        ("Age = '30'", ["users/4"]),
        ("Name > 'b'", ["users/2", "users/3"]),
        ("Name < 'B'", ["users/1"]),
    ],
)
def test_comparison_operators(where: str, expected: list[str]) -> None:
    assert matching(f"from Users where {where}", PEOPLE) == expected


def test_strings_compare_case_insensitively_like_an_auto_index() -> None:
    assert matching("from Users where Name = 'ALICE'", PEOPLE) == ["users/1"]
    assert matching("from Users where Name = 'Alicia'", PEOPLE) == []


def test_exact_makes_string_comparison_case_sensitive() -> None:
    assert matching("from Users where exact(Name = 'Alice')", PEOPLE) == ["users/1"]
    assert matching("from Users where exact(Name = 'ALICE')", PEOPLE) == []


def test_a_string_never_equals_a_number_nor_a_bool_a_number() -> None:
    docs = [doc("u/1", N=1), doc("u/2", N="1"), doc("u/3", N=True)]
    assert matching("from Users where N = 1", docs) == ["u/1"]
    assert matching("from Users where N = '1'", docs) == ["u/2"]
    assert matching("from Users where N = true", docs) == ["u/3"]
    assert matching("from Users where N > 0", docs) == ["u/1"]


def test_missing_field_never_equals_not_even_null() -> None:
    assert matching("from Users where Name = null", PEOPLE) == ["users/4"]
    assert matching("from Users where Name != null", PEOPLE) == ["users/1", "users/2", "users/3", "users/5"]
    assert matching("from Users where Email < 'z'", PEOPLE) == ["users/5"]
    assert matching("from Users where Nope >= 0 or Nope < 0", PEOPLE) == []


def test_not_equals_matches_documents_without_the_field_as_ravendb_does() -> None:
    assert "users/5" in matching("from Users where Name != 'Alice'", PEOPLE)
    assert "users/1" not in matching("from Users where Name != 'Alice'", PEOPLE)


def test_nested_field_paths() -> None:
    assert matching("from Users where Address.City = 'Lyon'", PEOPLE) == ["users/1", "users/3"]
    assert matching("from Users where Address.Zip = 'Lyon'", PEOPLE) == []
    assert matching("from Users where Address = 'Lyon'", PEOPLE) == []


def test_quoted_field_names_and_keyword_fields() -> None:
    docs = [doc("u/1", order=1, **{"First Name": "Ann"}), doc("u/2", order=2, **{"First Name": "Bo"})]
    assert matching("from Users where 'order' = 1", docs) == ["u/1"]
    assert matching("from Users where 'First Name' = 'bo'", docs) == ["u/2"]


def test_list_fields_match_when_any_element_matches() -> None:
    docs = [
        doc("u/1", Lines=[{"Product": "p/1"}, {"Product": "p/2"}]),
        doc("u/2", Lines=[{"Product": "p/3"}]),
    ]
    assert matching("from Users where Lines[].Product = 'p/2'", docs) == ["u/1"]
    assert matching("from Users where Lines.Product = 'p/3'", docs) == ["u/2"]
    assert matching("from Users where Tags = 'b'", PEOPLE) == ["users/1"]
    assert matching("from Users where Tags = 'z'", PEOPLE) == []


def test_id_function_compares_the_document_id_case_insensitively() -> None:
    assert matching("from Users where id() = 'USERS/2'", PEOPLE) == ["users/2"]
    assert matching("from Users where id() = 'users/9'", PEOPLE) == []
    assert matching("from @all_docs where startsWith(id(), 'orders/')", PEOPLE) == ["orders/1"]
    assert matching("from Users where exact(id() = 'USERS/2')", PEOPLE) == ["users/2"]


def test_in_with_literals_and_with_a_list_parameter_as_the_client_sends() -> None:
    assert matching("from Users where Name in ('alice', 'BOB')", PEOPLE) == ["users/1", "users/2"]
    assert matching("from Users where Name in ($p0)", PEOPLE, p0=["carol", 7]) == ["users/3"]
    assert matching("from Users where Name in ('nobody')", PEOPLE) == []
    assert matching("from Users where not Age in (30, 25)", PEOPLE) == ["users/3", "users/4", "users/5"]


def test_all_in_needs_every_value() -> None:
    assert matching("from Users where Tags all in ('a', 'b')", PEOPLE) == ["users/1"]
    assert matching("from Users where Tags all in ('a', 'c')", PEOPLE) == []


def test_starts_with_and_ends_with() -> None:
    assert matching("from Users where startsWith(Name, 'al')", PEOPLE) == ["users/1"]
    assert matching("from Users where startsWith(Name, $p)", PEOPLE, p="ol") == []
    assert matching("from Users where endsWith(Name, 'OL')", PEOPLE) == ["users/3"]
    assert matching("from Users where endsWith(Name, 'Al')", PEOPLE) == []
    assert matching("from Users where exact(startsWith(Name, 'al'))", PEOPLE) == []


def test_exists() -> None:
    assert matching("from Users where exists(Email)", PEOPLE) == ["users/5"]
    assert matching("from Users where exists(Name)", PEOPLE) == ["users/1", "users/2", "users/3", "users/4"]
    assert matching("from Users where exists(Address.City) and not exists(Tags)", PEOPLE) == ["users/3"]


# ---------------------------------------------------------------------------------------------------
# where: logic


def test_and_binds_tighter_than_or_and_parentheses_override_it() -> None:
    docs = [doc("u/1", A=1, B=0, C=0), doc("u/2", A=0, B=1, C=1), doc("u/3", A=0, B=1, C=0)]
    assert matching("from Users where A = 1 or B = 1 and C = 1", docs) == ["u/1", "u/2"]
    assert matching("from Users where (A = 1 or B = 1) and C = 1", docs) == ["u/2"]


def test_not_and_true() -> None:
    assert matching("from Users where not Name = 'alice' and Age = 30", PEOPLE) == []
    assert matching("from Users where not (Name = 'alice' and Age = 30)", PEOPLE) == [
        "users/2",
        "users/3",
        "users/4",
        "users/5",
    ]
    assert matching("from Users where true and not Age >= 26", PEOPLE) == ["users/2", "users/4", "users/5"]
    assert matching("from Users where true", PEOPLE) == [
        "users/1",
        "users/2",
        "users/3",
        "users/4",
        "users/5",
    ]


def test_keywords_are_case_insensitive() -> None:
    # users/4's Age is the string '30': not >= 26 as a number, but 30 when ordered `as long`.
    assert matching("FROM Users WHERE Age = 30 OR NOT Age >= 26 ORDER BY Age AS long DESC", PEOPLE) == [
        "users/1",
        "users/4",
        "users/2",
        "users/5",
    ]


def test_comments_are_ignored() -> None:
    text = "from Users // people\nwhere /* the young */ Age < 30"
    assert matching(text, PEOPLE) == ["users/2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from Users where", "line 1, column 17: expected a field name"),
        ("from Users where Name", "expected an operator"),
        ("from Users where Name =", "expected a value"),
        ("from Users where Name = Other", "expected a value"),
        ("from Users where (Name = 1", "expected '\\)' to close the parenthesis opened at line 1, column 18"),
        ("from Users where Name = 1)", "line 1, column 26: expected 'and', 'or', 'order by'"),
        ("from Users\nwhere Name ~ 1", "line 2, column 12: unexpected character '~'"),
        ("from Users where Name = 'abc", "line 1, column 25: unterminated string"),
        ("from Users where Name = 1 /* x", "unterminated comment"),
        ("from Users where Age = 12abc", "after the number 12"),
        ("from Users where Age = $", "expected a parameter name"),
        ("from Users where Name in ()", "expected a value"),
        ("from Users where Name in 'a'", "expected '\\(' to start the list"),
        ("from Users where Age between 1 or 2", "expected 'and' between the two bounds"),
        ("from Users where startsWith(Name)", "expected ',' and the prefix"),
        ("from Users where exists(Name, 1)", "expected '\\)' to close exists"),
        ("from Users where search(Name, 'a')", "search\\(\\) is not supported"),
        ("from Users where regex(Name, 'a')", "regex\\(\\) is not supported"),
        ("from Users where frobnicate(Name)", "unknown function frobnicate"),
        ("from Users where Name = 1 and", "expected a field name"),
        ("from Users where id( = 1", "expected '\\)' after 'id\\('"),
        ("from Users where " + "(" * 100 + "A = 1" + ")" * 100, "nests deeper than 64"),
        ("from Users where " + "not " * 100 + "A = 1", "nests deeper than 64"),
    ],
)
def test_where_refuses_malformed_conditions_naming_the_position(text: str, expected: str) -> None:
    with pytest.raises(rql.RqlSyntaxError, match=expected) as caught:
        rql.parse(text)
    assert caught.value.http_status == 400
    assert "at line " in caught.value.message


def test_nesting_just_under_the_limit_is_accepted() -> None:
    depth = rql.MAX_NESTING - 1
    query = rql.parse("from Users where " + "(" * depth + "Age = 30" + ")" * depth)
    assert ids(query.run(PEOPLE, {})) == ["users/1"]


def test_a_long_flat_condition_does_not_nest() -> None:
    text = "from Users where " + " or ".join(f"Age = {n}" for n in range(2000))
    assert ids(rql.parse(text).run(PEOPLE, {})) == ["users/1", "users/2"]


def test_error_is_a_bad_request() -> None:
    assert issubclass(rql.RqlSyntaxError, BadRequestError)
    assert issubclass(rql.RqlParameterError, BadRequestError)


# ---------------------------------------------------------------------------------------------------
# parameters


def test_parameters_are_collected_and_used() -> None:
    query = rql.parse("from Users where Age >= $min and Name != $name limit $n")
    assert query.parameters == {"min", "name", "n"}
    assert ids(query.run(PEOPLE, {"min": 26, "name": "carol", "n": 5})) == ["users/1"]


def test_a_missing_parameter_is_a_clear_bad_request_even_with_no_documents() -> None:
    query = rql.parse("from Users where Age >= $min and Name = $name")
    with pytest.raises(
        rql.RqlParameterError, match=r"uses \$min, \$name but QueryParameters does not give them"
    ):
        query.run([], {})
    with pytest.raises(rql.RqlParameterError, match=r"\$name"):
        query.matches(PEOPLE[0], {"min": 1})


@pytest.mark.parametrize(
    ("text", "params", "expected"),
    [
        ("from Users where Age = $p", {"p": [1, 2]}, "needs a single value, not a list"),
        ("from Users where Age = $p", {"p": {"a": 1}}, "needs a single value, not an object"),
        ("from Users where Age between $a and $b", {"a": 1, "b": [2]}, "needs a single value"),
        ("from Users where Name in ($p)", {"p": [{"x": 1}]}, "needs a single value"),
        ("from Users where startsWith(Name, $p)", {"p": 1}, "needs a string, not a number"),
        ("from Users limit $p", {"p": "10"}, "must be a whole number, not a string"),
        ("from Users limit $p", {"p": True}, "must be a whole number, not a boolean"),
        ("from Users limit $p", {"p": 1.5}, "must be a whole number, not a number"),
        ("from Users limit $p", {"p": -1}, "must not be negative"),
        ("from Users limit 1 offset $p", {"p": -3}, "must not be negative"),
    ],
)
def test_unusable_parameter_values_are_refused(text: str, params: dict[str, Any], expected: str) -> None:
    with pytest.raises(rql.RqlParameterError, match=expected):
        rql.parse(text).run(PEOPLE, params)


def test_unused_extra_parameters_are_fine() -> None:
    assert ids(rql.parse("from Orders").run(PEOPLE, {"unused": [1, {"x": 2}]})) == ["orders/1"]


# ---------------------------------------------------------------------------------------------------
# order by

NUMBERS = [doc("n/1", V=10), doc("n/2", V=9), doc("n/3", V=100.5), doc("n/4"), doc("n/5", V="7")]


def test_untyped_order_sorts_numbers_numerically_then_strings_with_missing_first() -> None:
    assert matching("from Users order by V", NUMBERS) == ["n/4", "n/2", "n/1", "n/3", "n/5"]
    assert matching("from Users order by V desc", NUMBERS) == ["n/5", "n/3", "n/1", "n/2", "n/4"]


def test_order_as_string_is_lexical() -> None:
    assert matching("from Users order by V as string", NUMBERS) == ["n/4", "n/1", "n/3", "n/5", "n/2"]


def test_order_as_long_and_double_is_numeric_and_reads_numeric_strings() -> None:
    assert matching("from Users order by V as long", NUMBERS) == ["n/4", "n/5", "n/2", "n/1", "n/3"]
    assert matching("from Users order by V AS double desc", NUMBERS) == ["n/3", "n/1", "n/2", "n/5", "n/4"]


def test_order_as_long_truncates_like_a_long() -> None:
    docs = [doc("a", V=2.9), doc("b", V=2.1), doc("c", V=1)]
    # 2.9 and 2.1 are both 2 as a long: a tie, so the input order decides.
    assert matching("from Users order by V as long", docs) == ["c", "a", "b"]
    assert matching("from Users order by V as double", docs) == ["c", "b", "a"]


def test_order_as_alphanumeric_is_natural() -> None:
    docs = [doc("a", V="item10"), doc("b", V="Item2"), doc("c", V="item1")]
    assert matching("from Users order by V as alphaNumeric", docs) == ["c", "b", "a"]
    assert matching("from Users order by V as string", docs) == ["c", "a", "b"]


def test_strings_order_case_insensitively() -> None:
    assert matching("from Users where exists(Age) order by Name", PEOPLE) == [
        "users/4",
        "users/1",
        "users/2",
        "users/3",
    ]


def test_several_order_keys_and_stable_ties() -> None:
    docs = [doc("a", G=1, V=1), doc("b", G=2, V=5), doc("c", G=1, V=3), doc("d", G=2, V=5)]
    assert matching("from Users order by G desc, V", docs) == ["b", "d", "a", "c"]
    assert matching("from Users order by G asc, V descending", docs) == ["c", "a", "b", "d"]


def test_nulls_first_and_last() -> None:
    assert matching("from Users order by V as long nulls last", NUMBERS)[-1] == "n/4"
    assert matching("from Users order by V as long desc nulls first", NUMBERS)[0] == "n/4"
    assert matching("from Users order by V as long desc", NUMBERS)[-1] == "n/4"


def test_objects_sort_with_the_missing_values_even_when_deeply_nested() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):  # str() of this would raise RecursionError
        node["x"] = {}
        node = node["x"]
    docs = [doc("a", V=2), doc("b", V=deep), doc("c", V="t"), doc("d")]
    for ordering in ("", " as string", " as alphaNumeric"):
        assert matching(f"from Users order by V{ordering}", docs) == ["b", "d", "a", "c"], ordering
    # As a long, the text "t" has no value either: it joins the nulls, in input order.
    assert matching("from Users order by V as long", docs) == ["b", "c", "d", "a"]


def test_order_by_id() -> None:
    assert matching("from Users order by id() desc limit 2", PEOPLE) == ["users/5", "users/4"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from Users order Name", "expected 'by' after 'order'"),
        ("from Users order by", "expected a field name"),
        ("from Users order by Name as number", "expected string, long, double or alphaNumeric"),
        ("from Users order by Name nulls", "expected 'first' or 'last'"),
        ("from Users order by random()", "ordering by random\\(\\) is not supported"),
        ("from Users order by score() desc", "ordering by score\\(\\) is not supported"),
        ("from Users order by Name, ", "expected a field name"),
        ("from Users order by Name desc asc", "expected 'select', 'include' or 'limit'"),
    ],
)
def test_order_by_refuses_malformed_keys(text: str, expected: str) -> None:
    with pytest.raises(rql.RqlSyntaxError, match=expected):
        rql.parse(text)


# ---------------------------------------------------------------------------------------------------
# paging


def test_limit_and_offset_forms() -> None:
    everyone = ["users/1", "users/2", "users/3", "users/4", "users/5"]
    assert matching("from Users limit 2", PEOPLE) == everyone[:2]
    assert matching("from Users limit 2 offset 1", PEOPLE) == everyone[1:3]
    assert matching("from Users limit 1, 2", PEOPLE) == everyone[1:3]
    assert matching("from Users limit $p0, $p1", PEOPLE, p0=3, p1=10) == everyone[3:]
    assert matching("from Users limit 0", PEOPLE) == []
    assert matching("from Users limit 10 offset 10", PEOPLE) == []


def test_run_reports_total_before_paging_and_the_offset() -> None:
    result = rql.parse("from Users order by id() limit 2 offset 1").run(PEOPLE, {})
    assert (ids(result), result.total, result.skipped) == (["users/2", "users/3"], 5, 1)
    beyond = rql.parse("from Users limit 5 offset 50").run(PEOPLE, {})
    assert (beyond.results, beyond.total, beyond.skipped) == ([], 5, 5)


def test_skip_and_take_apply_when_the_text_has_no_limit() -> None:
    result = rql.parse("from Users").run(PEOPLE, {}, skip=1, take=2)
    assert (ids(result), result.total, result.skipped) == (["users/2", "users/3"], 5, 1)


def test_the_text_limit_wins_over_skip_and_take() -> None:
    result = rql.parse("from Users limit 1").run(PEOPLE, {}, skip=1, take=3)
    assert ids(result) == ["users/2"]
    result = rql.parse("from Users limit 2, 1").run(PEOPLE, {}, skip=0, take=3)
    assert ids(result) == ["users/3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from Users limit", "expected a whole number or a \\$parameter after 'limit'"),
        ("from Users limit -1", "expected a whole number"),
        ("from Users limit 1.5", "expected a whole number"),
        ("from Users limit 'a'", "expected a whole number"),
        ("from Users limit 1 offset", "after 'offset'"),
        ("from Users limit 1, ", "after 'limit'"),
        ("from Users limit 1 where Age = 1", "expected the end of the query"),
    ],
)
def test_limit_refuses_what_is_not_a_count(text: str, expected: str) -> None:
    with pytest.raises(rql.RqlSyntaxError, match=expected):
        rql.parse(text)


# ---------------------------------------------------------------------------------------------------
# select and include


def test_select_projects_fields_with_metadata_and_nulls_for_missing() -> None:
    result = rql.parse("from Users where id() = 'users/1' select Name, Address.City as City, Nope").run(
        PEOPLE, {}
    )
    assert result.results == [
        {
            "Name": "Alice",
            "City": "Lyon",
            "Nope": None,
            "@metadata": {"@id": "users/1", "@collection": "Users", "@projection": True},
        }
    ]
    assert result.documents == [PEOPLE[0]]


def test_without_select_the_whole_document_comes_back() -> None:
    assert rql.parse("from Users where id() = 'users/1'").run(PEOPLE, {}).results == [PEOPLE[0]]


def test_include_paths_are_parsed() -> None:
    query = rql.parse("from Users include Manager, 'Lines[].Product' limit 1")
    assert query.includes == ("Manager", "Lines[].Product")
    assert rql.parse("from Users").includes == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from Users select", "expected a field name"),
        ("from Users select distinct Name", "'select distinct' is not supported"),
        ("from Users select Name, Address.Name", "names 'Name' twice"),
        ("from Users select count()", "projecting count\\(\\) is not supported"),
        ("from Users include", "expected a field name"),
        ("from Users include counters()", "'include counters\\(...\\)' is not supported"),
    ],
)
def test_select_and_include_refusals(text: str, expected: str) -> None:
    with pytest.raises(rql.RqlSyntaxError, match=expected):
        rql.parse(text)


def test_alias_prefix_is_stripped_from_paths() -> None:
    assert matching("from Users as u where u.Name = 'bob'", PEOPLE) == ["users/2"]
    assert matching("from Users as u where u.Name = 'nobody'", PEOPLE) == []


# ---------------------------------------------------------------------------------------------------
# What the official client actually writes (built offline by ravendb 7.2.7's own query builder)


class User:
    def __init__(self, Id: str | None = None, name: str | None = None, age: int | None = None) -> None:
        self.Id = Id
        self.name = name
        self.age = age


@pytest.fixture(scope="module")
def client_session() -> Iterator[Any]:
    from ravendb import DocumentStore

    # No request is made: building a query is client-side work, so any URL will do.
    store = DocumentStore(urls=["http://127.0.0.1:9"], database="db")
    store.initialize()
    with store.open_session() as session:
        yield session
    store.close()


CLIENT_USERS = [
    doc("users/1-A", name="John", age=30),
    doc("users/2-A", name="jane", age=25),
    doc("users/3-A", name="Jack", age=41),
    doc("users/4-A", name="Zed"),
]


def run_client_query(query: Any) -> list[str]:
    index_query = query.index_query
    return ids(rql.parse(index_query.query).run(CLIENT_USERS, index_query.query_parameters))


def test_client_where_equals_and_greater_than_with_ordering_and_paging(client_session: Any) -> None:
    from ravendb.documents.session.misc import OrderingType

    query = (
        client_session.query(object_type=User)
        .where_greater_than("age", 20)
        .or_else()
        .where_equals("name", "zed")
        .order_by_descending("age", OrderingType.LONG)
        .skip(1)
        .take(2)
    )
    assert query.index_query.query.startswith(
        "from 'Users' where age > $p0 or name = $p1 order by age as long"
    )
    assert run_client_query(query) == ["users/1-A", "users/2-A"]


def test_client_in_starts_with_not_exists_and_id(client_session: Any) -> None:
    q = client_session.query(object_type=User)
    assert run_client_query(q.where_in("name", ["JOHN", "jack"])) == ["users/1-A", "users/3-A"]
    q = client_session.query(object_type=User)
    assert run_client_query(q.where_starts_with("name", "ja").and_also().not_().where_equals("age", 25)) == [
        "users/3-A"
    ]
    q = client_session.query(object_type=User)
    assert run_client_query(q.where_exists("age").and_also().where_ends_with("name", "n")) == ["users/1-A"]
    q = client_session.query(object_type=User)
    assert run_client_query(q.where_equals("Id", "users/2-a")) == ["users/2-A"]
    q = client_session.query(object_type=User)
    assert run_client_query(q.where_between("age", 25, 30).order_by("name")) == ["users/2-A", "users/1-A"]
    q = client_session.query(object_type=User)
    assert run_client_query(q.where_equals("name", "john", exact=True)) == []
    q = client_session.query(object_type=User)
    assert run_client_query(q.where_less_than_or_equal("age", 25).or_else().where_less_than("age", 0)) == [
        "users/2-A"
    ]
    q = client_session.query(object_type=User)
    assert run_client_query(q.open_subclause().where_equals("name", "x").close_subclause()) == []


def test_client_select_fields_and_include_parse(client_session: Any) -> None:
    q = client_session.query(object_type=User).include("manager").where_equals("name", "Jack")
    assert run_client_query(q) == ["users/3-A"]
    q = client_session.query(object_type=User).where_equals("name", "Jack").select_fields(User, "name", "age")
    parsed = rql.parse(q.index_query.query)
    result = parsed.run(CLIENT_USERS, q.index_query.query_parameters)
    assert result.results[0]["name"] == "Jack"
    assert result.results[0]["@metadata"] == {"@id": "users/3-A", "@collection": "Users", "@projection": True}


# ---------------------------------------------------------------------------------------------------
# Properties: nothing but BadRequestError escapes, and the logic is boolean logic

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(["A", "B", "Name", "Address.City", "Tags", "id()", "Lines[].P"])
values_src = st.sampled_from(["1", "2.5", "'a'", '"B"', "true", "false", "null", "$p", "$q", "-3"])

RQL_WORDS = [
    "from", "Users", "'Users'", "@all_docs", "where", "and", "or", "not", "(", ")", ",", ".", "=", "!=",
    "<", "<=", ">", ">=", "in", "all", "between", "startsWith", "endsWith", "exists", "exact", "id()",
    "id", "order", "by", "asc", "desc", "as", "long", "double", "string", "alphaNumeric", "nulls",
    "first", "last", "limit", "offset", "select", "include", "true", "false", "null", "$p", "$q", "1",
    "-2", "3.5", "'x'", '"y"', "Name", "Address.City", "group", "index", "//", "/*", "*/", "'", '"',
    "$", "@", "[]", "search", "\n",
]  # fmt: skip


@st.composite
def conditions(draw: st.DrawFn, depth: int = 0) -> str:
    choice = draw(st.integers(0, 9 if depth < 3 else 4))
    f = draw(field_names)
    v = draw(values_src)
    if choice == 0:
        return f"{f} {draw(st.sampled_from(['=', '!=', '<', '<=', '>', '>=']))} {v}"
    if choice == 1:
        return f"{f} in ({v}, {draw(values_src)})"
    if choice == 2:
        return f"startsWith({f}, {v})"
    if choice == 3:
        return f"exists({f})"
    if choice == 4:
        return f"{f} between {v} and {draw(values_src)}"
    if choice in (5, 6):
        op = "and" if choice == 5 else "or"
        return f"({draw(conditions(depth + 1))} {op} {draw(conditions(depth + 1))})"
    if choice == 7:
        return f"not {draw(conditions(depth + 1))}"
    if choice == 8:
        return f"exact({draw(conditions(depth + 1))})"
    return f"{f} all in ({v})"


documents = st.lists(
    st.builds(
        lambda i, fields: {**fields, "@metadata": {"@id": f"users/{i}", "@collection": "Users"}},
        st.integers(0, 50),
        st.dictionaries(
            st.sampled_from(["A", "B", "Name", "Address", "Tags", "Lines"]), json_values, max_size=4
        ),
    ),
    max_size=6,
)
params = st.dictionaries(st.sampled_from(["p", "q"]), json_values, max_size=2)
# RQL_FUZZ_EXAMPLES=50000 for a deeper run than the suite's default.
FUZZ = settings(
    max_examples=int(os.environ.get("RQL_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(st.text(alphabet=string.printable + "é€\u0000\u2028²", max_size=120))
def test_fuzz_any_text_parses_or_raises_a_syntax_error(text: str) -> None:
    try:
        rql.parse(text)
    except rql.RqlSyntaxError as exc:
        assert "at line " in exc.message


@FUZZ
@given(st.lists(st.sampled_from(RQL_WORDS), max_size=25), documents, params)
def test_fuzz_rql_shaped_token_soup_only_raises_bad_request(words: list[str], docs: Any, ps: Any) -> None:
    try:
        query = rql.parse(" ".join(words))
    except rql.RqlSyntaxError:
        return
    try:
        result = query.run(docs, ps, skip=0, take=None)
    except BadRequestError:
        return
    assert result.total >= len(result.results)


@FUZZ
@given(conditions(), documents, params, st.sampled_from(["", "order by A", "order by Name as long desc"]))
def test_fuzz_generated_queries_evaluate_or_refuse_parameters_cleanly(
    condition: str, docs: Any, ps: Any, order: str
) -> None:
    query = rql.parse(f"from Users where {condition} {order}")
    try:
        result = query.run(docs, ps)
    except rql.RqlParameterError:
        return
    assert result.total == len(result.results) <= len(docs)
    assert sum(query.matches(d, ps) for d in docs) == result.total


@FUZZ
@given(conditions(), conditions(), documents, st.fixed_dictionaries({"p": json_scalars, "q": json_scalars}))
def test_fuzz_and_or_not_follow_boolean_logic(a: str, b: str, docs: Any, ps: Any) -> None:
    def matches(where: str) -> list[bool] | None:
        try:
            query = rql.parse(f"from Users where {where}")
            return [query.matches(d, ps) for d in docs]
        except rql.RqlParameterError:
            return None

    left, right = matches(a), matches(b)
    if left is None or right is None:
        return
    assert matches(f"not ({a})") == [not x for x in left]
    assert matches(f"({a}) and ({b})") == [x and y for x, y in zip(left, right, strict=True)]
    assert matches(f"({a}) or ({b})") == [x or y for x, y in zip(left, right, strict=True)]
