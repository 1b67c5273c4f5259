"""The authorization matrix, generated from the route table: every route (HEAD too) x every kind of caller, against
a real server over real TLS. What each caller may reach is written here, from the levels' definitions in
docs/security-model.md, independently of roost.security.authz: the test is a second reading, not a copy.

Requests are harmless: bodies and parameters that the handler refuses once authorization has let them through (or
that act on throwaway objects), so the same server serves the whole matrix.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from certtools import issue, outside_ca, roost_ca
from conftest import RunningServer, start_server
from roost.http.app import ROUTE_TABLES
from roost.types import Level

DATABASE = "Matrix"

# Who may call a route of each level. A caller outside its set must get the refusal in REFUSAL.
VALID_CALLERS = {"user-read", "user-readwrite", "user-admin", "user-other-db", "operator", "cluster-admin",
                 "well-known-admin"}
MAY_CALL: dict[Level, set[str]] = {
    Level.VALID_USER: VALID_CALLERS,
    Level.DATABASE_READ: {"user-read", "user-readwrite", "user-admin", "operator", "cluster-admin",
                          "well-known-admin"},
    Level.DATABASE_WRITE: {"user-readwrite", "user-admin", "operator", "cluster-admin", "well-known-admin"},
    Level.DATABASE_ADMIN: {"user-admin", "operator", "cluster-admin", "well-known-admin"},
    Level.OPERATOR: {"operator", "cluster-admin", "well-known-admin"},
    Level.CLUSTER_ADMIN: {"cluster-admin", "well-known-admin"},
}
# Routes of one level whose answer names a database: the caller must also reach that database, or it could learn
# whether the database exists (issue 12: /topology?name= answers a User without access as it answers a missing
# database). Expected as database reads.
NAMES_A_DATABASE = {("GET", "/topology"), ("HEAD", "/topology")}
CALLERS = ["no-certificate", "unknown", "deleted", "expired", "not-yet-valid", "disabled", "two-factor-pending",
           *sorted(VALID_CALLERS)]
# RavenDB's answers: 403 InvalidAuth, except a certificate whose 2FA login is missing: 428.
REFUSAL = {caller: 428 if caller == "two-factor-pending" else 403 for caller in CALLERS}

# Harmless inputs per route: refused by the handler after authorization, or aimed at nothing that exists.
_QUERY: dict[tuple[str, str], dict[str, str]] = {
    ("DELETE", "/admin/certificates"): {"thumbprint": "00" * 20},
    ("GET", "/admin/databases"): {"name": "NoSuchDatabase"},
    ("GET", "/databases/{db}/docs"): {"id": "matrix/none"},
    ("DELETE", "/databases/{db}/docs"): {"id": "matrix/none"},
    ("GET", "/topology"): {"name": DATABASE},
}
_BODY_ROUTES_WITH_EMPTY_OBJECT = {"POST", "PUT"}


@dataclass
class Caller:
    name: str
    session: requests.Session


def _pem(path: Path, issued: object) -> Path:
    return issued.write_pem(path)  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, dict[str, Caller]]]:
    tmp = tmp_path_factory.mktemp("matrix")
    well_known = issue(outside_ca("Matrix well-known CA"), "matrix-well-known")
    (tmp / "well-known.crt").write_bytes(well_known.pem)
    server = start_server(tmp / "data", f"--Security.WellKnownCertificates.Admin={tmp / 'well-known.crt'}")
    try:
        admin = server.admin()
        for name in (DATABASE, "Other"):
            assert admin.put(f"{server.url}/admin/databases", params={"name": name}).status_code == 201
        sessions: dict[str, requests.Session] = {
            "no-certificate": server.session(None),
            "cluster-admin": admin,
            "well-known-admin": server.session(_pem(tmp / "wk.pem", well_known)),
        }
        for name, clearance, permissions in (
                ("user-read", "ValidUser", {DATABASE: "Read"}), ("user-readwrite", "ValidUser", {DATABASE: "ReadWrite"}),
                ("user-admin", "ValidUser", {DATABASE: "Admin"}), ("user-other-db", "ValidUser", {"Other": "Admin"}),
                ("operator", "Operator", {})):
            sessions[name] = server.session(server.generate(name, clearance, permissions, directory=tmp).pem_path)
        authority = roost_ca(server.certs_dir)
        now = dt.datetime.now(dt.UTC)
        sessions["unknown"] = server.session(_pem(tmp / "unknown.pem", issue(authority, "matrix-unknown")))
        deleted = server.generate("matrix-deleted", "Operator", directory=tmp)
        assert admin.delete(f"{server.url}/admin/certificates", params={"thumbprint": deleted.thumbprint}
                            ).status_code == 204
        sessions["deleted"] = server.session(deleted.pem_path)
        for name, not_before, days in (("expired", now - dt.timedelta(days=30), -29),
                                       ("not-yet-valid", now + dt.timedelta(days=3), 30)):
            issued = issue(authority, f"matrix-{name}", days=days, not_before=not_before)
            uploaded = admin.put(f"{server.url}/admin/certificates", json={
                "Name": f"matrix-{name}", "SecurityClearance": "Operator", "Permissions": {},
                "Certificate": base64.b64encode(issued.certificate.public_bytes(serialization.Encoding.DER)).decode()})
            assert uploaded.status_code == 201, uploaded.text
            sessions[name] = server.session(_pem(tmp / f"{name}.pem", issued))
        disabled = server.generate("matrix-disabled", "Operator", directory=tmp)
        edited = admin.post(f"{server.url}/admin/certificates/edit", json={
            "Thumbprint": disabled.thumbprint, "Name": "matrix-disabled", "SecurityClearance": "Operator",
            "Permissions": {}, "Disabled": True})
        assert edited.status_code in (200, 201, 204), edited.text
        sessions["disabled"] = server.session(disabled.pem_path)
        pending = server.generate("matrix-2fa", "Operator", directory=tmp,
                                  TwoFactorAuthenticationKey="JBSWY3DPEHPK3PXPJBSWY3DP")
        sessions["two-factor-pending"] = server.session(pending.pem_path)
        assert set(sessions) == set(CALLERS)
        yield server, {name: Caller(name, session) for name, session in sessions.items()}
    finally:
        server.stop()


def _routes() -> list[tuple[str, str, Level]]:
    routes = []
    for table in ROUTE_TABLES:
        for route in table.routes:
            routes.append((route.method, route.path, route.level))
            if route.method == "GET":
                routes.append(("HEAD", route.path, route.level))
    # Purging removes expired certificates: last, so that the expired caller stays what it is until then.
    return sorted(routes, key=lambda r: r[1] == "/admin/certificates/purge")


def _request(server: RunningServer, caller: Caller, method: str, path: str) -> requests.Response:
    url = server.url + path.replace("{db}", DATABASE).replace("{path:.*}", "index.html")
    lookup = ("GET" if method == "HEAD" else method, path)
    kwargs: dict[str, object] = {"params": _QUERY.get(lookup, {}), "timeout": 60, "allow_redirects": False}
    if method in _BODY_ROUTES_WITH_EMPTY_OBJECT:
        kwargs["json"] = {}
    return caller.session.request(method, url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.timeout(600)
def test_every_route_for_every_caller(matrix_server: tuple[RunningServer, dict[str, Caller]]) -> None:
    server, callers = matrix_server
    routes = _routes()
    assert len(routes) > 50
    escalations: list[str] = []
    wrong_refusals: list[str] = []
    wrongly_refused: list[str] = []
    outcomes: Counter[str] = Counter()
    for method, path, level in routes:
        if (method, path) in NAMES_A_DATABASE:
            assert level is Level.VALID_USER, (method, path, level)
            level = Level.DATABASE_READ
        for name in CALLERS:
            response = _request(server, callers[name], method, path)
            where = f"{method} {path} ({level.value}) as {name}: {response.status_code}"
            assert response.status_code < 500, f"{where} {response.text[:200]}"
            authz_refusal = response.status_code in (403, 428) and (
                method == "HEAD" or response.json().get("Type") == "InvalidAuth")
            if level is Level.UNAUTHENTICATED:
                # Open routes: authorization lets everyone through; the handler may still refuse a certificate it
                # cannot work with (POST /authentication/2fa refuses an expired or disabled one, as RavenDB does).
                outcomes["open"] += 1
            elif name in MAY_CALL[level]:
                outcomes["allowed"] += 1
                if authz_refusal:
                    wrongly_refused.append(where)
            else:
                outcomes["refused"] += 1
                if 200 <= response.status_code < 300 or not authz_refusal:
                    escalations.append(f"{where} {response.text[:120]}")
                elif response.status_code != REFUSAL[name]:
                    wrong_refusals.append(f"{where}, expected {REFUSAL[name]}")
    total = len(routes) * len(CALLERS)
    print(f"\nauthorization matrix: {len(routes)} routes (HEAD included) x {len(CALLERS)} callers = {total} requests; "
          f"{outcomes['refused']} must be refused, {outcomes['allowed']} must pass authorization, "
          f"{outcomes['open']} to open routes")
    assert not escalations, f"{len(escalations)} escalations:\n" + "\n".join(escalations)
    assert not wrong_refusals, "\n".join(wrong_refusals)
    assert not wrongly_refused, "\n".join(wrongly_refused)
