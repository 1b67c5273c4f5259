"""Security.AllowedIPs: refused peers get no TLS handshake; open connections are refused on their next request."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from conftest import RunningServer, start_server


class _FromAddress(HTTPAdapter):
    """requests from a chosen loopback source address (127.0.0.2 is a different peer than 127.0.0.1)."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(server: RunningServer, source: str) -> requests.Session:
    session = server.admin()
    session.mount("https://", _FromAddress(source))
    return session


def handshake_bytes(server: RunningServer, source: str) -> bytes:
    """Open TCP from ``source``, send a real ClientHello, return what the server sends back before closing."""
    context = ssl.create_default_context(cafile=str(server.ca_pem))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(source, 0)) as sock:
        try:
            sock.sendall(hello)
            received = b""
            while len(received) < 5:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            received = b""
    return received


@pytest.fixture
def listed(tmp_path: Path):  # type: ignore[no-untyped-def]
    running = start_server(tmp_path / "data", "--Security.AllowedIPs=127.0.0.1")
    yield running
    running.stop()


def test_listed_address_gets_a_handshake(listed: RunningServer) -> None:
    received = handshake_bytes(listed, "127.0.0.1")
    assert received[:1] == b"\x16", "a TLS handshake record (ServerHello) was expected"
    assert listed.admin().get(f"{listed.url}/certificates/whoami").status_code == 200


def test_unlisted_address_gets_no_handshake(listed: RunningServer) -> None:
    assert handshake_bytes(listed, "127.0.0.2") == b""
    with pytest.raises(requests.exceptions.ConnectionError):
        session_from(listed, "127.0.0.2").get(f"{listed.url}/certificates/whoami", timeout=5)


def test_empty_list_lets_everyone_in(fresh_server: RunningServer) -> None:
    assert handshake_bytes(fresh_server, "127.0.0.2")[:1] == b"\x16"
    response = session_from(fresh_server, "127.0.0.2").get(f"{fresh_server.url}/admin/security/allowed-ips")
    assert response.json() == {"AllowedIPs": [], "Everyone": True, "YourAddress": "127.0.0.2"}


def test_change_applies_to_new_and_open_connections(fresh_server: RunningServer) -> None:
    url = f"{fresh_server.url}/admin/security/allowed-ips"
    other = session_from(fresh_server, "127.0.0.2")
    assert other.get(f"{fresh_server.url}/certificates/whoami").status_code == 200  # connection now open
    admin = fresh_server.admin()
    response = admin.put(url, json={"AllowedIPs": ["127.0.0.1", "10.0.0.0/8", "::1"]})
    assert response.status_code == 200, response.text
    assert response.json()["AllowedIPs"] == ["127.0.0.1", "10.0.0.0/8", "::1"]
    # The open keep-alive connection from 127.0.0.2: refused on its next request, with the reason.
    refused = other.get(f"{fresh_server.url}/certificates/whoami")
    assert refused.status_code == 403
    assert "127.0.0.2 is not allowed" in refused.json()["Message"]
    # New connections from 127.0.0.2: no handshake at all. 127.0.0.1 still works.
    assert handshake_bytes(fresh_server, "127.0.0.2") == b""
    assert admin.get(url).json()["AllowedIPs"] == ["127.0.0.1", "10.0.0.0/8", "::1"]
    # Back to everyone.
    assert admin.put(url, json={"AllowedIPs": []}).status_code == 200
    assert handshake_bytes(fresh_server, "127.0.0.2")[:1] == b"\x16"


