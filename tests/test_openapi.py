"""GET /openapi.json describes the whole HTTP API, and exactly the routes the server installs."""

from __future__ import annotations

import inspect
import re

from conftest import RunningServer
from roost.http.app import ROUTE_TABLES
from roost.http.openapi import describe, inputs, openapi_path

# What handlers (and the helpers they call with the request) read from the query string.
_READS = re.compile(r"""(?:query\.get(?:all)?\(|q\.get\(|query_(?:bool|int)\(request,\s*)["']([A-Za-z]+)["']""")


def _declared() -> dict[tuple[str, str], str]:
    return {(r.method.lower(), openapi_path(r.path)): r.level.value for t in ROUTE_TABLES for r in t.routes}


def test_the_served_description_lists_every_route_and_nothing_else(server: RunningServer) -> None:
    response = server.admin().get(f"{server.url}/openapi.json")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    spec = response.json()
    assert spec["openapi"] == "3.1.0"
    described = {(method, path): operation["x-roost-level"]
                 for path, item in spec["paths"].items() for method, operation in item.items()}
    declared = _declared()
    assert described == declared  # every route, with its level; nothing extra
    assert ("get", "/openapi.json") in described and described[("get", "/openapi.json")] == "Operator"
    assert spec == describe(ROUTE_TABLES)
    operation_ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_the_description_is_refused_below_operator(server: RunningServer) -> None:
    user = server.generate("openapi-reader", "ValidUser", {"Shop": "Admin"})
    assert server.session(user.pem_path).get(f"{server.url}/openapi.json").status_code == 403
    assert server.session(None).get(f"{server.url}/openapi.json").status_code == 403


def test_every_query_parameter_a_handler_reads_is_described() -> None:
    for table in ROUTE_TABLES:
        module = inspect.getmodule(table.routes[0].handler)
        helpers = {name: inspect.getsource(f) for name, f in vars(module).items()
                   if name.startswith("_") and inspect.isfunction(f)
                   and list(inspect.signature(f).parameters)[:1] == ["request"]}
        for route in table.routes:
            body = inspect.getsource(route.handler)
            for name, text in helpers.items():  # _tag(request), _load(request, ...): their reads count too
                if f"{name}(request" in body:
                    body += text
            read = set(_READS.findall(body))
            described = set(inputs(route).get("query", {}))
            assert read <= described, f"{route.method} {route.path} reads {sorted(read - described)} undescribed"
            assert described <= read, f"{route.method} {route.path} describes {sorted(described - read)} it never reads"


def test_links_name_operations_that_exist() -> None:
    spec = describe(ROUTE_TABLES)
    operation_ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    links = [link for item in spec["paths"].values() for op in item.values()
             for response in op["responses"].values() for link in response.get("links", {}).values()]
    assert len(links) >= 10
    assert all(link["operationId"] in operation_ids for link in links)
