"""Backup encryption: the age format (age-encryption.org/v1) through pyrage, always streaming.

Two ways to lock a backup:

* To X25519 recipients (``age1...`` public keys). The server holds only public keys, so a stolen server cannot read
  old backups. These files are plain age files: ``age -d -i key.txt FILE | gunzip`` opens them too.
* With a passphrase. pyrage encrypts to a passphrase only in memory, so Roost streams to a fresh one-time X25519
  key and stores that key, passphrase-encrypted (age's scrypt recipient), in a small header in front of the age
  stream. The header is authenticated by age as well; a wrong passphrase opens nothing.

age authenticates every 64 KiB chunk and the end of the stream, so altered, truncated and wrongly-keyed files
fail. A streaming decrypt has already written the good chunks when it meets a bad one: callers stage the output
and use it only when ``decrypt`` returned (see service.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, BinaryIO

import pyrage  # type: ignore[import-untyped]
from pyrage import x25519

from roost.errors import BadRequestError

AGE_MAGIC = b"age-encryption.org/v1\n"
PASSPHRASE_MAGIC = b"roost-backup-passphrase/v1\n"
_MAX_HEADER = 64 * 1024


class BackupDecryptError(BadRequestError):
    """Wrong key or passphrase, or a file that was altered or truncated. Nothing was restored."""


def parse_recipients(values: Iterable[Any]) -> list[x25519.Recipient]:
    recipients = []
    for value in values:
        # Echoed with repr(): ASCII whatever the value holds (a lone surrogate would break the error response).
        shown = repr(value)[:80]
        if not isinstance(value, str) or not value.isascii() or not value.strip().startswith("age1"):
            raise BadRequestError(f"{shown} is not an age X25519 recipient (a public key starting with age1...).")
        try:
            recipients.append(x25519.Recipient.from_str(value.strip()))
        except pyrage.RecipientError:
            raise BadRequestError(f"{shown} is not a valid age X25519 recipient.") from None
    return recipients


def parse_identities(text: str) -> list[x25519.Identity]:
    """Identities from an age key file (``age-keygen`` output: comments and AGE-SECRET-KEY-1... lines)."""
    identities = []
    words = [w for line in text.splitlines() if not line.strip().startswith("#") for w in line.split()]
    for word in words:
        try:
            identities.append(x25519.Identity.from_str(word))
        except pyrage.IdentityError:
            # Never echo the line: it may be (part of) a secret key.
            raise BadRequestError("The identity is not an age X25519 secret key (AGE-SECRET-KEY-1...).") from None
    if not identities:
        raise BadRequestError("No age secret key (AGE-SECRET-KEY-1...) was given.")
    return identities


def new_identity() -> tuple[str, str]:
    """(secret key, public recipient) for ``roost backup keygen``."""
    identity = x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def encrypt(reader: Any, writer: Any, *, recipients: list[x25519.Recipient] | None = None,
            passphrase: str | None = None) -> None:
    """Read plaintext from ``reader`` (``read(n)``), write the encrypted stream to ``writer``."""
    if passphrase is not None:
        one_time = x25519.Identity.generate()
        header = pyrage.passphrase.encrypt(str(one_time).encode(), passphrase)
        writer.write(PASSPHRASE_MAGIC + struct.pack(">I", len(header)) + header)
        recipients = [one_time.to_public()]
    if not recipients:
        raise BadRequestError("A backup needs at least one recipient (age1...) or a passphrase.")
    try:
        pyrage.encrypt_io(reader, writer, recipients)
    except pyrage.EncryptError as exc:
        raise BadRequestError(f"Encrypting the backup failed: {exc}.") from exc


def decrypt(reader: BinaryIO, writer: Any, *, identities: list[x25519.Identity] | None = None,
            passphrase: str | None = None) -> None:
    """Decrypt ``reader`` into ``writer``; BackupDecryptError when anything does not authenticate."""
    start = reader.read(len(PASSPHRASE_MAGIC))
    if start == PASSPHRASE_MAGIC:
        if passphrase is None:
            raise BackupDecryptError("This backup is locked with a passphrase; give the passphrase.")
        (length,) = struct.unpack(">I", reader.read(4).rjust(4, b"\0"))
        if length > _MAX_HEADER:
            raise BackupDecryptError("The backup header is damaged (altered or not a Roost backup).")
        try:
            secret = pyrage.passphrase.decrypt(reader.read(length), passphrase)
            identities = [x25519.Identity.from_str(secret.decode())]
        except (pyrage.DecryptError, pyrage.IdentityError, UnicodeDecodeError):
            raise BackupDecryptError(
                "The passphrase is wrong, or the backup was altered. Nothing was restored.") from None
        body: Any = reader
    elif start[: len(AGE_MAGIC)] == AGE_MAGIC[: len(start)] and start:
        if not identities:
            raise BackupDecryptError("This backup is encrypted to age keys; give the secret key (--identity).")
        body = _Prefixed(start, reader)
    else:
        raise BackupDecryptError("This is not a Roost backup (neither an age file nor a passphrase backup).")
    try:
        pyrage.decrypt_io(body, writer, identities)
    except pyrage.DecryptError as exc:
        raise BackupDecryptError(
            f"The backup does not authenticate ({_reason(exc)}): wrong key, or the file was altered or truncated. "
            "Nothing was restored.") from None
    except OSError as exc:
        # A chunk that fails authentication mid-stream surfaces as an OSError without errno ("decryption
        # error"); a real I/O failure (disk full) carries an errno and is not the backup's fault.
        if exc.errno is not None:
            raise
        raise BackupDecryptError(
            f"The backup does not authenticate ({exc}): the file was altered or truncated. Nothing was restored."
        ) from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    return "no matching key" if "No matching keys" in text else text.split("\n")[0][:120]


class _Prefixed:
    """Put back the bytes read to sniff the format."""

    def __init__(self, prefix: bytes, reader: BinaryIO) -> None:
        self._prefix = prefix
        self._reader = reader

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size is None or size < 0:
                data, self._prefix = self._prefix + self._reader.read(), b""
                return data
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            if len(data) < size:
                data += self._reader.read(size - len(data))
            return data
        return self._reader.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
