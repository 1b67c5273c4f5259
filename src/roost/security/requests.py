"""Certificate API request bodies: parsed and validated before anything is looked up or written.

Each parser refuses with a 400 naming the field and the fix (RavenDB's messages where it has them), so the
lifecycle (``security/certificates.py``) only ever sees well-formed values.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Any

from roost import clock
from roost.errors import BadRequestError
from roost.names import database_name
from roost.pki import csr
from roost.pki.authority import KEY_TYPES, KeyType
from roost.pki.inspect import CertificateInfo, decode_certificate_field, load_certificates
from roost.security import twofactor
from roost.security.registry import parse_clearance
from roost.types import Access, Clearance

# The name becomes the certificate's Common Name, which X.509 limits to 64 characters (RFC 5280, ub-common-name).
MAX_NAME = 64
# Keys RavenDB's clients may send that Roost accepts and ignores (SSO is out of scope).
_IGNORED_KEYS = {"Usage", "SsoIdentifiers", "SsoServerPublicKeyPinningHashes", "AllowAnySsoServer",
                 "CollectionPrimaryKey", "CollectionSecondaryKeys", "PublicKeyPinningHash", "LastUsedDate",
                 "NotBefore", "HasTwoFactor", "TwoFactorAuthenticationValidityPeriod", "SameKeyCertificates"}


def check_fields(body: Any, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestError(f"The {what} must be a JSON object.")
    unknown = sorted(k for k in body if k not in allowed and k not in _IGNORED_KEYS)
    if unknown:
        raise BadRequestError(
            f"Unknown field(s) in the {what}: {', '.join(unknown)}. Allowed: {', '.join(sorted(allowed))}."
        )
    return body


def optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"{key} must be a string.")
    return value


def validate_name(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRequestError("Name is a required field in the certificate definition")
    if not isinstance(value, str):
        raise BadRequestError("Name must be a string.")
    name = value.strip()
    if len(name) > MAX_NAME:
        raise BadRequestError(f"Name is longer than {MAX_NAME} characters ({len(name)}): use at most {MAX_NAME}.")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise BadRequestError("Name contains control characters.")
    if "/" in name or "\\" in name or name in (".", ".."):
        # The name becomes the file names inside the .zip: no path separators, no traversal.
        raise BadRequestError(f"Name '{name}' contains a path separator ('/' or '\\\\').")
    return name


def validate_permissions(value: Any) -> dict[str, Access]:
    if value is None:
        raise BadRequestError("Permissions is a required field in the certificate definition")
    if not isinstance(value, dict):
        raise BadRequestError("Permissions must be a JSON object of database name -> access level.")
    permissions: dict[str, Access] = {}
    folded: dict[str, str] = {}
    for db, access in value.items():
        if not isinstance(db, str) or not db.strip():
            raise BadRequestError("Error in permissions in the certificate definition, database name is empty")
        try:
            database_name(db)
        except BadRequestError as exc:
            raise BadRequestError(f"Error in permissions in the certificate definition: {exc.message}") from None
        # Lookups fold case (as RavenDB's): two spellings of one database would leave one access level unused.
        if (earlier := folded.setdefault(db.casefold(), db)) != db:
            raise BadRequestError(
                f"Error in permissions in the certificate definition: '{earlier}' and '{db}' name the same database "
                "(names are case-insensitive). Give each database once."
            )
        try:
            permissions[db] = Access(access)
        except ValueError:
            raise BadRequestError(
                f"Error in permissions in the certificate definition, invalid access {access} for database {db}. "
                "Use Admin, ReadWrite or Read."
            ) from None
    return permissions


def validate_not_after(value: Any, months: Any, now: dt.datetime) -> dt.datetime | None:
    if value not in (None, ""):
        if not isinstance(value, str):
            raise BadRequestError("NotAfter must be a date string such as 2030-01-01T00:00:00.0000000Z.")
        try:
            not_after = clock.parse_wire_date(value)
        except ValueError:
            raise BadRequestError(f"NotAfter '{value}' is not a date such as 2030-01-01T00:00:00Z.") from None
        if not_after.date() <= now.date():
            raise BadRequestError("The certificate expiration date must be in the future.")
        return not_after
    if months not in (None, ""):
        if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 1200:
            raise BadRequestError("ExpirationMonths must be a whole number of months between 1 and 1200.")
        return now + dt.timedelta(days=round(months * 30.4375))
    return None


def validate_two_factor_key(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadRequestError("TwoFactorAuthenticationKey must be a base32 string.")
    return twofactor.decode_key(value, "TwoFactorAuthenticationKey")


@dataclass(frozen=True)
class GenerateRequest:
    name: str
    clearance: Clearance
    permissions: dict[str, Access]
    password: str | None
    not_after: dt.datetime | None
    key_type: KeyType
    two_factor_key: str | None

    @classmethod
    def parse(cls, body: Any, now: dt.datetime) -> GenerateRequest:
        body = check_fields(body, {"Name", "SecurityClearance", "Password", "Permissions", "NotAfter", "KeyType",
                                   "ExpirationMonths", "TwoFactorAuthenticationKey"}, "certificate definition")
        password = optional_string(body, "Password")
        key_type = body.get("KeyType") or "EC-P256"
        if key_type not in KEY_TYPES:
            raise BadRequestError(f"Unknown KeyType '{key_type}'. Use one of: {', '.join(KEY_TYPES)}.")
        return cls(
            name=validate_name(body.get("Name")),
            clearance=parse_clearance(body.get("SecurityClearance")),
            permissions=validate_permissions(body.get("Permissions")),
            password=password or None,
            not_after=validate_not_after(body.get("NotAfter"), body.get("ExpirationMonths"), now),
            key_type=key_type,
            two_factor_key=validate_two_factor_key(body.get("TwoFactorAuthenticationKey")),
        )


@dataclass(frozen=True)
class RotateRequest:
    """POST /admin/certificates/rotate: which certificate, and the new package's passphrase and key type; the rest
    is the rotated certificate's own."""

    thumbprint: str
    password: str | None
    key_type: KeyType

    @classmethod
    def parse(cls, body: Any) -> RotateRequest:
        body = check_fields(body, {"Thumbprint", "Password", "KeyType"}, "rotation request")
        thumbprint = body.get("Thumbprint")
        if not isinstance(thumbprint, str) or not thumbprint.strip():
            raise BadRequestError("Thumbprint is required: the certificate to rotate.")
        key_type = body.get("KeyType") or "EC-P256"
        if key_type not in KEY_TYPES:
            raise BadRequestError(f"Unknown KeyType '{key_type}'. Use one of: {', '.join(KEY_TYPES)}.")
        return cls(thumbprint.strip().upper(), optional_string(body, "Password") or None, key_type)


