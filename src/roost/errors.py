"""One error root. Each error carries its HTTP status, RavenDB's error ``Type`` and a message that says the fix.

Errors are rendered in exactly one place (``roost.http.errors``). Messages never contain key material,
passphrases or TOTP keys.
"""

from __future__ import annotations

from collections.abc import Mapping


class RoostError(Exception):
    http_status = 500
    error_type = "Raven.Server.RoostError"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class BadRequestError(RoostError):
    """The request is malformed or names something invalid. Nothing was changed."""

    http_status = 400
    error_type = "System.ArgumentException"


class PayloadTooLargeError(RoostError):
    http_status = 413
    error_type = "System.ArgumentException"


class RequestTimeoutError(RoostError):
    """The request (its head or its body) did not arrive in time; the connection is closed after the answer."""

    http_status = 408
    error_type = "System.TimeoutException"


class MisdirectedRequestError(RoostError):
    """The Host header names a server this one is not (DNS rebinding, in unsecured mode)."""

    http_status = 421
    error_type = "Raven.Server.Web.MisdirectedRequest"


class NotFoundError(RoostError):
    http_status = 404
    error_type = "Raven.Client.Exceptions.NotFoundException"


class RouteNotFoundError(NotFoundError):
    error_type = "Raven.Client.Exceptions.Routing.RouteNotFoundException"


class DocumentDoesNotExistError(NotFoundError):
    error_type = "Raven.Client.Exceptions.Documents.DocumentDoesNotExistException"


class ConflictError(RoostError):
    http_status = 409
    error_type = "Raven.Client.Exceptions.ConcurrencyException"


class ConcurrencyError(ConflictError):
    """A change vector did not match: someone else changed the document first."""


class DatabaseDoesNotExistError(RoostError):
    """RavenDB answers 503 with a ``Database-Missing`` header; its clients raise DatabaseDoesNotExistException."""

    http_status = 503
    error_type = "Raven.Client.Exceptions.Database.DatabaseDoesNotExistException"

    def __init__(self, database: str) -> None:
        super().__init__(
            f"Database '{database}' does not exist. Create it first (PUT /admin/databases?name={database}).",
            headers={"Database-Missing": database},
        )
        self.database = database


class ServiceUnavailableError(RoostError):
    """This node cannot answer safely right now (e.g. it lost the cluster's certificate notifications)."""

    http_status = 503


class AuthorizationError(RoostError):
    """Authentication or authorization refused. Rendered as RavenDB's ``{"Type": "InvalidAuth", ...}`` plus
    Roost's ``Reason`` (one of ``REFUSAL_REASONS``), which tools and the Studio dispatch on instead of the words."""

    http_status = 403
    error_type = "InvalidAuth"

    def __init__(self, message: str, *, reason: str = "Refused", headers: Mapping[str, str] | None = None) -> None:
        assert reason in REFUSAL_REASONS, reason
        super().__init__(message, headers=headers)
        self.reason = reason


# Why a request was refused, machine-readable: who the caller is not (the first group) or what it may not do.
REFUSAL_REASONS = frozenset({
    "NoCertificate", "Expired", "NotYetValid", "Unknown", "UnfamiliarIssuer", "Disabled", "TwoFactorRequired",
    "TwoFactorInvalidLimit", "AddressNotAllowed",
    "InsufficientClearance", "NoAccessToDatabase", "ReadOnlyAccess", "Refused",
})


class CrossOriginRequestError(RoostError):
    """A browser request that another site's page started (CSRF), or a CORS preflight from an origin not allowed."""

    http_status = 403
    error_type = "Raven.Server.Web.CrossOriginRequestRefused"


class TwoFactorRequiredError(AuthorizationError):
    http_status = 428


class TooManyRequestsError(RoostError):
    http_status = 429
    error_type = "Raven.Server.TooManyRequests"


class NotAcceptableError(RoostError):
    http_status = 406
    error_type = "InvalidAuth"


class TwoFactorCodeError(NotAcceptableError):
    """A 2FA code refused: ``outcome`` is "wrong" (counted towards the lockout; ``tries_left`` before it) or
    "replay" (the right code, used already: not counted). Both are in the answer (TriesLeft) and in /metrics."""

    def __init__(self, message: str, *, outcome: str, tries_left: int | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.tries_left = tries_left


class TwoFactorLockedError(TooManyRequestsError):
    """Too many wrong 2FA codes in a row: refused until ``Retry-After`` seconds have passed."""

    outcome = "locked"


class ForbiddenOperationError(RoostError):
    """A handler-level refusal (RavenDB throws InvalidOperationException for these clearance rules)."""

    http_status = 403
    error_type = "System.InvalidOperationException"


class ConfigurationError(RoostError):
    """A setting is wrong; the server refuses to start. The CLI prints the message and exits with code 2."""

    http_status = 500
    error_type = "Raven.Server.Config.ConfigurationException"


class BulkInsertProtocolError(RoostError):
    """The stream is not RavenDB's bulk insert format; what came before the bad command is stored, nothing after."""

    http_status = 400
    error_type = "Raven.Client.Exceptions.Documents.BulkInsert.BulkInsertProtocolViolationException"


class BulkInsertAbortedError(RoostError):
    """The operation was killed (``POST /operations/kill``) while it ran."""

    http_status = 400
    error_type = "Raven.Client.Exceptions.Documents.BulkInsert.BulkInsertAbortedException"
