"""The certificate rules table (security/rules.py), walked for every caller x verb x target, against an
expectation written independently here; and the table in docs/certificates.md is the one the code enforces."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.errors import ForbiddenOperationError
from roost.security import rules
from roost.security.identity import UNSECURED, WELL_KNOWN_NAME, AuthStatus, Identity
from roost.security.rules import Actor, Target, Verb
from roost.types import Clearance

DOCS = Path(__file__).resolve().parent.parent / "docs" / "certificates.md"

CALLERS = {
    Actor.CLUSTER_ADMIN: Identity(AuthStatus.CLUSTER_ADMIN, clearance=Clearance.CLUSTER_ADMIN),
    Actor.CLUSTER_NODE: Identity(AuthStatus.CLUSTER_ADMIN, clearance=Clearance.CLUSTER_NODE,
                                 synthetic_name="Server Certificate"),
    Actor.WELL_KNOWN_ADMIN: Identity(AuthStatus.CLUSTER_ADMIN, clearance=Clearance.CLUSTER_ADMIN,
                                     synthetic_name=WELL_KNOWN_NAME),
    Actor.OPERATOR: Identity(AuthStatus.OPERATOR, clearance=Clearance.OPERATOR),
    Actor.USER: Identity(AuthStatus.ALLOWED, clearance=Clearance.VALID_USER),
    Actor.NOBODY: Identity(AuthStatus.NO_CERTIFICATE),
}


def expected(actor: Actor, verb: Verb, target: Target) -> bool:
    """Reference 2.1 with Roost's closures (issue 12), stated the other way round from the table."""
    administrators = actor in (Actor.CLUSTER_ADMIN, Actor.CLUSTER_NODE, Actor.WELL_KNOWN_ADMIN)
    if verb is Verb.RENEW:  # a registered User, Operator or ClusterAdmin renews itself; nodes use refresh
        own = {Actor.CLUSTER_ADMIN: Target.CLUSTER_ADMIN, Actor.OPERATOR: Target.OPERATOR, Actor.USER: Target.USER}
        return own.get(actor) is target
    if target in (Target.WELL_KNOWN_ADMIN, Target.SERVER_CERTIFICATE):
        return False  # settings and the server's own certificate: never through the API
    if target is Target.OLD_SERVER_CERTIFICATE:
        return administrators and verb in (Verb.DELETE, Verb.PURGE)
    if target in (Target.CLUSTER_ADMIN, Target.CLUSTER_NODE):
        return administrators
    return administrators or actor is Actor.OPERATOR


@pytest.mark.parametrize("actor", list(Actor))
def test_the_table_for_every_actor_verb_and_target(actor: Actor) -> None:
    caller = CALLERS[actor]
    assert rules.actor_of(caller) is actor
    for verb in Verb:
        for target in Target:
            want = expected(actor, verb, target)
            assert rules.allowed(actor, verb, target) is want, (actor, verb, target)
            clearance = Clearance.CLUSTER_ADMIN if target is Target.CLUSTER_ADMIN else Clearance.OPERATOR
            if want:
                rules.ensure(caller, verb, target, name="n", thumbprint="T", clearance=clearance)
            else:
                with pytest.raises(ForbiddenOperationError) as refused:
                    rules.ensure(caller, verb, target, name="n", thumbprint="T", clearance=clearance)
                assert refused.value.http_status == 403 and refused.value.message


def test_an_unsecured_server_is_cluster_admin_and_an_unauthenticated_status_is_nobody() -> None:
    assert rules.actor_of(UNSECURED) is Actor.CLUSTER_ADMIN
    disabled = Identity(AuthStatus.DISABLED, clearance=Clearance.CLUSTER_ADMIN)
    assert rules.actor_of(disabled) is Actor.NOBODY


def test_refusals_name_the_reason() -> None:
    operator = CALLERS[Actor.OPERATOR]
    with pytest.raises(ForbiddenOperationError) as lower:
        rules.ensure(operator, Verb.DELETE, Target.CLUSTER_ADMIN, name="boss", clearance=Clearance.CLUSTER_ADMIN)
    assert lower.value.message == ("Cannot delete the certificate 'boss' with 'ClusterAdmin' security clearance "
                                   "because the current client certificate being used has a lower clearance: Operator")
    with pytest.raises(ForbiddenOperationError) as setting:
        rules.ensure(CALLERS[Actor.CLUSTER_ADMIN], Verb.UPLOAD, Target.WELL_KNOWN_ADMIN, name="x", thumbprint="AB")
    assert setting.value.message.startswith("Cannot register the well-known admin certificate AB")
    with pytest.raises(ForbiddenOperationError) as server:
        rules.ensure(CALLERS[Actor.CLUSTER_ADMIN], Verb.EDIT, Target.OLD_SERVER_CERTIFICATE, name="x", thumbprint="CD")
    assert server.value.message == ("Cannot edit the server certificate CD through this API. Use replace-cluster-cert "
                                    "or refresh.")


def test_renewal_refusals_name_the_way_that_works() -> None:
    admin = CALLERS[Actor.WELL_KNOWN_ADMIN]
    with pytest.raises(ForbiddenOperationError) as setting:
        rules.ensure(admin, Verb.RENEW, Target.WELL_KNOWN_ADMIN, name="w", thumbprint="AB")
    assert "Security.WellKnownCertificates.Admin" in setting.value.message
    with pytest.raises(ForbiddenOperationError) as node:
        rules.ensure(CALLERS[Actor.CLUSTER_NODE], Verb.RENEW, Target.SERVER_CERTIFICATE, name="s", thumbprint="CD")
    assert "roost server-cert renew" in node.value.message
    with pytest.raises(ForbiddenOperationError) as other:
        rules.ensure(CALLERS[Actor.CLUSTER_ADMIN], Verb.RENEW, Target.USER, name="u")
    assert other.value.message == "Cannot renew the certificate 'u': a certificate renews only itself."


def test_the_documented_table_is_the_enforced_one() -> None:
    assert rules.markdown_table() in DOCS.read_text()
