"""Route level x identity x database -> allowed, or refused with RavenDB's reason (RequestRouter.CanAccessRoute).

A pure function: no I/O, no clock. ``allowed`` answers, ``ensure_allowed`` raises the error to render.
"""

from __future__ import annotations

from roost.errors import AuthorizationError, TwoFactorRequiredError
from roost.security.identity import AuthStatus, Identity
from roost.types import Access, Level

BROWSER_HINT = (
    " Your certificate store may be cached by the browser. Create a new private browsing tab, which will not "
    "cache any certificates. (Ctrl+Shift+N in Chrome, Ctrl+Shift+P in Firefox)"
)

_SUFFIX = {
    Level.CLUSTER_ADMIN: " ClusterAdmin access is required but not given to this certificate",
    Level.OPERATOR: " Operator/ClusterAdmin access is required but not given to this certificate",
    Level.DATABASE_ADMIN: " DatabaseAdmin access is required but not given to this certificate",
}

_WRITE_ACCESS = (Access.READ_WRITE, Access.ADMIN)


def refusal(
    level: Level, identity: Identity, database: str | None, *, browser: bool = False
) -> AuthorizationError | None:
    """Why ``identity`` may not call a route of ``level`` on ``database``; None when it may."""
    status = identity.status
    if level is Level.UNAUTHENTICATED or status is AuthStatus.NONE:
        return None
    name = identity.display_name
    hint = BROWSER_HINT if browser else ""
    if status is AuthStatus.NO_CERTIFICATE:
        return AuthorizationError(
            "This server requires client certificate for authentication, but none was provided by the client. "
            "Did you forget to install the certificate?" + hint, reason="NoCertificate"
        )
    if status is AuthStatus.EXPIRED:
        assert identity.not_after is not None
        return AuthorizationError(
            f"The supplied client certificate '{name}' has expired on {identity.not_after:%A, %B %d, %Y}. "
            "Please contact your system administrator in order to obtain a new one.", reason="Expired"
        )
    if status is AuthStatus.NOT_YET_VALID:
        assert identity.not_before is not None
        return AuthorizationError(
            f"The supplied client certificate '{name}' cannot be used before {identity.not_before:%A, %B %d, %Y}",
            reason="NotYetValid",
        )
    if status is AuthStatus.UNKNOWN:
        return AuthorizationError(
            f"The supplied client certificate '{name}' is unknown to the server. In order to register your "
            "certificate please contact your system administrator." + hint, reason="Unknown"
        )
    if status is AuthStatus.UNFAMILIAR_ISSUER:
        return AuthorizationError(
            f"The supplied client certificate '{name}' is unknown to the server but has a known Public Key Pinning "
            "Hash. Will not use it to authenticate because the issuer is unknown. To trust it, add its issuer's "
            "pinning hash to Security.WellKnownIssuerHashes.Admin, or register the certificate.",
            reason="UnfamiliarIssuer",
        )
    if status is AuthStatus.DISABLED:
        return AuthorizationError(
            f"The supplied client certificate '{name}' is disabled on this server. Ask an administrator to enable "
            "it again (Certificates > Edit) or to issue you a new one.", reason="Disabled"
        )
    if status is AuthStatus.TWO_FACTOR_REQUIRED:
        return TwoFactorRequiredError(
            f"The supplied client certificate '{name}' requires two factor authorization to be valid. "
            "Please POST the relevant TOTP value to /authentication/2fa", reason="TwoFactorRequired"
        )
    if status is AuthStatus.TWO_FACTOR_INVALID_LIMIT:
        return AuthorizationError("Access to the server was denied.", reason="TwoFactorInvalidLimit")
    if status is AuthStatus.CLUSTER_ADMIN or level is Level.VALID_USER:
        return None
    if status is AuthStatus.OPERATOR:
        if level is Level.CLUSTER_ADMIN:
            return AuthorizationError(
                f"Insufficient security clearance to access {_target(database)} using provided client certificate "
                f"'{name}'." + _SUFFIX[level], reason="InsufficientClearance"
            )
        return None
    # A User (status Allowed): no server-level administration, and only the databases it holds.
    if level in (Level.OPERATOR, Level.CLUSTER_ADMIN):
        return AuthorizationError(
            f"Could not authorize access to {_target(database)} using provided client certificate '{name}'."
            + _SUFFIX[level], reason="InsufficientClearance"
        )
    if database is None:
        return None
    access = identity.access_to(database)
    if access is None:
        return AuthorizationError(
            f"Could not authorize access to {database} using provided client certificate '{name}'."
            + _SUFFIX.get(level, ""), reason="NoAccessToDatabase"
        )
    if level is Level.DATABASE_ADMIN and access is not Access.ADMIN:
        return AuthorizationError(
            f"Could not authorize access to {database} using provided client certificate '{name}'."
            + _SUFFIX[level], reason="InsufficientClearance"
        )
    if level is Level.DATABASE_WRITE and access not in _WRITE_ACCESS:
        return AuthorizationError(
            f"Could not authorize access to {database} using provided client certificate '{name}'. "
            f"It has {access.value} access to '{database}'; writing needs ReadWrite or Admin.", reason="ReadOnlyAccess"
        )
    return None


def _target(database: str | None) -> str:
    return database if database else "the server"


def allowed(level: Level, identity: Identity, database: str | None = None) -> bool:
    return refusal(level, identity, database) is None


def ensure_allowed(level: Level, identity: Identity, database: str | None = None, *, browser: bool = False) -> None:
    error = refusal(level, identity, database, browser=browser)
    if error is not None:
        raise error
