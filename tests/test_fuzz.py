"""CI as the attacker: schemathesis generates requests for every route of the served OpenAPI description, with
hostile text (tests/hostile.py) in every string, against a live server and an admin certificate.

Asserted: no response is a 5xx, no connection closes without a response, and a refused request (4xx) changes
nothing stored (databases, documents, HiLo, certificates, settings: a digest before and after each one).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import socket
import sqlite3
import ssl
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import hostile
from conftest import RunningServer, start_server

REQUESTS_PER_RUN = 5000
# Each case schemathesis generates is sent as generated and as MUTANTS copies whose every string is replaced by a
# value from a pool of hostile text: generating a case costs ~50 ms on a loaded CI machine, a mutant almost nothing.
MUTANTS = 7
_HEADERS_WE_SET = {"content-type", "content-length", "host", "transfer-encoding"}

# schemathesis itself UTF-8-encodes query values while it generates them, so lone surrogates in parameters travel
# as stand-ins from plane 15's private use area (U+F0000 + offset) and become surrogates again in _quote().
_STAND_IN = 0xF0000 - 0xD800
_TO_STAND_IN = {c: c + _STAND_IN for c in range(0xD800, 0xE000)}
_FROM_STAND_IN = {c + _STAND_IN: c for c in range(0xD800, 0xE000)}


def _carried(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return strategy.map(lambda value: value.translate(_TO_STAND_IN))


schemathesis.openapi.format("hostile", hostile.text())
schemathesis.openapi.format("hostile-parameter", _carried(hostile.text(longest=8191)))
schemathesis.openapi.format("hostile-database", _carried(
    st.one_of(st.sampled_from(["Shop", "shop", "Empty"]), hostile.text(longest=8191))))
schemathesis.openapi.format("hostile-header", hostile.header_text())


def _hostile_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The served description with every string schema generated from hostile.text() (database names in paths
    mostly real ones, so that requests get past the first check)."""
    spec = copy.deepcopy(spec)

    def mark(schema: Any, fmt: str) -> None:
        if isinstance(schema, dict):
            if schema.get("type") == "string" and "enum" not in schema and schema.get("format") != "binary":
                schema["format"] = fmt
            for value in schema.values():
                mark(value, fmt)
        elif isinstance(schema, list):
            for value in schema:
                mark(value, fmt)

    for item in spec["paths"].values():
        for operation in item.values():
            for parameter in operation["parameters"]:
                fmt = {"path": "hostile-database" if parameter["name"] == "db" else "hostile",
                       "header": "hostile-header"}.get(parameter["in"], "hostile-parameter")
                mark(parameter["schema"], fmt)
            mark(operation.get("requestBody", {}), "hostile")
    return spec


def _quote(value: Any) -> str:
    # Lone surrogates go out as an attacker sends them: their (invalid) UTF-8 bytes, percent-encoded.
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)
    return urllib.parse.quote(text.translate(_FROM_STAND_IN).encode("utf-8", "surrogatepass"), safe="")


def _header(value: Any) -> str:
    return str(value).encode("utf-8", "surrogatepass").decode("latin-1")


_SNAPSHOT = {
    "databases": "SELECT key, name, database_id, last_etag, record FROM databases ORDER BY key",
    "documents": "SELECT db, key, body, metadata, change_vector, etag FROM documents ORDER BY db, key",
    "hilo": "SELECT db, tag, max FROM hilo ORDER BY db, tag",
    # LastUsedDate is written behind, whoever called: not something a request changes.
    "certificates": "SELECT thumbprint, json_remove(definition, '$.LastUsedDate') FROM certificates ORDER BY thumbprint",
    "two_factor": "SELECT thumbprint, state FROM two_factor ORDER BY thumbprint",
    # The audit head moves with every audited refusal, by design.
    "settings": "SELECT key, value FROM settings WHERE key NOT LIKE 'audit.head%' ORDER BY key",  # per node: .<tag>
}