@dataclass(frozen=True)
class UploadRequest:
    """PUT /admin/certificates. The certificate itself is read by ``certificates()``, after the rules allowed
    the clearance (a refusal never depends on the certificate's content)."""

    name: str
    clearance: Clearance
    permissions: dict[str, Access]
    two_factor_key: str | None
    _certificate: Any
    _password: str | None

    @classmethod
    def parse(cls, body: Any, now: dt.datetime) -> UploadRequest:
        body = check_fields(body, {"Name", "Certificate", "Password", "SecurityClearance", "Permissions",
                                   "NotAfter", "TwoFactorAuthenticationKey"}, "certificate definition")
        name = validate_name(body.get("Name"))
        clearance = parse_clearance(body.get("SecurityClearance"))
        permissions = validate_permissions(body.get("Permissions"))
        validate_not_after(body.get("NotAfter"), None, now)
        two_factor_key = validate_two_factor_key(body.get("TwoFactorAuthenticationKey"))
        return cls(name, clearance, permissions, two_factor_key, body.get("Certificate"), body.get("Password"))

    def certificates(self) -> list[CertificateInfo]:
        raw = self._certificate
        if not raw or not isinstance(raw, str):
            raise BadRequestError("Certificate is a mandatory property when saving an existing certificate")
        password = optional_string({"Password": self._password}, "Password")
        return load_certificates(decode_certificate_field(raw), password or None)


