"""An OpenAPI 3.1 description of the whole HTTP API, built from the route table the server installs.

Paths, methods and authorization levels come from the RouteTables themselves, so a route cannot be served without
being described (tests/test_openapi.py checks both ways, and that every query parameter a handler reads is listed
here). What a handler reads beyond its path (query parameters, headers, the body) is declared in ``_INPUTS``: the
fuzzer (tests/test_fuzz.py) generates its requests from this description.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from roost import RAVEN_SERVER_VERSION
from roost.http.body import json_response
from roost.http.routing import TABLES, Route, RouteTable
from roost.types import Level

routes = RouteTable()

_STRING: dict[str, Any] = {"type": "string"}
_BOOL_TEXT: dict[str, Any] = {"type": "string", "enum": ["true", "false"]}
_INT_TEXT: dict[str, Any] = {"type": "integer"}
_OBJECT: dict[str, Any] = {"type": "object"}
_STRINGS: dict[str, Any] = {"type": "array", "items": _STRING}
_PERMISSIONS: dict[str, Any] = {"type": "object", "additionalProperties": {
    "type": "string", "enum": ["Read", "ReadWrite", "Admin"]}}
_CLEARANCE: dict[str, Any] = {"type": "string", "enum": ["ValidUser", "Operator", "ClusterAdmin"]}
_LOCK: dict[str, Any] = {"type": "object", "properties": {"Recipients": _STRINGS, "Passphrase": _STRING}}


def _obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


# (method, path) -> {"query": {name: schema}, "repeat": {names that may appear several times}, "headers": {...},
#                    "body": JSON schema | "binary", "required": [query names that must be given]}
_INPUTS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/admin/certificates"): {"query": {
        "start": _INT_TEXT, "pageSize": _INT_TEXT, "thumbprint": _STRING, "name": _STRING, "metadataOnly": _BOOL_TEXT,
        "secondary": _BOOL_TEXT, "filter": _STRING, "clearance": _STRING, "state": _STRING, "sort": _STRING}},
    ("POST", "/admin/certificates"): {"body": _obj(
        Name=_STRING, SecurityClearance=_CLEARANCE, Permissions=_PERMISSIONS, Password=_STRING, KeyType=_STRING,
        NotAfter=_STRING, ExpirationMonths=_INT_TEXT, TwoFactorAuthenticationKey=_STRING)},
    ("PUT", "/admin/certificates"): {"body": _obj(
        Name=_STRING, Certificate=_STRING, SecurityClearance=_CLEARANCE, Permissions=_PERMISSIONS, Password=_STRING,
        NotAfter=_STRING, TwoFactorAuthenticationKey=_STRING)},
    ("POST", "/admin/certificates/edit"): {"query": {"deleteTwoFactorConfiguration": _BOOL_TEXT}, "body": _obj(
        Thumbprint=_STRING, Name=_STRING, SecurityClearance=_CLEARANCE, Permissions=_PERMISSIONS,
        Disabled={"type": "boolean"}, TwoFactorAuthenticationKey=_STRING)},
    ("DELETE", "/admin/certificates"): {"query": {"thumbprint": _STRING}},
    ("DELETE", "/admin/certificates/purge"): {},
    ("GET", "/admin/certificates/export"): {},
    ("POST", "/admin/certificates/replace-cluster-cert"): {"query": {"replaceImmediately": _BOOL_TEXT},
                                                           "body": _obj(Certificate=_STRING, Password=_STRING)},
    ("POST", "/admin/certificates/refresh"): {"query": {"replaceImmediately": _BOOL_TEXT}},
    ("DELETE", "/admin/cluster/node"): {"query": {"nodeTag": _STRING}, "required": ["nodeTag"]},
    ("PUT", "/admin/databases"): {"query": {"name": _STRING}, "body": _obj(DatabaseName=_STRING)},
    ("DELETE", "/admin/databases"): {"query": {"name": _STRING}, "repeat": {"name"},
                                     "body": _obj(DatabaseNames=_STRINGS, HardDelete={"type": "boolean"})},
    ("GET", "/databases"): {"query": {"start": _INT_TEXT, "pageSize": _INT_TEXT, "namesOnly": _BOOL_TEXT}},
    ("GET", "/admin/databases"): {"query": {"name": _STRING}, "required": ["name"]},
    ("GET", "/admin/databases/access"): {"query": {"name": _STRING}, "required": ["name"]},
    ("POST", "/admin/certificates/rotate"): {"body": _obj(Thumbprint=_STRING, Password=_STRING, KeyType=_STRING)},
    ("DELETE", "/admin/certificates/2fa/sessions"): {"query": {"thumbprint": _STRING}, "required": ["thumbprint"]},
    ("DELETE", "/admin/certificates/2fa/lockout"): {"query": {"thumbprint": _STRING}, "required": ["thumbprint"]},
    ("GET", "/admin/certificates/history"): {"query": {"thumbprint": _STRING}, "required": ["thumbprint"]},
    ("GET", "/databases/{db}/docs"): {"query": {"id": _STRING, "include": _STRING, "start": _INT_TEXT,
                                                "pageSize": _INT_TEXT}, "repeat": {"id", "include"}},
    ("GET", "/databases/{db}/counters"): {"query": {"docId": _STRING, "counter": _STRING, "full": _BOOL_TEXT},
                                          "required": ["docId"], "repeat": {"counter"}},
    ("PUT", "/databases/{db}/attachments"): {"query": {"id": _STRING, "name": _STRING, "contentType": _STRING},
                                             "required": ["id", "name"]},
    ("GET", "/databases/{db}/attachments"): {"query": {"id": _STRING, "name": _STRING}, "required": ["id", "name"]},
    ("DELETE", "/databases/{db}/attachments"): {"query": {"id": _STRING, "name": _STRING},
                                                "required": ["id", "name"]},
    ("POST", "/databases/{db}/docs"): {"query": {"include": _STRING}, "repeat": {"include"},
                                       "body": _obj(Ids=_STRINGS)},
    ("PUT", "/databases/{db}/docs"): {"query": {"id": _STRING}, "required": ["id"], "headers": {"If-Match": _STRING},
                                      "body": _OBJECT},
    ("DELETE", "/databases/{db}/docs"): {"query": {"id": _STRING}, "required": ["id"],
                                         "headers": {"If-Match": _STRING}},
    ("POST", "/databases/{db}/bulk_docs"): {"body": _obj(Commands={"type": "array", "items": _obj(
        Type={"type": "string", "enum": ["PUT", "DELETE"]}, Id=_STRING, Document=_OBJECT, ChangeVector=_STRING)})},
    ("POST", "/databases/{db}/bulk_insert"): {"query": {"id": _INT_TEXT}, "body": "binary"},
    ("POST", "/databases/{db}/operations/kill"): {"query": {"id": _INT_TEXT}, "required": ["id"]},
    ("GET", "/databases/{db}/operations/state"): {"query": {"id": _INT_TEXT}, "required": ["id"]},
    ("GET", "/databases/{db}/hilo/next"): {"query": {
        "tag": _STRING, "lastBatchSize": _INT_TEXT, "lastRangeAt": _STRING, "identityPartsSeparator": _STRING,
        "lastMax": _INT_TEXT}},
    ("PUT", "/databases/{db}/hilo/return"): {"query": {"tag": _STRING, "end": _INT_TEXT, "last": _INT_TEXT}},
    ("POST", "/databases/{db}/queries"): {"body": _obj(Query=_STRING, QueryParameters=_OBJECT,
                                                       Start=_INT_TEXT, PageSize=_INT_TEXT)},
    ("GET", "/admin/security/allowed-ips"): {},
    ("PUT", "/admin/security/allowed-ips"): {"query": {"force": _BOOL_TEXT}, "body": _obj(AllowedIPs=_STRINGS)},
    ("GET", "/admin/audit"): {"query": {"since": _INT_TEXT, "limit": _INT_TEXT}},
    ("GET", "/topology"): {"query": {"name": _STRING}},
    ("GET", "/admin/certificates/2fa/generate"): {},
    ("POST", "/admin/certificates/2fa/qr"): {"body": _obj(Secret=_STRING, Name=_STRING, Issuer=_STRING)},
    ("POST", "/authentication/2fa"): {"query": {"hasLimits": _BOOL_TEXT, "sessionDurationInMin": _INT_TEXT},
                                      "body": _obj(Token=_STRING)},
    ("DELETE", "/authentication/2fa"): {},
    ("GET", "/authentication/2fa/configuration"): {},
    ("POST", "/databases/{db}/admin/backups"): {"body": _LOCK},
    ("POST", "/admin/backups"): {"body": _LOCK},
    ("POST", "/admin/backups/restore"): {
        "query": {"database": _STRING, "from": _STRING}, "required": ["database"], "body": "binary",
        "headers": {"Roost-Backup-Identity": _STRING, "Roost-Backup-Passphrase": _STRING}},
    ("PUT", "/admin/backups/schedules"): {"body": _obj(
        Database=_STRING, IntervalSeconds=_INT_TEXT, Retention=_INT_TEXT, Folder=_STRING, Recipients=_STRINGS)},
    ("DELETE", "/admin/backups/schedules"): {"query": {"database": _STRING}, "required": ["database"]},
    ("POST", "/admin/backups/schedules/run"): {"query": {"database": _STRING, "wait": _BOOL_TEXT},
                                               "required": ["database"]},
}

# OpenAPI links: what an accepted response makes possible next (schemathesis' stateful run follows them).
# (method, path) -> (status, {link name: ((method, path) of the next operation, {parameter: runtime expression})})
_LINKS: dict[tuple[str, str], tuple[str, dict[str, tuple[tuple[str, str], dict[str, str]]]]] = {
    ("PUT", "/admin/databases"): ("201", {
        "PutDocument": (("PUT", "/databases/{db}/docs"), {"path.db": "$request.query.name"}),
        "LoadDocuments": (("GET", "/databases/{db}/docs"), {"path.db": "$request.query.name"}),
        "BulkDocs": (("POST", "/databases/{db}/bulk_docs"), {"path.db": "$request.query.name"}),
        "Query": (("POST", "/databases/{db}/queries"), {"path.db": "$request.query.name"}),
        "NextHiLo": (("GET", "/databases/{db}/hilo/next"), {"path.db": "$request.query.name"}),
        "BackUp": (("POST", "/databases/{db}/admin/backups"), {"path.db": "$request.query.name"}),
        "DeleteDatabase": (("DELETE", "/admin/databases"), {"query.name": "$request.query.name"}),
    }),
    ("PUT", "/databases/{db}/docs"): ("201", {
        "GetDocument": (("GET", "/databases/{db}/docs"), {"path.db": "$request.path.db",
                                                           "query.id": "$request.query.id"}),
        "DeleteDocument": (("DELETE", "/databases/{db}/docs"), {"path.db": "$request.path.db",
                                                                 "query.id": "$request.query.id"}),
        "PutAgain": (("PUT", "/databases/{db}/docs"), {"path.db": "$request.path.db", "query.id": "$request.query.id"}),
    }),
    ("PUT", "/admin/backups/schedules"): ("200", {
        "RunSchedule": (("POST", "/admin/backups/schedules/run"), {"query.database": "$request.body#/Database"}),
        "DeleteSchedule": (("DELETE", "/admin/backups/schedules"), {"query.database": "$request.body#/Database"}),
    }),
}

_PATH_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")


def openapi_path(path: str) -> str:
    """aiohttp's ``/studio/{path:.*}`` is OpenAPI's ``/studio/{path}``."""
    return _PATH_PARAMETER.sub(lambda m: "{" + m.group(1) + "}", path)


def inputs(route: Route) -> dict[str, Any]:
    return _INPUTS.get((route.method, route.path), {})


def _operation_id(method: str, handler_name: str) -> str:
    return f"{method.lower()}_{handler_name}"


def _operation(route: Route, ids: dict[tuple[str, str], str]) -> dict[str, Any]:
    declared = inputs(route)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _STRING}
        for name in _PATH_PARAMETER.findall(route.path)]
    required = set(declared.get("required", ()))
    for name, schema in declared.get("query", {}).items():
        if name in declared.get("repeat", ()):
            parameters.append({"name": name, "in": "query", "required": name in required,
                               "schema": {"type": "array", "items": schema}, "style": "form", "explode": True})
        else:
            parameters.append({"name": name, "in": "query", "required": name in required, "schema": schema})
    for name, schema in declared.get("headers", {}).items():
        parameters.append({"name": name, "in": "header", "required": False, "schema": schema})
    doc = (route.handler.__doc__ or "").strip()
    operation: dict[str, Any] = {
        "operationId": _operation_id(route.method, route.handler.__name__),
        "summary": doc.split("\n")[0][:200] if doc else route.handler.__name__.replace("_", " "),
        "x-roost-level": route.level.value,
        "security": [] if route.level is Level.UNAUTHENTICATED else [{"clientCertificate": []}],
        "parameters": parameters,
        "responses": {"default": {"description": "JSON; errors carry Type, Message and Error (RavenDB's shape)."}},
    }
    if (route.method, route.path) in _LINKS:
        status, links = _LINKS[(route.method, route.path)]
        operation["responses"][status] = {"description": "Accepted.", "links": {
            name: {"operationId": ids[target], "parameters": parameters}
            for name, (target, parameters) in links.items() if target in ids}}
    body = declared.get("body")
    if body == "binary":
        operation["requestBody"] = {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}
    elif body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return operation


def describe(tables: list[RouteTable]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the routes in ``tables`` (HEAD, served for every GET, is implied)."""
    paths: dict[str, dict[str, Any]] = {}
    ids = {(r.method, r.path): _operation_id(r.method, r.handler.__name__) for t in tables for r in t.routes}
    for table in tables:
        for route in table.routes:
            paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(route, ids)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Roost", "version": RAVEN_SERVER_VERSION,
                 "description": "A certificate-secured document database that speaks RavenDB's HTTP API. "
                                "x-roost-level is each operation's authorization level (docs/security-model.md)."},
        "components": {"securitySchemes": {"clientCertificate": {"type": "mutualTLS"}}},
        "paths": dict(sorted(paths.items())),
    }


@routes.get("/openapi.json", level=Level.OPERATOR)
async def openapi_document(request: web.Request) -> web.StreamResponse:
    """This API's OpenAPI 3.1 description (Operator: it maps every route, including the administrative ones)."""
    return json_response(describe(request.app[TABLES]))