class Snapshots:
    """What a refused request must not change: a digest of each table, recomputed only when SQLite's data_version
    says another connection (the server's) committed something since the last look."""

    def __init__(self, data_dir: Path) -> None:
        self._db = sqlite3.connect(f"file:{data_dir / 'roost.db'}?mode=ro", uri=True, isolation_level=None)
        self._version = -1
        self._last: dict[str, str] = {}
        self._certificates: dict[str, str] = {}
        self._previous_certificates: dict[str, str] = {}

    def certificates(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT thumbprint, definition FROM certificates").fetchall())

    def changed_certificates(self) -> str:
        now, before = self._certificates, self._previous_certificates
        changed = {t for t in set(now) | set(before) if now.get(t) != before.get(t)}
        keys = set()
        for t in changed & set(now) & set(before):
            old, new = json.loads(before[t]), json.loads(now[t])
            keys |= {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
        return f"{len(changed)} entries ({len(set(now) - set(before))} new), fields {sorted(keys)}"

    def take(self) -> dict[str, str]:
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self._version = version
            self._previous_certificates, self._certificates = self._certificates, self.certificates()
            self._last = {table: hashlib.sha256(json.dumps(self._db.execute(statement).fetchall()).encode()
                                                ).hexdigest() for table, statement in _SNAPSHOT.items()}
        return self._last

    def close(self) -> None:
        self._db.close()


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    changed_by_refusal: list[str] = field(default_factory=list)
    per_route: Counter[str] = field(default_factory=Counter)
    seconds_waiting: float = 0.0


class Attacker:
    def __init__(self, server: RunningServer, tally: Tally) -> None:
        self.server = server
        self.session = server.admin()
        self.tally = tally
        self.snapshots = Snapshots(server.data_dir)

    def send_with_mutants(self, case: Any, route: str, pool: list[str], rng: random.Random) -> None:
        parts = _parts(case)
        self.send(case.method, parts, route)
        for _ in range(MUTANTS):
            self.send(case.method, _mutated(parts, pool, rng), route)

    def send(self, method: str, parts: dict[str, Any], route: str) -> None:
        path = parts["template"]
        for name, value in parts["path"].items():
            path = path.replace("{" + name + "}", _quote(value))
        query = []
        for name, value in parts["query"].items():
            for one in value if isinstance(value, list) else [value]:
                query.append(f"{_quote(name)}={_quote(one)}")
        url = f"{self.server.url}{path}" + ("?" + "&".join(query) if query else "")
        headers = {k: _header(v) for k, v in parts["headers"].items() if k.lower() not in _HEADERS_WE_SET}
        body: bytes | None = None
        if parts["has_body"]:
            if isinstance(parts["body"], bytes | bytearray):
                body = bytes(parts["body"])
                headers["Content-Type"] = "application/octet-stream"
            else:
                body = json.dumps(parts["body"]).encode()  # ASCII, lone surrogates as \ud800 escapes
                headers["Content-Type"] = "application/json"
        before = self.snapshots.take()
        reproducer = f"{method} {url[:300]} headers={str(headers)[:200]} body={(body or b'')[:300]!r}"
        self.tally.requests += 1
        sent = time.monotonic()
        self.tally.per_route[route] += 1
        try:
            response = self.session.request(method, url, data=body, headers=headers, timeout=60)
        except (requests.exceptions.InvalidHeader, ValueError):
            # The client refuses to send such a header value itself (leading whitespace, CR/LF): nothing was sent.
            self.tally.requests -= 1
            self.tally.per_route[route] -= 1
            return
        except requests.RequestException as exc:
            self.session = self.server.admin()
            if len(url) > _REQUEST_LINE_LIMIT and _answered(self.server, method, url):
                # The server answered 400 to the over-long request line and closed while requests was still
                # writing: requests reports its own broken write, but the answer was there (read it raw).
                self.tally.statuses[400] += 1
                return
            self.tally.dropped.append(f"{reproducer} -> {type(exc).__name__}: {str(exc)[:200]}")
            return
        self.tally.statuses[response.status_code] += 1
        self.tally.seconds_waiting += time.monotonic() - sent
        if response.status_code >= 500 and not _ravendb_missing_database(response):
            self.tally.server_errors.append(f"{reproducer} -> {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400:
            after = self.snapshots.take()
            changed = sorted(table for table in after if after[table] != before[table])
            if changed == ["certificates"]:
                changed = [f"certificates: {self.snapshots.changed_certificates()}"]
            if changed:
                self.tally.changed_by_refusal.append(f"{reproducer} -> {response.status_code}, changed {changed}")


_REQUEST_LINE_LIMIT = 8190  # aiohttp's: a longer request line gets 400 and the connection closes


def _answered(server: RunningServer, method: str, url: str) -> bool:
    """Whether the server answers this request (headers only) with a status line, read from a raw TLS socket."""
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    context.load_cert_chain(str(server.admin_pem))
    target = url[len(server.url):]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        try:
            tls.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode("latin-1"))
        except OSError:
            pass  # closed while we wrote: the answer may still be waiting to be read
        try:
            return tls.recv(16).startswith(b"HTTP/1.")
        except OSError:
            return False


def _parts(case: Any) -> dict[str, Any]:
    has_body = case.body is not None and type(case.body).__name__ != "NotSet"
    return {"template": case.operation.path,
            # schemathesis hands path parameters over percent-encoded
            "path": {k: urllib.parse.unquote(str(v)) for k, v in (case.path_parameters or {}).items()},
            "query": dict(case.query or {}), "headers": dict(case.headers or {}),
            "has_body": has_body, "body": copy.deepcopy(case.body) if has_body else None}


def _mutated(parts: dict[str, Any], pool: list[str], rng: random.Random) -> dict[str, Any]:
    """A copy of ``parts`` with each string (values and object keys) replaced, with probability 1/2, by hostile text."""

    def swap(value: Any) -> Any:
        if isinstance(value, str):
            return rng.choice(pool) if rng.random() < 0.5 else value
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, dict):
            return {swap(k): swap(v) for k, v in value.items()}
        return value

    short = [p for p in pool if len(p) <= 8191]
    out = copy.deepcopy(parts)
    out["path"] = {k: rng.choice(short) if rng.random() < 0.5 else v for k, v in parts["path"].items()}
    out["query"] = {k: swap(v) for k, v in parts["query"].items()}
    out["headers"] = {k: v.encode("utf-8", "surrogatepass").decode("latin-1") for k, v in
                      ((k, rng.choice(short) if rng.random() < 0.5 else v) for k, v in parts["headers"].items())}
    if isinstance(parts["body"], dict | list):
        out["body"] = swap(parts["body"])
    return out


def hostile_pool(size: int = 600) -> list[str]:
    pool: list[str] = []

    @settings(max_examples=size, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(hostile.text(longest=65_537))
    def collect(value: str) -> None:
        pool.append(value)

    collect()
    return pool


def _ravendb_missing_database(response: requests.Response) -> bool:
    """RavenDB answers 503 with DatabaseDoesNotExistException for a database that does not exist, and its clients
    depend on it (docs/http-api.md): a refusal, not a server error."""
    try:
        return response.status_code == 503 and response.json()["Type"].endswith("DatabaseDoesNotExistException")
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("fuzz") / "data")
    admin = running.admin()
    for name in ("Shop", "Empty"):
        assert admin.put(f"{running.url}/admin/databases", params={"name": name}).status_code == 201
    commands = [{"Type": "PUT", "Id": f"orders/{i}", "Document": {"Number": i, "@metadata": {"@collection": "Orders"}}}
                for i in range(20)]
    assert admin.post(f"{running.url}/databases/Shop/bulk_docs", json={"Commands": commands}).status_code == 201
    yield running
    running.stop()


def _operations(server: RunningServer) -> list[Any]:
    spec = server.admin().get(f"{server.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(_hostile_spec(spec))
    operations = [result.ok() for result in schema.get_all_operations()]
    described = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert {(op.method.upper(), op.path) for op in operations} == described  # every route is fuzzed
    return operations


# Fixed inputs that keep the run on its own server: no lock-out by the allowlist (force), no schedule folder outside
# the data directory (an Operator may name any folder: that is a feature, not something to fuzz on a CI machine).
_FIXED: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/admin/security/allowed-ips"): {"query": {"force": "false"}},
}


def _safe_case(case: Any) -> Any:
    if case.operation.path == "/admin/backups/schedules" and isinstance(case.body, dict) and "Folder" in case.body:
        case.body["Folder"] = "fuzz-" + hashlib.sha256(repr(case.body["Folder"]).encode()).hexdigest()[:8]
    return case


def _attacker(attacker: Attacker, route: str, pool: list[str], rng: random.Random, strategy: Any,
              examples: int) -> Any:
    @st.composite
    def cases(draw: Any) -> Any:
        # schemathesis itself sometimes cannot serialize a case it generated (a lone surrogate in a header or a
        # query: UnicodeEncodeError before any request exists). That case says nothing about the server: skip it.
        try:
            return draw(strategy)
        except UnicodeEncodeError:
            reject()

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def attack(case: Any) -> None:
        attacker.send_with_mutants(_safe_case(case), route, pool, rng)

    return attack


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_generated_requests_over_every_route_get_an_answer_and_refusals_change_nothing(
        target: RunningServer) -> None:
    operations = _operations(target)
    tally = Tally()
    attacker = Attacker(target, tally)
    pool = hostile_pool()
    rng = random.Random(12)
    # Small operations run out of distinct cases early, so ask for half as many again as the average needs.
    per_operation = -(-REQUESTS_PER_RUN * 3 // (2 * (MUTANTS + 1) * 2 * len(operations)))
    started = time.monotonic()
    for operation in operations:
        route = f"{operation.method.upper()} {operation.path}"
        fixed = _FIXED.get((operation.method.upper(), operation.path), {})
        # The server certificate is regenerated on each accepted refresh: a few are enough.
        examples = 4 if operation.path == "/admin/certificates/refresh" else per_operation
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, **fixed)

            attack = _attacker(attacker, route, pool, rng, strategy, examples)

            try:
                attack()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): the positive run covered the operation.
                assert mode is GenerationMode.NEGATIVE, route
    seconds = time.monotonic() - started
    print(f"\nfuzz: {tally.requests} requests over {len(operations)} operations in {seconds:.0f} s; "
          f"statuses {dict(sorted(tally.statuses.items()))}; {tally.seconds_waiting:.0f} s waiting for answers")
    assert tally.requests >= REQUESTS_PER_RUN
    assert set(tally.per_route) == {f"{op.method.upper()} {op.path}" for op in operations}
    assert not tally.dropped, "\n".join(tally.dropped[:20])
    assert not tally.server_errors, f"{len(tally.server_errors)} 5xx:\n" + "\n".join(tally.server_errors[:30])
    assert not tally.changed_by_refusal, "\n".join(tally.changed_by_refusal[:20])