@dataclass(frozen=True)
class EditRequest:
    """POST /admin/certificates/edit."""

    thumbprint: str
    name: str
    clearance: Clearance
    permissions: dict[str, Access]
    disabled: bool
    two_factor_key: str | None

    @classmethod
    def parse(cls, body: Any) -> EditRequest:
        body = check_fields(body, {"Thumbprint", "Name", "SecurityClearance", "Permissions", "Disabled", "NotAfter",
                                   "TwoFactorAuthenticationKey", "Certificate", "Password"}, "certificate definition")
        thumbprint = body.get("Thumbprint")
        if not isinstance(thumbprint, str) or not thumbprint.strip():
            raise BadRequestError("Thumbprint is a required field in the certificate definition")
        name = validate_name(body.get("Name"))
        clearance = parse_clearance(body.get("SecurityClearance"))
        permissions = validate_permissions(body.get("Permissions"))
        disabled = body.get("Disabled", False)
        if not isinstance(disabled, bool):
            raise BadRequestError("Disabled must be true or false.")
        two_factor_key = validate_two_factor_key(body.get("TwoFactorAuthenticationKey"))
        return cls(thumbprint.strip(), name, clearance, permissions, disabled, two_factor_key)


@dataclass(frozen=True)
class ReplaceRequest:
    """POST /admin/certificates/replace-cluster-cert: the new server .pfx (with its key)."""

    pfx: bytes
    password: str | None

    @classmethod
    def parse(cls, body: Any) -> ReplaceRequest:
        body = check_fields(body, {"Certificate", "Password", "Name"}, "request")
        raw = body.get("Certificate")
        if not raw or not isinstance(raw, str):
            raise BadRequestError("Certificate is a mandatory property: the base64 of the new server .pfx.")
        password = optional_string(body, "Password")
        try:
            pfx = base64.b64decode(raw.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestError(
                "Unable to load the provided certificate: the Certificate property is not base64."
            ) from None
        return cls(pfx, password or None)


@dataclass(frozen=True)
class SignRequest:
    """POST /admin/certificates/csr: generate's settings, with a PKCS#10 request instead of a key made here."""

    name: str
    clearance: Clearance
    permissions: dict[str, Access]
    not_after: dt.datetime | None
    two_factor_key: str | None
    certificate_request: csr.Request

    @classmethod
    def parse(cls, body: Any, now: dt.datetime) -> SignRequest:
        body = check_fields(body, {"Name", "SecurityClearance", "Permissions", "NotAfter", "ExpirationMonths",
                                   "TwoFactorAuthenticationKey", "CertificateRequest"}, "certificate definition")
        return cls(
            name=validate_name(body.get("Name")),
            clearance=parse_clearance(body.get("SecurityClearance")),
            permissions=validate_permissions(body.get("Permissions")),
            not_after=validate_not_after(body.get("NotAfter"), body.get("ExpirationMonths"), now),
            two_factor_key=validate_two_factor_key(body.get("TwoFactorAuthenticationKey")),
            certificate_request=csr.load_request(body.get("CertificateRequest")),
        )


@dataclass(frozen=True)
class RenewRequest:
    """POST /certificates/renew: only the request for the successor's key. Name, clearance, permissions, 2FA and
    lifetime are the caller's own: a certificate cannot raise itself by renewing."""

    certificate_request: csr.Request

    @classmethod
    def parse(cls, body: Any) -> RenewRequest:
        body = check_fields(body, {"CertificateRequest"}, "renewal request")
        return cls(csr.load_request(body.get("CertificateRequest")))
