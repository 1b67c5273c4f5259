"""Settings: roost.toml < ROOST_* < flags, RavenDB's keys as aliases, and clear refusals before the port opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.errors import ConfigurationError
from roost.settings import load_settings
from roost.types import Clearance


def test_defaults() -> None:
    settings, ignored = load_settings({}, [], environ={})
    assert (settings.data_dir, settings.host, settings.port, settings.scheme) == (Path("roost-data"), "127.0.0.1", 8443, "https")
    assert ignored == []
    assert settings.url_for_port(8443) == "https://localhost:8443"


def test_priority_toml_env_flags(tmp_path: Path) -> None:
    (tmp_path / "roost.toml").write_text('port = 9000\nhost = "127.0.0.2"\n[Security]\nAllowedIPs = ["127.0.0.1"]\n')
    settings, _ = load_settings({"data_dir": tmp_path}, [], environ={})
    assert settings.port == 9000 and settings.host == "127.0.0.2" and settings.allowed_ips == ("127.0.0.1",)
    settings, _ = load_settings({"data_dir": tmp_path}, [], environ={"ROOST_PORT": "9001"})
    assert settings.port == 9001
    settings, _ = load_settings({"data_dir": tmp_path, "port": 9002}, [], environ={"ROOST_PORT": "9001"})
    assert settings.port == 9002


def test_ravendb_aliases(tmp_path: Path) -> None:
    pfx = tmp_path / "server.pfx"
    pfx.write_bytes(b"x")
    settings, ignored = load_settings({}, [
        "--ServerUrl=https://0.0.0.0:9443", f"--Security.Certificate.Path={pfx}",
        "--Security.Certificate.Password=pw", f"--Security.WellKnownCertificates.Admin={'AB12' * 10},{'cd34' * 10}",
        f"--DataDir={tmp_path}", "--RunInMemory=true", "--Setup.Mode=None", "--License.Eula.Accepted=true",
    ], environ={})
    assert (settings.host, settings.port) == ("0.0.0.0", 9443)
    assert settings.certificate_path == pfx.resolve() and settings.certificate_password == "pw"
    assert settings.well_known_admins == ("AB12" * 10, "cd34" * 10)
    assert settings.run_in_memory and settings.data_dir == tmp_path
    assert ignored == ["Setup.Mode", "License.Eula.Accepted"]
    assert settings.url_for_port(9443) == "https://localhost:9443"


@pytest.mark.parametrize(("flags", "args", "message"), [
    ({}, ["--Security.Certificate.Path=/nope/server.pfx"], "does not exist"),
    ({}, ["--ServerUrl=http://0.0.0.0:8080"], "Refusing to serve unsecured HTTP"),
    ({}, ["--ServerUrl=ftp://x"], "must look like https://host:port"),
    ({"port": 70000}, [], "between 0 and 65535"),
    ({}, ["--InitialClientCertificate.Clearance=ValidUser"], "must be ClusterAdmin or Operator"),
    ({}, ["--Security.WellKnownCertificates.Admin=not/a/file"], "neither a thumbprint nor an existing file"),
    ({}, ["--Security.WellKnownCertificates.Admin=AB12"], "a thumbprint is 40 hexadecimal digits"),
    ({}, ["--RunInMemory=maybe"], "must be true or false"),
    ({}, ["--Security.TrustedProxy.Socket=/nope/dir/proxy.sock"], "does not exist"),
    ({}, ["--Security.TrustedProxy.Socket=/tmp/p.sock", "--Security.TrustedProxy.SocketMode=666"], "gives others nothing"),
    ({}, ["--Security.TrustedProxy.SocketMode=400"], "lets Roost read and write"),
    ({}, ["--Security.TrustedProxy.SocketMode=rw"], "octal file mode"),
    ({}, ["--Security.TrustedProxy.Header=X Bad"], "must be a header name"),
    ({}, ["--Security.TrustedProxy.Thumbprints=AB12"], "is not a thumbprint"),
    ({}, ["--ServerUrl=http://127.0.0.1:8080", "--Security.TrustedProxy.Socket=/tmp/p.sock"], "needs a secured server"),
    ({}, ["--Notifications.Webhook.Url=http://hooks.example.com/x", f"--Notifications.Webhook.Secret={'s' * 16}"],
     "must be an https:// URL"),
    ({}, ["--Notifications.Webhook.Url=https://hooks.example.com/x", "--Notifications.Webhook.Secret=short"],
     "at least 16 characters"),
    ({}, ["--Notifications.Webhook.Url=https://hooks.example.com/x"], "at least 16 characters"),
    ({}, [f"--Notifications.Webhook.Secret={'s' * 16}"], "Url is not"),
])
def test_refusals(flags: dict[str, object], args: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(flags, args, environ={})


def test_trusted_proxy_settings_in_ravendb_style_and_in_toml(tmp_path: Path) -> None:
    settings, _ = load_settings({}, ["--Security.TrustedProxy.Socket=/tmp/p.sock", "--Security.TrustedProxy.SocketMode=660",
                                     "--Security.TrustedProxy.Header=X-Forwarded-Client-Cert",
                                     f"--Security.TrustedProxy.Thumbprints={'ab' * 20}"], environ={})
    assert settings.trusted_proxy_socket == Path("/tmp/p.sock") and settings.trusted_proxy_socket_mode == 0o660
    assert settings.trusted_proxy_header == "X-Forwarded-Client-Cert"
    assert settings.trusted_proxy_thumbprints == ("AB" * 20,)
    (tmp_path / "roost.toml").write_text('[Security.TrustedProxy]\nSocket = "/tmp/p.sock"\nSocketMode = 660\n')
    from_toml, _ = load_settings({"data_dir": tmp_path}, [], environ={})
    assert from_toml.trusted_proxy_socket_mode == 0o660  # 660 written as a TOML number means the octal mode
    assert load_settings({}, [], environ={})[0].trusted_proxy_socket is None


def test_unknown_toml_key_is_refused_but_unknown_flag_is_only_ignored(tmp_path: Path) -> None:
    (tmp_path / "roost.toml").write_text("prot = 9000\n")
    with pytest.raises(ConfigurationError, match="Unknown setting 'prot'"):
        load_settings({"data_dir": tmp_path}, [], environ={})
    settings, ignored = load_settings({}, ["--Some.Raven.Only=1"], environ={})
    assert ignored == ["Some.Raven.Only"] and settings.port == 8443


def test_unsecured_on_loopback_is_allowed() -> None:
    settings, _ = load_settings({}, ["--ServerUrl=http://127.0.0.1:8080"], environ={})
    assert not settings.secured and settings.url_for_port(8080) == "http://127.0.0.1:8080"


def test_initial_clearance() -> None:
    settings, _ = load_settings({}, [], environ={"ROOST_INITIAL_CLIENT_CERTIFICATE_CLEARANCE": "Operator"})
    assert settings.initial_client_clearance is Clearance.OPERATOR


def test_event_loop_is_asyncio_or_uvloop() -> None:
    assert load_settings({}, [], environ={})[0].event_loop == "asyncio"
    assert load_settings({}, ["--Server.EventLoop=uvloop"], environ={})[0].event_loop == "uvloop"
    with pytest.raises(ConfigurationError, match="must be asyncio or uvloop"):
        load_settings({}, ["--Server.EventLoop=tokio"], environ={})
