"""What a database name and a document id may be. Checked before anything reaches storage."""

from __future__ import annotations

import re
import unicodedata

from roost.errors import BadRequestError
from roost.types import DatabaseName, DocumentId

MAX_DATABASE_NAME = 128
MAX_DOCUMENT_ID = 512

# RavenDB's ResourceNameValidator: letters, digits, '_', '-' and '.'; no path separators of any kind.
_DATABASE_NAME = re.compile(r"^[^\W][\w.\-]*$")


# In ASCII the only such characters are the C0 controls and DEL (Cf, Zl and Zp are all beyond ASCII): one regex
# search instead of a category lookup per character, on every request's database name and document id.
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _control_characters(value: str) -> bool:
    if value.isascii():
        return _ASCII_CONTROL.search(value) is not None
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def database_name(value: object, *, field: str = "Database name") -> DatabaseName:
    if not isinstance(value, str) or not value.strip():
        raise BadRequestError(f"{field} is required and must be a non-empty string.")
    if len(value) > MAX_DATABASE_NAME:
        raise BadRequestError(f"{field} '{value[:40]}...' is longer than {MAX_DATABASE_NAME} characters.")
    if _control_characters(value):
        raise BadRequestError(f"{field} {value!r} contains control characters.")
    if "/" in value or "\\" in value:
        raise BadRequestError(f"{field} '{value}' contains a path separator ('/' or '\\').")
    if value in (".", "..") or value.endswith(".") or not _DATABASE_NAME.match(value):
        raise BadRequestError(
            f"{field} '{value}' is not valid: use letters, digits, '_', '-' and '.', starting with a letter or "
            "digit and not ending with '.'."
        )
    return DatabaseName(value)


def document_id(value: object) -> DocumentId:
    """Document ids keep '/' (RavenDB's ``users/1-A`` convention) but refuse control characters and '\\'."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequestError("Document id is required and must be a non-empty string.")
    if len(value) > MAX_DOCUMENT_ID:
        raise BadRequestError(f"Document id '{value[:40]}...' is longer than {MAX_DOCUMENT_ID} characters.")
    if _control_characters(value):
        raise BadRequestError(f"Document id {value!r} contains control characters.")
    if "\\" in value:
        raise BadRequestError(f"Document id '{value}' contains a backslash.")
    return DocumentId(value)


def is_document_id(value: object) -> bool:
    """Whether ``value`` passes :func:`document_id` (for values that are only maybe ids, such as includes)."""
    try:
        document_id(value)
    except BadRequestError:
        return False
    return True
