"""authz is a pure function: a table of level x status x access, each acceptance beside its refusal."""

from __future__ import annotations

import datetime as dt

import pytest

from roost.errors import AuthorizationError, TwoFactorRequiredError
from roost.security import authz
from roost.security.identity import AuthStatus, Identity
from roost.security.registry import CertificateDefinition
from roost.types import Access, Clearance, Level, Thumbprint

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def user(access: Access | None) -> Identity:
    definition = CertificateDefinition(
        name="app", thumbprint=Thumbprint("AB" * 20), clearance=Clearance.VALID_USER,
        permissions={"DB1": access} if access else {}, not_before=NOW, not_after=NOW + dt.timedelta(days=1),
        pinning_hash="x", certificate_der=b"", subject="CN=app",
    )
    return Identity(AuthStatus.ALLOWED, definition.thumbprint, definition.display_name, Clearance.VALID_USER, definition)


ADMIN = Identity(AuthStatus.CLUSTER_ADMIN, Thumbprint("A" * 40), "CN=admin", Clearance.CLUSTER_ADMIN)
OPERATOR = Identity(AuthStatus.OPERATOR, Thumbprint("B" * 40), "CN=op", Clearance.OPERATOR)

# (level, identity, database, allowed?)
ALLOWED = True
REFUSED = False
TABLE = [
    (Level.CLUSTER_ADMIN, ADMIN, None, ALLOWED),
    (Level.CLUSTER_ADMIN, OPERATOR, None, REFUSED),
    (Level.CLUSTER_ADMIN, user(Access.ADMIN), None, REFUSED),
    (Level.OPERATOR, ADMIN, None, ALLOWED),
    (Level.OPERATOR, OPERATOR, None, ALLOWED),
    (Level.OPERATOR, user(Access.ADMIN), None, REFUSED),
    (Level.VALID_USER, user(None), None, ALLOWED),
    (Level.VALID_USER, Identity(AuthStatus.UNKNOWN, display_name="CN=x"), None, REFUSED),
    (Level.DATABASE_ADMIN, user(Access.ADMIN), "db1", ALLOWED),
    (Level.DATABASE_ADMIN, user(Access.READ_WRITE), "db1", REFUSED),
    (Level.DATABASE_ADMIN, OPERATOR, "db1", ALLOWED),
    (Level.DATABASE_WRITE, user(Access.READ_WRITE), "db1", ALLOWED),
    (Level.DATABASE_WRITE, user(Access.ADMIN), "db1", ALLOWED),
    (Level.DATABASE_WRITE, user(Access.READ), "db1", REFUSED),
    (Level.DATABASE_READ, user(Access.READ), "db1", ALLOWED),
    (Level.DATABASE_READ, user(Access.READ), "Db1", ALLOWED),  # database names are case-insensitive
    (Level.DATABASE_READ, user(Access.READ), "db2", REFUSED),
    (Level.DATABASE_READ, user(None), "db1", REFUSED),
    (Level.DATABASE_READ, ADMIN, "anything", ALLOWED),
    (Level.UNAUTHENTICATED, Identity(AuthStatus.NO_CERTIFICATE), None, ALLOWED),
    (Level.VALID_USER, Identity(AuthStatus.NO_CERTIFICATE), None, REFUSED),
    (Level.VALID_USER, Identity(AuthStatus.EXPIRED, display_name="CN=x", not_after=NOW), None, REFUSED),
    (Level.VALID_USER, Identity(AuthStatus.NOT_YET_VALID, display_name="CN=x", not_before=NOW), None, REFUSED),
    (Level.VALID_USER, Identity(AuthStatus.DISABLED, display_name="CN=x"), None, REFUSED),
    (Level.VALID_USER, Identity(AuthStatus.TWO_FACTOR_REQUIRED, display_name="CN=x"), None, REFUSED),
    (Level.DATABASE_READ, Identity(AuthStatus.NONE), "db1", ALLOWED),  # unsecured: everyone is ClusterAdmin
]


@pytest.mark.parametrize(("level", "identity", "database", "expected"), TABLE)
def test_table(level: Level, identity: Identity, database: str | None, expected: bool) -> None:
    assert authz.allowed(level, identity, database) is expected
    if expected:
        authz.ensure_allowed(level, identity, database)
    else:
        with pytest.raises(AuthorizationError):
            authz.ensure_allowed(level, identity, database)


def test_messages_follow_ravendb() -> None:
    def message(level: Level, identity: Identity, db: str | None = None) -> str:
        error = authz.refusal(level, identity, db)
        assert error is not None
        return error.message

    assert message(Level.CLUSTER_ADMIN, OPERATOR).startswith("Insufficient security clearance to access the server")
    assert message(Level.CLUSTER_ADMIN, OPERATOR).endswith(
        "ClusterAdmin access is required but not given to this certificate")
    assert message(Level.DATABASE_READ, user(None), "db2").startswith("Could not authorize access to db2")
    assert "writing needs ReadWrite or Admin" in message(Level.DATABASE_WRITE, user(Access.READ), "db1")
    assert "none was provided" in message(Level.VALID_USER, Identity(AuthStatus.NO_CERTIFICATE))
    assert "has expired on Monday, November 23, 2026" in message(
        Level.VALID_USER, Identity(AuthStatus.EXPIRED, display_name="CN=x", not_after=NOW))
    assert "is unknown to the server" in message(Level.VALID_USER, Identity(AuthStatus.UNKNOWN, display_name="CN=x"))
    assert "is disabled" in message(Level.VALID_USER, Identity(AuthStatus.DISABLED, display_name="CN=x"))


def test_two_factor_is_428() -> None:
    error = authz.refusal(Level.VALID_USER, Identity(AuthStatus.TWO_FACTOR_REQUIRED, display_name="CN=x"), None)
    assert isinstance(error, TwoFactorRequiredError) and error.http_status == 428
    assert "requires two factor authorization" in error.message


def test_browser_hint_only_for_browsers() -> None:
    identity = Identity(AuthStatus.NO_CERTIFICATE)
    browser = authz.refusal(Level.VALID_USER, identity, None, browser=True)
    api = authz.refusal(Level.VALID_USER, identity, None, browser=False)
    assert browser is not None and api is not None
    assert "private browsing" in browser.message and "private browsing" not in api.message
