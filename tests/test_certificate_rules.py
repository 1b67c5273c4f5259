"""Who may touch which certificate (issue 12): well-known admins and server certificates are out of the API's reach,
collections stay consistent, deletions beat implicit trust, 2FA counts per key. One real server with a well-known
admin; every refusal has its accepting twin."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
import requests

from certtools import Issued, collection_pfx, issue, outside_ca, roost_ca
from conftest import RunningServer, start_server
from roost.security import rules
from roost.security.rules import Actor, Target, Verb


@pytest.fixture(scope="module")
def well_known(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    return issue(outside_ca("Rules Well-known CA"), "rules-well-known")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, well_known: Issued) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("rules")
    path = base / "well-known.crt"
    path.write_bytes(well_known.pem)
    running = start_server(base / "data", f"--Security.WellKnownCertificates.Admin={path}")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def operator(server: RunningServer) -> requests.Session:
    return server.session(server.generate("rules-operator", "Operator").pem_path)


def _put(session: requests.Session, server: RunningServer, **body: object) -> requests.Response:
    body.setdefault("SecurityClearance", "ValidUser")
    body.setdefault("Permissions", {})
    return session.put(f"{server.url}/admin/certificates", json=body)


def _edit(session: requests.Session, server: RunningServer, **body: object) -> requests.Response:
    body.setdefault("SecurityClearance", "ValidUser")
    body.setdefault("Permissions", {})
    return session.post(f"{server.url}/admin/certificates/edit", json=body)


def _delete(session: requests.Session, server: RunningServer, thumbprint: str) -> requests.Response:
    return session.delete(f"{server.url}/admin/certificates", params={"thumbprint": thumbprint})


def _entry(server: RunningServer, thumbprint: str) -> dict | None:  # type: ignore[type-arg]
    response = server.admin().get(f"{server.url}/admin/certificates", params={"secondary": "true"})
    assert response.status_code == 200
    return next((e for e in response.json()["Results"] if e["Thumbprint"] == thumbprint), None)


def _whoami(server: RunningServer, pem: Path) -> requests.Response:
    return server.session(pem).get(f"{server.url}/certificates/whoami")


def _pfx(members: list[Issued]) -> str:
    return base64.b64encode(collection_pfx(members, None)).decode()


# Well-known admins and server certificates ---------------------------------------------------------------------


def test_nobody_registers_or_shadows_a_well_known_admin(server: RunningServer, operator: requests.Session,
                                                        well_known: Issued, tmp_path: Path) -> None:
    pem = well_known.write_pem(tmp_path / "wk.pem")
    secret = pyotp.random_base32()
    ca = roost_ca(server.certs_dir)
    for session in (operator, server.admin()):
        for extra in ({}, {"TwoFactorAuthenticationKey": secret}):
            shadow = _put(session, server, Name="demoted", Certificate=well_known.b64, **extra)
            assert shadow.status_code == 403, shadow.text
            assert shadow.json()["Message"] == (
                f"Cannot register the well-known admin certificate {well_known.thumbprint}: it is configured by the "
                "server's Security.WellKnownCertificates.Admin setting, not through the API.")
        # Hidden in a collection (as a secondary member) it is refused too, and the primary is not registered.
        other = issue(ca, "with-well-known")
        hidden = _put(session, server, Name="hidden", Certificate=_pfx([other, well_known]))
        assert hidden.status_code == 403
        assert _entry(server, other.thumbprint) is None
    assert _entry(server, well_known.thumbprint) is None
    me = _whoami(server, pem)
    assert me.status_code == 200
    assert me.json()["Name"] == "Well Known Admin Certificate" and me.json()["SecurityClearance"] == "ClusterAdmin"
    # The accepting twin: an ordinary certificate is registered by the same call.
    assert _put(operator, server, Name="ordinary", Certificate=issue(ca, "ordinary").b64).status_code == 201


def test_nobody_edits_or_shadows_a_server_certificate_current_or_old(fresh_server: RunningServer) -> None:
    server = fresh_server
    old = server.admin().get(f"{server.url}/admin/certificates").json()["LoadedServerCert"]
    renewed = server.admin().post(f"{server.url}/admin/certificates/refresh")
    assert renewed.status_code == 200, renewed.text
    current = renewed.json()["Thumbprint"]
    old_der = base64.b64decode(_entry(server, old)["Certificate"])  # type: ignore[index]
    for thumbprint in (old, current):
        demoted = _edit(server.admin(), server, Thumbprint=thumbprint, Name="demoted")
        assert demoted.status_code == 403, demoted.text
        assert demoted.json()["Message"] == (f"Cannot edit the server certificate {thumbprint} through this API. Use "
                                             "replace-cluster-cert or refresh.")
    shadow = _put(server.admin(), server, Name="demoted", Certificate=base64.b64encode(old_der).decode())
    assert shadow.status_code == 403, shadow.text
    assert shadow.json()["Message"] == (f"Cannot register the server certificate {old} through this API: it is "
                                        "this server's own (current or earlier) certificate.")
    entry = _entry(server, old)
    assert entry is not None and entry["SecurityClearance"] == "ClusterNode"
    assert entry["Name"] == "Old Server Certificate - can delete"
    # The current one is never deleted; the old one can go (deleting it ends its trust, see test_server_certificate).
    assert _delete(server.admin(), server, current).status_code == 403
    assert _delete(server.admin(), server, old).status_code == 204


# Collections ---------------------------------------------------------------------------------------------------


def test_registering_a_member_again_detaches_it_from_its_collection(server: RunningServer,
                                                                   operator: requests.Session, tmp_path: Path) -> None:
    ca = roost_ca(server.certs_dir)
    u1, x = issue(ca, "u1"), issue(ca, "x")
    assert _put(operator, server, Name="pair", Certificate=_pfx([u1, x])).status_code == 201
    assert _put(server.admin(), server, Name="x-admin", Certificate=x.b64,
                SecurityClearance="ClusterAdmin").status_code == 201
    primary = _entry(server, u1.thumbprint)
    assert primary is not None and primary["CollectionSecondaryKeys"] == []
    alone = _entry(server, x.thumbprint)
    assert alone is not None and alone["CollectionPrimaryKey"] == "" and alone["SecurityClearance"] == "ClusterAdmin"
    # The Operator's edit and delete of U1 no longer reach X.
    assert _edit(operator, server, Thumbprint=u1.thumbprint, Name="pair-edited").status_code == 201
    assert _delete(operator, server, u1.thumbprint).status_code == 204
    after = _entry(server, x.thumbprint)
    assert after is not None and after["SecurityClearance"] == "ClusterAdmin" and after["Name"] == "x-admin"
    me = _whoami(server, x.write_pem(tmp_path / "x.pem"))
    assert me.status_code == 200 and me.json()["SecurityClearance"] == "ClusterAdmin"


def test_a_collection_whose_primary_is_registered_again_stays_deletable(server: RunningServer) -> None:
    ca = roost_ca(server.certs_dir)
    p, s1, s2 = issue(ca, "p"), issue(ca, "s1"), issue(ca, "s2")
    assert _put(server.admin(), server, Name="orphans", Certificate=_pfx([p, s1, s2])).status_code == 201
    assert _put(server.admin(), server, Name="p-alone", Certificate=p.b64).status_code == 201
    # The rest of the collection keeps together under its first remaining member.
    rest = _entry(server, s1.thumbprint)
    assert rest is not None and rest["CollectionPrimaryKey"] == "" and rest["CollectionSecondaryKeys"] == [
        s2.thumbprint]
    assert _entry(server, s2.thumbprint)["CollectionPrimaryKey"] == s1.thumbprint  # type: ignore[index]
    assert _delete(server.admin(), server, p.thumbprint).status_code == 204
    assert _delete(server.admin(), server, s1.thumbprint).status_code == 204
    assert _entry(server, s1.thumbprint) is None and _entry(server, s2.thumbprint) is None


def test_edit_and_delete_check_the_clearance_of_every_same_key_sibling(server: RunningServer,
                                                                       operator: requests.Session) -> None:
    ca = roost_ca(server.certs_dir)
    user = issue(ca, "key-user")
    admin = issue(ca, "key-admin", key=user.key)  # another certificate with the same key
    assert _put(server.admin(), server, Name="key-user", Certificate=user.b64).status_code == 201
    assert _put(server.admin(), server, Name="key-admin", Certificate=admin.b64,
                SecurityClearance="ClusterAdmin").status_code == 201
    for refused in (_edit(operator, server, Thumbprint=user.thumbprint, Name="key-user", Disabled=True),
                    _delete(operator, server, user.thumbprint)):
        assert refused.status_code == 403, refused.text
        assert refused.json()["Message"].startswith(
            f"Cannot change the certificate 'key-user' together with its same-key certificate 'key-admin' "
            f"({admin.thumbprint}): it has 'ClusterAdmin' security clearance")
    assert _entry(server, user.thumbprint)["Disabled"] is False  # type: ignore[index]
    assert _entry(server, admin.thumbprint)["SecurityClearance"] == "ClusterAdmin"  # type: ignore[index]
    # The accepting twin: a ClusterAdmin disables both.
    assert _edit(server.admin(), server, Thumbprint=user.thumbprint, Name="key-user", Disabled=True).status_code == 201
    assert _entry(server, admin.thumbprint)["Disabled"] is True  # type: ignore[index]
    assert _delete(server.admin(), server, admin.thumbprint).status_code == 204
    assert _entry(server, user.thumbprint) is None


# Implicit trust ------------------------------------------------------------------------------------------------


def test_a_deleted_certificate_is_never_registered_again_implicitly(server: RunningServer, tmp_path: Path) -> None:
    ca = roost_ca(server.certs_dir)
    original = issue(ca, "sibling-app")
    assert _put(server.admin(), server, Name="sibling-app", Certificate=original.b64,
                Permissions={"appdb": "Read"}).status_code == 201
    renewed = issue(ca, "sibling-app", key=original.key, days=60)
    renewed_pem = renewed.write_pem(tmp_path / "renewed.pem")
    assert _whoami(server, renewed_pem).status_code == 200  # registered implicitly
    listed = _entry(server, original.thumbprint)
    assert listed is not None and listed["SameKeyCertificates"] == [renewed.thumbprint]
    # Disabling one disables its same-key sibling; enabling it enables both.
    assert _edit(server.admin(), server, Thumbprint=original.thumbprint, Name="sibling-app",
                 Permissions={"appdb": "Read"}, Disabled=True).status_code == 201
    assert _entry(server, renewed.thumbprint)["Disabled"] is True  # type: ignore[index]
    assert _whoami(server, renewed_pem).status_code == 403
    assert _edit(server.admin(), server, Thumbprint=renewed.thumbprint, Name="sibling-app",
                 Permissions={"appdb": "Read"}, Disabled=False).status_code == 201
    assert _entry(server, original.thumbprint)["Disabled"] is False  # type: ignore[index]
    # Deleting one deletes its sibling, and neither comes back by implicit trust.
    assert _delete(server.admin(), server, renewed.thumbprint).status_code == 204
    assert _entry(server, original.thumbprint) is None
    third = issue(ca, "sibling-app", key=original.key, days=90)
    for pem in (renewed_pem, original.write_pem(tmp_path / "original.pem"), third.write_pem(tmp_path / "3.pem")):
        refused = _whoami(server, pem)
        assert refused.status_code == 403 and "is unknown to the server" in refused.json()["Message"]
    # An explicit upload may register a deleted certificate again; its siblings stay deleted.
    assert _put(server.admin(), server, Name="sibling-app", Certificate=renewed.b64).status_code == 201
    assert _whoami(server, renewed_pem).status_code == 200
    assert _whoami(server, original.write_pem(tmp_path / "original-2.pem")).status_code == 403


def test_a_deletion_survives_a_restart(fresh_server: RunningServer, tmp_path: Path) -> None:
    server = fresh_server
    ca = roost_ca(server.certs_dir)
    original = issue(ca, "restart-app")
    assert _put(server.admin(), server, Name="restart-app", Certificate=original.b64).status_code == 201
    renewed = issue(ca, "restart-app", key=original.key, days=60)
    renewed_pem = renewed.write_pem(tmp_path / "renewed.pem")
    assert _whoami(server, renewed_pem).status_code == 200
    assert _delete(server.admin(), server, renewed.thumbprint).status_code == 204
    # Re-register only the original explicitly: the renewed one stays deleted, across a restart too.
    assert _put(server.admin(), server, Name="restart-app", Certificate=original.b64).status_code == 201
    server.stop()
    again = start_server(server.data_dir)
    try:
        assert _whoami(again, renewed_pem).status_code == 403
        assert _whoami(again, original.write_pem(tmp_path / "original.pem")).status_code == 200
    finally:
        again.stop()


# 2FA per key ---------------------------------------------------------------------------------------------------


def _login(server: RunningServer, pem: Path, token: str) -> requests.Response:
    return server.session(pem).post(f"{server.url}/authentication/2fa", params={"hasLimits": "false"},
                                    json={"Token": token})


def test_two_factor_replay_and_lockout_count_per_key_not_per_member(server: RunningServer, tmp_path: Path) -> None:
    ca = roost_ca(server.certs_dir)
    secret = pyotp.random_base32()
    members = [issue(ca, f"2fa-member-{i}") for i in range(3)]
    assert _put(server.admin(), server, Name="2fa-collection", Certificate=_pfx(members),
                TwoFactorAuthenticationKey=secret).status_code == 201
    pems = [m.write_pem(tmp_path / f"m{i}.pem") for i, m in enumerate(members)]
    token = pyotp.TOTP(secret).at(time.time())
    assert _login(server, pems[0], token).status_code == 202
    replay = _login(server, pems[1], token)
    assert replay.status_code == 406 and "already used" in replay.json()["Error"]
    # Five wrong codes spread over the members lock the key for all of them.
    totp = pyotp.TOTP(secret)
    window = {totp.at(time.time() + o) for o in (-60, -30, 0, 30, 60)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in window)
    for attempt in range(5):
        assert _login(server, pems[attempt % 2], wrong).status_code == 406
    locked = _login(server, pems[2], totp.at(time.time() + 30))
    assert locked.status_code == 429, locked.text
    # The accepting twin: another key is not affected.
    other_secret = pyotp.random_base32()
    other = issue(ca, "2fa-other")
    assert _put(server.admin(), server, Name="2fa-other", Certificate=other.b64,
                TwoFactorAuthenticationKey=other_secret).status_code == 201
    assert _login(server, other.write_pem(tmp_path / "o.pem"), pyotp.TOTP(other_secret).now()).status_code == 202


# Input ---------------------------------------------------------------------------------------------------------


def test_permissions_with_two_case_variants_of_one_database_are_refused(server: RunningServer) -> None:
    body = {"Name": "cases", "SecurityClearance": "ValidUser", "Permissions": {"Shop": "Read", "shop": "Admin"}}
    refused = server.admin().post(f"{server.url}/admin/certificates", json=body)
    assert refused.status_code == 400
    assert refused.json()["Message"] == (
        "Error in permissions in the certificate definition: 'Shop' and 'shop' name the same database (names are "
        "case-insensitive). Give each database once.")
    accepted = server.admin().post(f"{server.url}/admin/certificates", json={**body, "Permissions": {"Shop": "Read"}})
    assert accepted.status_code == 200


def test_a_name_over_64_characters_is_a_400_naming_the_limit(server: RunningServer) -> None:
    body = {"SecurityClearance": "ValidUser", "Permissions": {}}
    refused = server.admin().post(f"{server.url}/admin/certificates", json={**body, "Name": "n" * 65})
    assert refused.status_code == 400
    assert refused.json()["Message"] == "Name is longer than 64 characters (65): use at most 64."
    upload = _put(server.admin(), server, Name="u" * 65, Certificate=issue(roost_ca(server.certs_dir), "u").b64)
    assert upload.status_code == 400 and "longer than 64 characters" in upload.json()["Message"]
    assert server.admin().post(f"{server.url}/admin/certificates", json={**body, "Name": "n" * 64}).status_code == 200


# The table, sampled against the live server ---------------------------------------------------------------------

_CLEARANCES = {Target.CLUSTER_ADMIN: "ClusterAdmin", Target.CLUSTER_NODE: "ClusterNode",
               Target.OPERATOR: "Operator", Target.USER: "ValidUser"}


@pytest.mark.parametrize("actor", [Actor.CLUSTER_ADMIN, Actor.OPERATOR, Actor.USER])
def test_the_live_server_enforces_the_rules_table(server: RunningServer, operator: requests.Session,
                                                   actor: Actor) -> None:
    """Every verb on every registration clearance: accepted exactly where rules.allowed says, and a refusal
    changes nothing."""
    caller = {Actor.CLUSTER_ADMIN: server.admin(), Actor.OPERATOR: operator,
              Actor.USER: server.session(server.generate(f"table-user-{actor}", "ValidUser").pem_path)}[actor]
    ca = roost_ca(server.certs_dir)
    seen = 0
    for verb in (Verb.CREATE, Verb.UPLOAD, Verb.EDIT, Verb.DISABLE, Verb.DELETE):
        for target, clearance in _CLEARANCES.items():
            allowed = rules.allowed(actor, verb, target)
            name = f"table-{actor.name}-{verb}-{target.name}".lower()
            subject = issue(ca, name)
            if verb in (Verb.EDIT, Verb.DISABLE, Verb.DELETE):  # the target exists first
                assert _put(server.admin(), server, Name=name, Certificate=subject.b64,
                            SecurityClearance=clearance).status_code == 201
            if verb is Verb.CREATE:
                response = caller.post(f"{server.url}/admin/certificates", json={
                    "Name": name, "SecurityClearance": clearance, "Permissions": {}})
                ok = 200
            elif verb is Verb.UPLOAD:
                response, ok = _put(caller, server, Name=name, Certificate=subject.b64, SecurityClearance=clearance), 201
            elif verb is Verb.EDIT:
                response, ok = _edit(caller, server, Thumbprint=subject.thumbprint, Name=f"{name}-x",
                                     SecurityClearance=clearance), 201
            elif verb is Verb.DISABLE:
                response, ok = _edit(caller, server, Thumbprint=subject.thumbprint, Name=name,
                                     SecurityClearance=clearance, Disabled=True), 201
            else:
                response, ok = _delete(caller, server, subject.thumbprint), 204
            assert response.status_code == (ok if allowed else 403), (actor, verb, target, response.text)
            entry = _entry(server, subject.thumbprint)
            if verb is Verb.UPLOAD:
                assert (entry is not None) is allowed
            elif verb is Verb.EDIT:
                assert entry is not None and entry["Name"] == (f"{name}-x" if allowed else name)
            elif verb is Verb.DISABLE:
                assert entry is not None and entry["Disabled"] is allowed
            elif verb is Verb.DELETE:
                assert (entry is None) is allowed
            seen += 1
    assert seen == 20


# The service from its parts: legacy data ------------------------------------------------------------------------


def test_a_stored_secondary_whose_primary_is_gone_can_be_deleted_and_purged(tmp_path: Path) -> None:
    """Data written before collections were kept consistent: the secondary stands alone (no Server needed)."""
    asyncio.run(_orphans(tmp_path))


async def _orphans(tmp_path: Path) -> None:
    import datetime as dt

    from roost.pki.inspect import describe_der
    from roost.security.audit import AuditLog
    from roost.security.certificates import CertificateService
    from roost.security.identity import AuthStatus, Identifier, Identity
    from roost.security.implicit import DeletedThumbprints, ImplicitTrust
    from roost.security.registry import CertificateDefinition, Registry
    from roost.security.server_certificate import ServerCertificates
    from roost.settings import load_settings
    from roost.storage.sqlite import SqliteStorage
    from roost.types import Clearance

    settings, _ = load_settings({"data_dir": tmp_path}, environ={})
    storage = await SqliteStorage.open(tmp_path / "roost.db")
    registry = Registry(storage)
    identifier = Identifier(registry)
    audit_log = AuditLog(tmp_path / "audit.log")
    lock = asyncio.Lock()
    deleted = DeletedThumbprints(storage)
    service = CertificateService(
        registry, identifier, None, None, audit_log, lambda: None,  # type: ignore[arg-type, return-value]
        server_certificates=ServerCertificates(settings, registry, identifier, audit_log, lock),
        implicit=ImplicitTrust(registry, identifier, deleted, audit_log, lock, anchors=None,
                               well_known_issuer_hashes=()),
        deleted=deleted, lock=lock, url=lambda: "", on_deleted=lambda thumbprints: asyncio.sleep(0))
    ca = outside_ca("Legacy CA")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    valid, expired = issue(ca, "orphan-valid"), issue(ca, "orphan-expired", days=-10, not_before=long_ago)
    gone = "AB" * 20
    await registry.put([CertificateDefinition.of(describe_der(i.der), i.certificate.subject.rfc4514_string(),
                                                 Clearance.VALID_USER, {}, two_factor_key=None, source="uploaded",
                                                 primary=gone) for i in (valid, expired)])
    await registry.load()  # as after a restart: the orphans are listed, so an administrator sees them
    assert {d.thumbprint for d in registry.by_name.items()} == {valid.thumbprint, expired.thumbprint}
    listed = service.list(start=0, page_size=10, thumbprint=None, name=None, metadata_only=True, secondary=True)
    assert sorted(e["Thumbprint"] for e in listed["Results"]) == sorted([valid.thumbprint, expired.thumbprint])
    admin = Identity(AuthStatus.CLUSTER_ADMIN, clearance=Clearance.CLUSTER_ADMIN)
    assert [d.thumbprint for d in await service.purge(admin)] == [expired.thumbprint]
    await service.delete(admin, valid.thumbprint)
    assert registry.get(valid.thumbprint) is None and registry.get(expired.thumbprint) is None
    assert await deleted.all() == {valid.thumbprint, expired.thumbprint}
    assert registry.by_name.items() == []
    await storage.close()