def test_lockout_refused_unless_forced(fresh_server: RunningServer) -> None:
    url = f"{fresh_server.url}/admin/security/allowed-ips"
    admin = fresh_server.admin()
    refused = admin.put(url, json={"AllowedIPs": ["127.0.0.2"]})
    assert refused.status_code == 409
    assert "lock out your own address 127.0.0.1" in refused.json()["Message"]
    assert admin.get(url).json()["Everyone"] is True  # nothing changed
    forced = admin.put(url, params={"force": "true"}, json={"AllowedIPs": ["127.0.0.2"]})
    assert forced.status_code == 200
    assert admin.get(url).status_code == 403  # the caller locked itself out, as it asked
    rescue = session_from(fresh_server, "127.0.0.2")
    assert rescue.put(url, json={"AllowedIPs": ["127.0.0.0/8"]}).status_code == 200
    assert fresh_server.admin().get(url).status_code == 200


def test_bad_input_changes_nothing(fresh_server: RunningServer) -> None:
    url = f"{fresh_server.url}/admin/security/allowed-ips"
    admin = fresh_server.admin()
    for body in ({"AllowedIPs": ["127.0.0.1", "not-an-ip"]}, {"AllowedIPs": "127.0.0.1"}, {"Allowed": []},
                 {"AllowedIPs": ["300.1.1.1"]}, {"AllowedIPs": [7]}):
        response = admin.put(url, json=body)
        assert response.status_code == 400, (body, response.text)
    assert admin.get(url).json()["Everyone"] is True


def test_only_operators_change_the_list(fresh_server: RunningServer) -> None:
    url = f"{fresh_server.url}/admin/security/allowed-ips"
    user = fresh_server.generate("user", "ValidUser")
    operator = fresh_server.generate("op", "Operator")
    assert fresh_server.session(user.pem_path).get(url).status_code == 403
    assert fresh_server.session(user.pem_path).put(url, json={"AllowedIPs": ["127.0.0.1"]}).status_code == 403
    assert fresh_server.session(None).put(url, json={"AllowedIPs": ["127.0.0.1"]}).status_code == 403
    assert fresh_server.admin().get(url).json()["Everyone"] is True
    assert fresh_server.session(operator.pem_path).put(url, json={"AllowedIPs": ["127.0.0.1"]}).status_code == 200


def test_change_survives_a_restart(tmp_path: Path) -> None:
    running = start_server(tmp_path / "data")
    try:
        url = f"{running.url}/admin/security/allowed-ips"
        assert running.admin().put(url, json={"AllowedIPs": ["127.0.0.1"]}).status_code == 200
    finally:
        running.stop()
    again = start_server(tmp_path / "data")
    try:
        assert handshake_bytes(again, "127.0.0.2") == b""
        assert again.admin().get(f"{again.url}/admin/security/allowed-ips").json()["AllowedIPs"] == ["127.0.0.1"]
    finally:
        again.stop()


def test_bad_setting_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="Security.AllowedIPs"):
        start_server(tmp_path / "data", "--Security.AllowedIPs=10.0.0.0/33", timeout=20)


def test_cli_shows_and_changes_the_list(fresh_server: RunningServer) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    def roost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "roost", "security", "allowed-ips", "--data-dir",
                               str(fresh_server.data_dir), *args], capture_output=True, text=True, cwd=ROOT, timeout=60)

    shown = roost()
    assert shown.returncode == 0 and "everyone" in shown.stdout
    changed = roost("--set", "127.0.0.1", "10.0.0.0/8")
    assert changed.returncode == 0 and "127.0.0.1" in changed.stdout and "10.0.0.0/8" in changed.stdout
    locked_out = roost("--set", "127.0.0.2")
    assert locked_out.returncode == 1 and "lock out your own address" in locked_out.stderr
    assert roost("--set", "not-an-ip").returncode == 1
    assert roost("127.0.0.1").returncode == 2  # addresses without --set: usage error, nothing changed
    assert "10.0.0.0/8" in roost().stdout
    user = fresh_server.generate("user", "ValidUser")
    refused = roost("--clear", "--cert", str(user.pem_path))
    assert refused.returncode == 1 and "403" in refused.stderr
    assert roost("--clear").returncode == 0
    assert "everyone" in roost().stdout
