"""Architecture contracts that a reading of the import graph and the syntax tree can hold (ARCHITECTURE.md).

Each check walks the source of ``src/roost`` with ``ast``; each has a twin that feeds it a small piece of code
breaking the rule, so that a check which can no longer fail is noticed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src" / "roost"

# Reading the wall clock: the names a module could call to learn the current time.
WALL_CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns"}
WALL_CLOCK_OWNERS = {"datetime", "date", "dt", "time"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(), str(path))


def wall_clock_reads(tree: ast.Module) -> list[int]:
    """Lines that call datetime.now(), datetime.utcnow(), date.today() or time.time() (time.monotonic is fine:
    it measures durations, not the time of day)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in WALL_CLOCK_CALLS:
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            if owner_name in WALL_CLOCK_OWNERS:
                found.append(node.lineno)
    return found


def test_only_clock_reads_the_wall_clock() -> None:
    offenders = [f"{name}:{line}" for name, tree in modules() if name != "roost.clock"
                 for line in wall_clock_reads(tree)]
    assert not offenders, f"read the time through roost.clock.now(): {offenders}"


def test_the_clock_check_can_fail() -> None:
    for code in ("import datetime as dt\ndt.datetime.now(dt.UTC)", "from datetime import datetime\ndatetime.utcnow()",
                 "import time\ntime.time()", "import datetime\ndatetime.date.today()"):
        assert wall_clock_reads(ast.parse(code)) == [2], code
    assert wall_clock_reads(ast.parse("import time\ntime.monotonic()")) == []


def test_the_wall_clock_source_is_where_the_check_looks() -> None:
    assert (SRC / "clock.py").is_file() and Path(__file__).name == "test_contracts.py"
    assert wall_clock_reads(ast.parse((SRC / "clock.py").read_text()))  # the one reader is seen by the check


# Import contracts (ARCHITECTURE.md, "Package layout"): arrows run down and never back.
# (package, packages it must never import); an import inside TYPE_CHECKING counts too.
IMPORT_RULES = [
    ("roost.http", ("roost.server",)),
    ("roost.security", ("roost.server", "roost.http", "roost.backups", "roost.documents", "roost.services")),
    ("roost.backups", ("roost.server", "roost.http", "roost.services")),
    ("roost.documents", ("roost.server", "roost.http", "roost.security", "roost.backups", "roost.services")),
    ("roost.storage", ("roost.server", "roost.http", "roost.security", "roost.documents", "roost.backups")),
    ("roost.pki", ("roost.server", "roost.http", "roost.security", "roost.documents", "roost.backups")),
    ("roost.services", ("roost.server", "roost.http")),
]


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def import_violations(name: str, tree: ast.Module) -> list[str]:
    found = []
    for package, forbidden in IMPORT_RULES:
        if name == package or name.startswith(package + "."):
            found += [f"{name} imports {target}" for target in sorted(imported(tree))
                      if any(target == f or target.startswith(f + ".") for f in forbidden)]
    return found


def test_packages_import_only_downwards() -> None:
    violations = [v for name, tree in modules() for v in import_violations(name, tree)]
    assert not violations, "\n".join(violations)


def test_the_import_check_can_fail() -> None:
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from roost.server import Server\n")
    assert import_violations("roost.http.routes.x", guarded) == ["roost.http.routes.x imports roost.server",
                                                                  "roost.http.routes.x imports roost.server.Server"]
    assert import_violations("roost.documents.store", ast.parse("import roost.security.registry")) != []
    assert import_violations("roost.server", guarded) == []  # the composition root may import anything


# One header policy: the security and cache headers are named in roost/http/headers.py only.
POLICY_HEADERS = {"content-security-policy", "cache-control", "x-content-type-options", "referrer-policy",
                  "strict-transport-security"}


def header_literals(tree: ast.Module) -> list[int]:
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in POLICY_HEADERS]


def test_only_the_header_policy_names_security_headers() -> None:
    offenders = [f"{name}:{line}" for name, tree in modules() if name != "roost.http.headers"
                 for line in header_literals(tree)]
    assert not offenders, f"set security and cache headers through roost.http.headers: {offenders}"


def test_the_header_check_can_fail() -> None:
    assert header_literals(ast.parse('h = {"Cache-Control": "no-store"}')) == [1]
    assert header_literals(ast.parse('h["X-Content-Type-Options"] = "nosniff"')) == [1]
    assert header_literals(ast.parse('"""mentions Cache-Control in prose"""')) == []
    from roost.http import headers

    assert {h.lower() for h in headers.OWNED} == POLICY_HEADERS


def studio_clearance_labels(source: str) -> dict[str, str]:
    import re

    block = re.search(r"export const CLEARANCES = \{(.*?)\};", source, re.S)
    assert block is not None, "format.js has no CLEARANCES table"
    return dict(re.findall(r'(\w+):\s*"([^"]*)"', block.group(1)))


def test_one_clearance_label_table_for_server_cli_and_studio() -> None:
    from roost.types import CLEARANCE_LABELS, clearance_label

    expected = {clearance.value: label for clearance, label in CLEARANCE_LABELS.items()}
    assert studio_clearance_labels((SRC / "studio" / "format.js").read_text()) == expected
    assert all(clearance_label(value) == label for value, label in expected.items())
    assert clearance_label("SomethingElse") == "SomethingElse"


def test_the_label_check_can_fail() -> None:
    drifted = 'export const CLEARANCES = {\n  ClusterAdmin: "Cluster admin",\n  ValidUser: "User",\n};'
    from roost.types import CLEARANCE_LABELS

    parsed = studio_clearance_labels(drifted)
    assert parsed == {"ClusterAdmin": "Cluster admin", "ValidUser": "User"}
    assert parsed != {clearance.value: label for clearance, label in CLEARANCE_LABELS.items()}


def test_every_audit_event_is_recorded_by_some_service() -> None:
    """The Event enum is the list of what Roost records: no member is dead, none is recorded only by a route."""
    from roost.security.audit import Event

    used: dict[str, set[str]] = {}
    for name, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Event":
                used.setdefault(node.attr, set()).add(name)
    members = {member.name for member in Event}
    assert members - set(used) == set(), "events never recorded"
    by_routes_only = {m for m in members if used.get(m) and all(n.startswith("roost.http") for n in used[m])}
    assert by_routes_only == set(), by_routes_only
    named_by_http = sorted(name for name, events in used.items() if any(n.startswith("roost.http") for n in events))
    assert named_by_http == [], f"the HTTP layer names audit events (services record them): {named_by_http}"


_AUDIT_WRITES = frozenset({"record", "record_refusal"})


def audit_writes(tree: ast.Module) -> list[int]:
    """Lines that call ``<something>.audit.record(...)``/``.record_refusal(...)`` or ``audit.record(...)``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _AUDIT_WRITES:
            owner = node.func.value
            if (isinstance(owner, ast.Attribute) and owner.attr == "audit") or \
                    (isinstance(owner, ast.Name) and "audit" in owner.id):
                found.append(node.lineno)
    return found


def test_routes_never_write_the_audit_log() -> None:
    """Audit events are recorded by the services (a non-HTTP caller is audited too); a route only calls them."""
    offenders = {name: lines for name, tree in modules() if name.startswith("roost.http.routes")
                 if (lines := audit_writes(tree))}
    assert offenders == {}


def test_the_route_audit_check_can_fail() -> None:
    route = ast.parse("async def login(request):\n    request.app[SERVICES].audit.record(Event.X)\n"
                      "    audit = request.app[SERVICES].audit\n    audit.record_refusal('k', None, 'r', None)\n")
    assert audit_writes(route) == [2, 4]