def test_hostile_text_reaches_every_string_field() -> None:
    """Every string schema of the description is generated from hostile.text(), path, query, header and body."""
    from roost.http.app import ROUTE_TABLES
    from roost.http.openapi import describe

    spec = _hostile_spec(describe(ROUTE_TABLES))
    plain: list[str] = []

    def walk(schema: Any, where: str) -> None:
        if isinstance(schema, dict):
            if schema.get("type") == "string" and "enum" not in schema and schema.get("format") != "binary" and \
                    not str(schema.get("format", "")).startswith("hostile"):
                plain.append(where)
            for key, value in schema.items():
                walk(value, f"{where}.{key}")
        elif isinstance(schema, list):
            for index, value in enumerate(schema):
                walk(value, f"{where}[{index}]")

    walk(spec["paths"], "paths")
    assert not plain, plain



@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stateful_run_follows_links_and_never_fails(target: RunningServer) -> None:
    """schemathesis' state machine: create a database, write, read, delete, back up... following the description's
    links, hostile text in every string. The same three rules: no 5xx, nothing dropped, refusals change nothing."""
    spec = target.admin().get(f"{target.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(_hostile_spec(spec))
    tally = Tally()
    attacker = Attacker(target, tally)
    session = target.admin()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: Any, **kwargs: Any) -> Any:
            _safe_case(case)
            before = attacker.snapshots.take()
            tally.requests += 1
            tally.per_route[f"{case.method.upper()} {case.operation.path}"] += 1
            try:
                response = case.call(base_url=target.url, session=session, timeout=60, verify=str(target.ca_pem),
                                     cert=str(target.admin_pem))
            except (requests.RequestException, OSError, ValueError) as exc:
                # ValueError: the client refused to encode or send it (surrogates, CR/LF in a header): never sent.
                sent_url = str(getattr(getattr(exc, "request", None), "url", "") or "")
                if isinstance(exc, requests.exceptions.InvalidHeader) or not isinstance(
                        exc, OSError | requests.RequestException):
                    tally.requests -= 1  # never sent: the client refused it
                elif len(sent_url) > _REQUEST_LINE_LIMIT and _answered(target, case.method.upper(), sent_url):
                    tally.statuses[400] += 1  # answered 400 while requests was still writing (see Attacker.send)
                else:
                    tally.dropped.append(f"{case.method} {case.formatted_path} -> {type(exc).__name__}: {exc}"[:400])
                reject()  # recorded; the run goes on with other sequences (the assertions below report it)
            tally.statuses[response.status_code] += 1
            if response.status_code >= 500 and not (
                    response.status_code == 503 and "DatabaseDoesNotExist" in response.text):
                tally.server_errors.append(f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:200]}"
                                           f" -> {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400:
                after = attacker.snapshots.take()
                if changed := sorted(t for t in after if after[t] != before[t]):
                    tally.changed_by_refusal.append(f"{case.method} {case.formatted_path} -> {changed}")
            return response

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            pass  # the three rules are checked in call(); schemathesis' own conformance checks are not the point

    started = time.monotonic()
    Workflow.run(settings=settings(max_examples=25, stateful_step_count=8, deadline=None, database=None,
                                   suppress_health_check=list(HealthCheck), phases=[Phase.generate]))
    print(f"\nstateful: {tally.requests} requests in {time.monotonic() - started:.0f} s over {len(tally.per_route)} "
          f"operations; statuses {dict(sorted(tally.statuses.items()))}")
    assert tally.requests >= 100
    assert not tally.dropped, "\n".join(tally.dropped[:20])
    assert not tally.server_errors, "\n".join(tally.server_errors[:20])
    assert not tally.changed_by_refusal, "\n".join(tally.changed_by_refusal[:20])
