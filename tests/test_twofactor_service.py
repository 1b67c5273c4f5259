"""The 2FA service records its own audit events (issue 13): a caller other than the HTTP route is audited too."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pyotp
import pytest

from roost.errors import BadRequestError, NotAcceptableError
from roost.security import twofactor
from roost.security.identity import NO_CERTIFICATE, AuthStatus, Identity
from roost.security.registry import CertificateDefinition
from roost.server import Server
from roost.settings import load_settings
from roost.types import Clearance


def _enrolled(secret: str) -> Identity:
    now = dt.datetime.now(dt.UTC)
    definition = CertificateDefinition(
        name="service-caller", thumbprint="AB" * 20, clearance=Clearance.VALID_USER, permissions={},
        not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=1), pinning_hash="pin",
        certificate_der=b"", subject="CN=service-caller", two_factor_key=secret)
    return Identity(AuthStatus.ALLOWED, thumbprint=definition.thumbprint, display_name=definition.name,
                    clearance=Clearance.VALID_USER, definition=definition)


def test_admit_and_login_called_without_http_are_audited(tmp_path: Path) -> None:
    secret = twofactor.generate_secret()
    caller = _enrolled(secret)

    async def scenario() -> None:
        settings, _ = load_settings({"data_dir": tmp_path / "data", "port": 0}, environ={})
        server = await Server.create(settings)
        try:
            service = server.services.two_factor
            with pytest.raises(BadRequestError):
                service.admit(NO_CERTIFICATE, "192.0.2.7")
            service.admit(caller, "192.0.2.8")  # enrolled: no event
            with pytest.raises(NotAcceptableError):
                await service.login(caller, {"Token": "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"},
                                    has_limits=False, minutes=None, address="192.0.2.8")
            await service.login(caller, {"Token": pyotp.TOTP(secret).now()}, has_limits=True, minutes=None,
                                address="192.0.2.8")
        finally:
            await server.stop()

    asyncio.run(scenario())
    entries = [json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()]
    assert [(e["Event"], e.get("Address")) for e in entries] == [
        ("auth.refused", "192.0.2.7"), ("twofactor.failed", "192.0.2.8"), ("twofactor.succeeded", "192.0.2.8")]
    assert entries[2]["OnlyThisBrowser"] is True and entries[2]["ActorThumbprint"] == caller.thumbprint
    assert secret not in json.dumps(entries)
