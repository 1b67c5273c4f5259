"""Two-factor authentication: TOTP enrolment and verification, 2FA sessions, lockout.

RavenDB v6's design (reference ravendb-certificates.md, section 6): a certificate that has a
``TwoFactorAuthenticationKey`` is let in only while a 2FA session of that certificate is open. The session is
opened by POSTing a TOTP code to ``/authentication/2fa`` and is either limited to the browser that holds the
``2fa-cookie`` ("only this browser") or open to every client of the certificate. One session per certificate:
a new login replaces the previous one, a logout ends it for every client.

Where Roost does better than RavenDB:
- RFC 6238 section 5.2: a code is accepted once. The last accepted time step is remembered per TOTP key (not
  per certificate: the members of a collection and same-key siblings share one key), and a code of that step or
  an earlier one is refused, so a code seen over a shoulder or in a log is useless.
- Five wrong codes in a row lock the key for five minutes (HTTP 429 with the time left), whichever certificate
  holding it is used, which caps an online guesser at a few thousand tries a day against a million codes per
  step.
- State lives in storage (``two_factor`` table), not in a per-node dictionary: sessions and lockouts survive a
  restart and hold on every node and worker that shares the storage. A login is one atomic update in storage
  (``Storage.update_two_factor``), so five wrong codes are five in total however they are spread over nodes, and
  a code accepted anywhere is a replay everywhere; the gate reads the session per request, so a logout holds at
  once everywhere. Storage holds SHA-256 digests of the cookie and of
  the key a session was opened with, never the cookie value or the key itself.
- Every success, failure, replay and lockout is logged with the thumbprint; never the code, key or cookie. The
  service records the audit events itself (``twofactor.succeeded``, ``.failed``, ``.locked``, and a refused
  caller as ``auth.refused``), so every caller of ``admit`` and ``login`` is audited, not only the HTTP route.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import inspect
import io
import ipaddress
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import pyotp
import segno

from roost import clock
from roost.errors import BadRequestError, RoostError, TwoFactorCodeError, TwoFactorLockedError
from roost.security import authz
from roost.security.audit import AuditLog, Event
from roost.security.identity import AuthStatus, Identity
from roost.security.registry import CertificateDefinition, Registry
from roost.storage.base import JsonObject, Storage
from roost.types import Level

# Under roost.audit: whatever keeps the audit trail keeps these events too.
log = logging.getLogger("roost.audit.twofactor")

COOKIE_NAME = "2fa-cookie"
# RFC 6238 defaults, which every authenticator app uses: HMAC-SHA1, 6 digits, 30-second steps.
DIGITS = 6
STEP_SECONDS = 30
# Codes of the previous and the next step are accepted too (RFC 6238 section 5.2 recommends at most one step of
# network delay): a phone clock up to about 30 s off still works. RavenDB accepts +-2 steps; a narrower window
# halves the codes an attacker can hit per guess.
WINDOW_STEPS = 1
MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=5)
NO_CERTIFICATE_MESSAGE = (
    "Two factor authentication requires that you'll use a client certificate, but none was provided."
)
SECRET_BYTES = 20  # RavenDB's size; RFC 4226 section 4 asks for at least 128 bits and recommends 160
MAX_NAME = 200


# Enrolment
# ------------------------------------------------------------------------------------------------------


def generate_secret() -> str:
    """A new TOTP key: 20 random bytes from the OS CSPRNG, base32 (RFC 4648): 32 characters, no padding."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def parse_secret(value: Any) -> str:
    """A base32 TOTP key from a request, normalised (upper case, no spaces or padding); 400 if it is not."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequestError(
            "The query parameter 'secret' is required: the base32 key from "
            "GET /admin/certificates/2fa/generate."
        )
    return decode_key(value, "The secret")


def decode_key(value: str, what: str) -> str:
    """The one base32 check of a TOTP key (RFC 4648 alphabet; RFC 4226 asks for at least 128 bits, Roost refuses
    fewer than 80): normalised to upper case without spaces or padding. ``what`` names the field in the 400."""
    text = value.strip().replace(" ", "").upper().rstrip("=")
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise BadRequestError(f"{what} is not valid base32 (letters A-Z and digits 2-7).") from None
    if len(raw) < 10:
        raise BadRequestError(f"{what} is too short: use at least 80 bits (16 base32 characters).")
    return text


def issuer_for_host(host: str) -> str:
    """RavenDB's issuer: the request's host without its first DNS label (``a.b.example`` -> ``b.example``).

    A name of one or two labels, or an IP address, is used as it is (there is nothing sensible to drop).
    """
    name = host.strip()
    if name.startswith("["):  # [::1]:8443
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    try:
        ipaddress.ip_address(name)
        return name or "Roost"
    except ValueError:
        pass
    labels = name.split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else (name or "Roost")


def otpauth_uri(secret: str, name: str, issuer: str) -> str:
    """The Key URI authenticator apps scan: ``otpauth://totp/<issuer>:<name>?secret=...&issuer=...``.

    Both parts are percent-encoded (as RavenDB does), so a name with ``:``, ``&`` or spaces stays one label.
    """
    return (
        f"otpauth://totp/{quote(issuer, safe='')}:{quote(name, safe='')}"
        f"?secret={secret}&issuer={quote(issuer, safe='')}"
    )


def qr_code(uri: str) -> segno.QRCode:
    # Error correction M (15%): survives a smudged screen without making the code dense for a
    # 32-character key.
    return segno.make(uri, error="m", micro=False)


def qr_svg(uri: str) -> bytes:
    """The QR code of ``uri`` as a standalone SVG: one path, no script, no style, no external reference."""
    buffer = io.BytesIO()
    qr_code(uri).save(
        buffer, kind="svg", scale=6, border=4, xmldecl=False, title="Two-factor authentication key"
    )
    return buffer.getvalue()


def qr_terminal(uri: str) -> str:
    """The QR code of ``uri`` drawn with half-block characters, for ``roost certs generate --require-2fa``."""
    out = io.StringIO()
    qr_code(uri).terminal(out=out, compact=True, border=2)
    return out.getvalue()


# Sessions and state
# ---------------------------------------------------------------------------------------------


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _key_digest(key: str) -> str:
    # Cached: the gate compares it on every request of an enrolled certificate.
    return _digest("roost-2fa-key:" + key)


@dataclass(frozen=True, slots=True)
class Session:
    expires: dt.datetime
    has_limits: bool
    cookie_digest: str  # SHA-256 of the 2fa-cookie value; "" when the session is open to every client
    key_digest: str  # the key the session was opened with: a changed or removed-and-re-added key ends it
    minutes: int


@dataclass(frozen=True, slots=True)
class State:
    """What Roost remembers about one certificate's 2FA session (stored under its thumbprint), or about one key's
    replay mark and lockout (stored under ``guard_id(key)``, with no session)."""

    session: Session | None = None
    last_step: int = -1  # the newest TOTP time step accepted: codes of this step or older are replays
    failures: int = 0  # wrong codes in a row since the last success or lockout
    locked_until: dt.datetime | None = None

    def to_storage(self) -> JsonObject:
        session = self.session
        return {
            "Session": None
            if session is None
            else {
                "Expires": clock.wire_date(session.expires),
                "HasLimits": session.has_limits,
                "CookieDigest": session.cookie_digest,
                "KeyDigest": session.key_digest,
                "Minutes": session.minutes,
            },
            "LastStep": self.last_step,
            "Failures": self.failures,
            "LockedUntil": clock.wire_date(self.locked_until) if self.locked_until else None,
        }

    @classmethod
    def from_storage(cls, data: JsonObject) -> State:
        raw = data.get("Session")
        session = None
        if raw:
            session = Session(
                clock.parse_wire_date(raw["Expires"]),
                bool(raw["HasLimits"]),
                raw.get("CookieDigest", ""),
                raw.get("KeyDigest", ""),
                int(raw.get("Minutes", 0)),
            )
        locked = data.get("LockedUntil")
        return cls(
            session,
            int(data.get("LastStep", -1)),
            int(data.get("Failures", 0)),
            clock.parse_wire_date(locked) if locked else None,
        )


@dataclass(frozen=True, slots=True)
class LoginResult:
    cookie: str | None  # the 2fa-cookie value to set (sessions with limits), else None
    max_age: int  # seconds


GUARD_PREFIX = "key:"


def guard_id(key: str) -> str:
    """Where a key's replay mark and lockout are stored: beside the sessions, named by the key's digest."""
    return GUARD_PREFIX + _key_digest(key)


def _label(definition: CertificateDefinition) -> str:
    return f"{definition.thumbprint} ({definition.name})"


def parse_token(body: Any) -> str:
    """``{"Token": "012345"}`` or ``{"Token": 12345}`` (RavenDB parses an int; its tests send strings)."""
    if not isinstance(body, dict) or "Token" not in body:
        raise BadRequestError('The request body must be a JSON object with the code: {"Token": "123456"}.')
    token = body["Token"]
    if isinstance(token, bool):
        token = None
    if isinstance(token, int) and 0 <= token < 10**DIGITS:
        return str(token).zfill(DIGITS)  # a number loses its leading zeros: 12345 is the code 012345
    if isinstance(token, str):
        text = token.strip().replace(" ", "")
        if len(text) == DIGITS and text.isascii() and text.isdigit():
            return text
    raise BadRequestError(
        f"Token must be the {DIGITS}-digit code from the authenticator app, as a string or a number."
    )


class TwoFactor:
    """The 2FA service: one per server. Its in-memory index is written through to storage."""

    def __init__(
        self,
        storage: Storage,
        registry: Registry,
        now: Callable[[], dt.datetime],
        *,
        audit: AuditLog,
        default_minutes: int,
        max_minutes: int,
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._now = now
        self._audit = audit
        self.default_minutes = default_minutes
        self.max_minutes = max_minutes
        # What the last login attempt per key saw of its lockout (for the audit of that attempt only).
        self._observed_locks: dict[str, dt.datetime | None] = {}

    async def load(self) -> None:
        """Drop what storage holds for deleted certificates and keys (the state itself is read per use)."""
        states = await self._storage.load_two_factor()
        keys = {guard_id(d.two_factor_key) for d in self._registry.all() if d.two_factor_key}
        gone = [tp for tp in states
                if (tp not in keys if tp.startswith(GUARD_PREFIX) else self._registry.get(tp) is None)]
        if gone:
            await self._storage.delete_two_factor(gone)

    # The gate (request path)
    # ------------------------------------------------------------------------------------

    async def gate(self, identity: Identity, cookie: str | None, now: dt.datetime) -> Identity:
        """Called by the middleware only for an authenticated certificate that has a key; returns the identity
        authz should judge: unchanged while a valid session is open, else RavenDB's 2FA statuses.

        The session is read from storage on every such request (one indexed row), never from a copy in memory:
        a logout or a new login on any node or worker holds on the very next request everywhere.
        """
        definition = identity.definition
        assert definition is not None and definition.two_factor_key
        stored = (await self._storage.get_two_factor([definition.thumbprint])).get(definition.thumbprint)
        session = State.from_storage(stored).session if stored is not None else None
        if (
            session is None
            or session.expires <= now
            or session.key_digest != _key_digest(definition.two_factor_key)
        ):
            return replace(identity, status=AuthStatus.TWO_FACTOR_REQUIRED)
        if session.has_limits:
            # RavenDB's audit texts. The client only ever sees "Access to the server was denied."
            if not cookie:
                log.warning(
                    "2FA: refused %s: missing the '%s' in the request", _label(definition), COOKIE_NAME
                )
                return replace(identity, status=AuthStatus.TWO_FACTOR_INVALID_LIMIT)
            if not hmac.compare_digest(_digest(cookie), session.cookie_digest):
                log.warning(
                    "2FA: refused %s: expected cookie value does not match provided value", _label(definition)
                )
                return replace(identity, status=AuthStatus.TWO_FACTOR_INVALID_LIMIT)
        return identity

    # Login and logout
    # -------------------------------------------------------------------------------------------

    def duration(self, requested: int | None) -> int:
        """Minutes for a new session: the default when not asked, never more than the maximum (else 400)."""
        if requested is None:
            return self.default_minutes
        if requested > self.max_minutes:
            raise BadRequestError(
                "Requested two factor authentication duration is higher than maximum session length "
                f"({self.max_minutes})"
            )
        return requested

    def enrolled(self, identity: Identity) -> CertificateDefinition:
        """The caller's certificate definition, if it may use 2FA at all; RavenDB's 400 messages otherwise."""
        if identity.status in (AuthStatus.NO_CERTIFICATE, AuthStatus.NONE) or identity.thumbprint is None:
            raise BadRequestError(NO_CERTIFICATE_MESSAGE)
        definition = identity.definition
        if definition is None:
            raise BadRequestError(
                f"The certificate {identity.thumbprint} ({identity.synthetic_name or identity.display_name}) "
                + (
                    "is not set up for two factor authentication"
                    if identity.synthetic_name
                    else "is not known to the server"
                )
            )
        if identity.status in (AuthStatus.EXPIRED, AuthStatus.NOT_YET_VALID, AuthStatus.DISABLED):
            # A code must not revive a certificate that is refused anyway: the same refusal as
            # every other route.
            authz.ensure_allowed(Level.VALID_USER, identity)
        if not definition.two_factor_key:
            raise BadRequestError(
                f"The certificate {definition.thumbprint} ({definition.name}) is not set up for two factor "
                "authentication"
            )
        return definition

    def admit(self, identity: Identity, address: str | None) -> CertificateDefinition:
        """``enrolled``, with a refusal audited like any other authentication refusal (rate-limited per
        certificate or address). The route calls it before reading the body: a caller that cannot use 2FA at all
        costs one lookup, never a parse."""
        try:
            return self.enrolled(identity)
        except RoostError as exc:
            self._audit.record_refusal(identity.thumbprint or f"address:{address}", identity, exc.message, address)
            raise

    async def login(
        self, identity: Identity, body: Any, *, has_limits: bool, minutes: int | None, address: str | None = None
    ) -> LoginResult:
        """POST /authentication/2fa: check the code, open the certificate's session (replacing any other), and
        audit the outcome. ``body`` may be an awaitable (the request body still to be read): a body that cannot
        be read is audited as a failure too."""
        try:
            result = await self._login(identity, await body if inspect.isawaitable(body) else body,
                                       has_limits=has_limits, minutes=minutes)
        except RoostError as exc:
            # Who failed, why (the message never holds the code), and a lockout when this failure caused one.
            locked = self.locked_until(identity.thumbprint) if identity.thumbprint else None
            if locked is not None and locked <= clock.now():
                locked = None
            # Only the wrong code (406) that starts a lockout is the lockout; any other refusal while locked (429,
            # or a 400 for a malformed request) is a failure.
            event = Event.TWOFACTOR_LOCKED if locked is not None and exc.http_status == 406 else Event.TWOFACTOR_FAILED
            self._audit.record(event, actor=identity, Reason=exc.message,
                               LockedUntil=clock.wire_date(locked) if locked else None, Address=address)
            raise
        self._audit.record(Event.TWOFACTOR_SUCCEEDED, actor=identity, OnlyThisBrowser=has_limits, Address=address)
        return result

    async def _login(
        self, identity: Identity, body: Any, *, has_limits: bool, minutes: int | None
    ) -> LoginResult:
        period = self.duration(minutes)
        definition = self.enrolled(identity)
        token = parse_token(body)
        key = definition.two_factor_key
        assert key is not None
        label = _label(definition)
        guard_key = guard_id(key)
        thumbprint = definition.thumbprint
        now = self._now()
        cookie = secrets.token_urlsafe(32) if has_limits else None
        outcome: list[_Outcome] = []

        def change(stored: dict[str, JsonObject]) -> dict[str, JsonObject | None]:
            # Runs inside storage's atomic update: every node and worker sees the failures, the lockout and the
            # last accepted step this decision was made on, and none can decide in between.
            outcome.clear()
            # Counted per key: another certificate of the same key neither replays a code nor gets five more tries
            # (a state stored under the thumbprint is the older layout: its step still counts).
            raw = stored.get(guard_key) or stored.get(thumbprint)
            state = State.from_storage(raw) if raw is not None else State()
            state = State(None, state.last_step, state.failures, state.locked_until)
            if state.locked_until is not None and now < state.locked_until:
                outcome.append(_Outcome("locked", state.failures, state.locked_until))
                return {}
            step = _matching_step(key, token, now)
            if step is None:
                failures = state.failures + 1
                if failures >= MAX_FAILURES:
                    locked = replace(state, failures=0, locked_until=now + LOCKOUT)
                    outcome.append(_Outcome("wrong", failures, locked.locked_until))
                    return {guard_key: locked.to_storage()}
                outcome.append(_Outcome("wrong", failures, None))
                return {guard_key: replace(state, failures=failures, locked_until=None).to_storage()}
            if step <= state.last_step:
                outcome.append(_Outcome("replay", state.failures, None))
                return {}
            session = Session(
                now + dt.timedelta(minutes=period),
                has_limits,
                _digest(cookie) if cookie else "",
                _key_digest(key),
                period,
            )
            outcome.append(_Outcome("opened", 0, None))
            return {guard_key: State(None, step, 0, None).to_storage(), thumbprint: State(session).to_storage()}

        await self._storage.update_two_factor([guard_key, thumbprint], change)
        result = outcome[0]
        self._observed_locks[guard_key] = result.locked_until
        if result.kind == "locked":
            assert result.locked_until is not None
            seconds = max(1, int((result.locked_until - now).total_seconds() + 0.999))
            log.warning("2FA: refused %s: locked out for %d more seconds", label, seconds)
            raise TwoFactorLockedError(
                f"Two factor authentication for {label} is locked for {seconds} more seconds after "
                f"{MAX_FAILURES} wrong codes in a row. Wait, then enter a new code.",
                headers={"Retry-After": str(seconds)},
            )
        if result.kind == "wrong":
            if result.locked_until is not None:
                log.warning("2FA: wrong code for %s (%d in a row): locked until %s", label, result.failures,
                            clock.wire_date(result.locked_until))
            else:
                log.warning("2FA: wrong code for %s (%d of %d before a lockout)", label, result.failures,
                            MAX_FAILURES)
            tries_left = 0 if result.locked_until is not None else max(0, MAX_FAILURES - result.failures)
            raise TwoFactorCodeError(f"Wrong token provided for {label}", outcome="wrong", tries_left=tries_left)
        if result.kind == "replay":
            # Not counted as a failure: a replayed code is the right code, so it gives a guesser nothing.
            log.warning("2FA: refused %s: replay of an already used code", label)
            raise TwoFactorCodeError(
                f"The code provided for {label} was already used; each code is accepted once. Wait for "
                "the next code from your authenticator app.", outcome="replay"
            )
        log.info(
            "2FA: session opened for %s for %d minutes, %s",
            label,
            period,
            "only for the client holding the cookie" if has_limits else "for every client of the certificate",
        )
        return LoginResult(cookie, period * 60)

    async def logout(self, identity: Identity) -> None:
        """DELETE /authentication/2fa: ends the certificate's session for every client (as RavenDB), on every
        node and worker (the gate reads the session from storage)."""
        if identity.status in (AuthStatus.NO_CERTIFICATE, AuthStatus.NONE) or identity.thumbprint is None:
            raise BadRequestError(NO_CERTIFICATE_MESSAGE)
        definition = identity.definition
        if definition is None:
            return  # nothing to end
        if await self._end_session(definition.thumbprint):
            log.info("2FA: session ended (logout) for %s", _label(definition))

    # Administrators (GET/DELETE /admin/certificates/2fa/...) ---------------------------------------------------

    async def overview(self) -> list[dict[str, Any]]:
        """Every certificate with a 2FA key: its open session (expiry; this browser only or all clients) and its
        key's lockout and wrong codes in a row, as stored (so on every node alike)."""
        now = self._now()
        states = await self._storage.load_two_factor()
        found: list[dict[str, Any]] = []
        for d in sorted((d for d in self._registry.all() if d.two_factor_key), key=lambda d: d.name.casefold()):
            assert d.two_factor_key is not None
            own = State.from_storage(states[d.thumbprint]) if d.thumbprint in states else State()
            guard = State.from_storage(states[guard_id(d.two_factor_key)]) if guard_id(
                d.two_factor_key) in states else State()
            session = own.session
            open_session = session is not None and session.expires > now and session.key_digest in (
                "", _key_digest(d.two_factor_key))
            locked = guard.locked_until is not None and guard.locked_until > now
            found.append({
                "Thumbprint": d.thumbprint, "Name": d.name, "SecurityClearance": d.clearance.value,
                "Session": {"Expires": clock.wire_date(session.expires), "OnlyThisBrowser": session.has_limits,
                            "Minutes": session.minutes} if open_session and session is not None else None,
                "LockedUntil": clock.wire_date(guard.locked_until) if locked and guard.locked_until else None,
                "WrongCodesInARow": guard.failures,
            })
        return found

    async def end_session(self, definition: CertificateDefinition, actor: Identity) -> bool:
        """An administrator ends the certificate's session for every client (its next request asks for a code)."""
        ended = await self._end_session(definition.thumbprint)
        if ended:
            self._audit.record(Event.TWOFACTOR_SESSION_ENDED, actor=actor, Thumbprint=definition.thumbprint,
                               Name=definition.name)
        return ended

    async def lift_lockout(self, definition: CertificateDefinition, actor: Identity) -> bool:
        """An administrator lifts the lockout of the certificate's key (and forgets its wrong codes in a row); the
        replay mark stays, so a used code is still refused."""
        if not definition.two_factor_key:
            raise BadRequestError(f"The certificate '{definition.name}' has no two-factor authentication key.")
        key = guard_id(definition.two_factor_key)
        lifted: list[bool] = []

        def change(stored: dict[str, JsonObject]) -> dict[str, JsonObject | None]:
            raw = stored.get(key)
            if raw is None:
                return {}
            state = State.from_storage(raw)
            if state.failures == 0 and state.locked_until is None:
                return {}
            lifted.append(True)
            return {key: replace(state, failures=0, locked_until=None).to_storage()}

        await self._storage.update_two_factor([key], change)
        self._observed_locks.pop(key, None)
        if lifted:
            self._audit.record(Event.TWOFACTOR_LOCKOUT_LIFTED, actor=actor, Thumbprint=definition.thumbprint,
                               Name=definition.name)
        return bool(lifted)

    async def _end_session(self, thumbprint: str) -> bool:
        ended: list[bool] = []

        def change(stored: dict[str, JsonObject]) -> dict[str, JsonObject | None]:
            raw = stored.get(thumbprint)
            if raw is None or not raw.get("Session"):
                return {}
            ended.append(True)
            return {thumbprint: replace(State.from_storage(raw), session=None).to_storage()}

        await self._storage.update_two_factor([thumbprint], change)
        return bool(ended)

    async def forget(self, thumbprints: list[str]) -> None:
        """Hook for deleted certificates: their sessions go with them (a key's replay mark and lockout stay while
        another certificate holds the key; ``load`` drops those of keys nobody holds)."""
        if thumbprints:
            await self._storage.delete_two_factor(thumbprints)

    def locked_until(self, thumbprint: str) -> dt.datetime | None:
        """When the lockout of the certificate's key ends, as this process's last login attempt with the key saw
        it (None: not locked): ``login`` audits the failure that caused a lockout right after it."""
        definition = self._registry.get(thumbprint)
        if definition is None or not definition.two_factor_key:
            return None
        return self._observed_locks.get(guard_id(definition.two_factor_key))


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str  # "locked", "wrong", "replay" or "opened"
    failures: int
    locked_until: dt.datetime | None


def _matching_step(key: str, token: str, now: dt.datetime) -> int | None:
    """The time step within the window whose code equals ``token`` (newest first), or None."""
    totp = pyotp.TOTP(key, digits=DIGITS, interval=STEP_SECONDS)  # HMAC-SHA1 (pyotp's and RFC 6238's default)
    current = totp.timecode(now)
    found = None
    # Every candidate is computed and compared in constant time, so timing does not tell which step matched.
    for step in range(current + WINDOW_STEPS, current - WINDOW_STEPS - 1, -1):
        if hmac.compare_digest(totp.generate_otp(step), token) and found is None:
            found = step
    return found
