"""TLS at a proxy (issue 18, docs/deployment.md): a client certificate forwarded by a trusted proxy, and only by one.

A real nginx runs the site block of docs/deployment.md (paths and port replaced) in front of a real Roost listening on
its proxy socket; other tests speak plain HTTP to that socket directly (as a proxy does) or TLS to Roost's own port
(as a client that bypasses the proxy does).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pyotp
import pytest
import requests
from bench.nginx import Nginx

from certtools import issue, roost_ca
from conftest import ROOT, RunningServer, start_server

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None and os.environ.get("CI") != "true",
                                reason="needs nginx (apt-get install nginx-light)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proxied:
    roost: RunningServer
    nginx: Nginx
    socket_path: Path

    @property
    def url(self) -> str:
        return f"https://localhost:{self.nginx.port}"

    @property
    def direct(self) -> str:
        return f"https://localhost:{self.roost.port}"

    def via(self, pem: Path | None) -> requests.Session:
        return self.roost.session(pem)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    short = Path(tempfile.mkdtemp(prefix="rp-", dir="/tmp"))  # a Unix socket path must be short (108 bytes)
    socket_path = short / "proxy.sock"
    nginx_port = free_port()
    data_dir = tmp_path_factory.mktemp("proxied") / "data"
    # The command docs/deployment.md shows, with this test's paths.
    roost = start_server(data_dir, f"--Security.TrustedProxy.Socket={socket_path}",
                         "--Security.TrustedProxy.SocketMode=660", f"--PublicServerUrl=https://localhost:{nginx_port}",
                         port=free_port())
    assert str(socket_path) in roost.wait_for_output("Trusted proxy socket")
    roost.port = _listening_port(roost)
    # docs/deployment.md's site block, as written there (bench/nginx.py replaces only the port and the paths).
    nginx = Nginx(roost.certs_dir / "server.crt", roost.certs_dir / "server.key", proxy_socket=socket_path,
                  port=nginx_port).start()
    proxied = Proxied(roost, nginx, socket_path)
    assert roost.url == proxied.url  # PublicServerUrl: what Roost prints is the proxy's address
    yield proxied
    nginx.stop()
    roost.stop()
    shutil.rmtree(short, ignore_errors=True)


def _listening_port(roost: RunningServer) -> int:
    """Roost's own HTTPS port (the printed URL is the proxy's): the --port the fixture chose."""
    command = roost.process.args
    assert isinstance(command, list)
    return int(command[command.index("--port") + 1])


def unix_request(path: Path, method: str, url: str, headers: dict[str, str] | None = None,
                 body: bytes | None = None) -> tuple[int, dict[str, object]]:
    """Plain HTTP on the proxy socket, as the proxy itself speaks it."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(path))
            self.sock = sock

    connection = Connection("localhost", timeout=10)
    try:
        connection.request(method, url, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data.startswith(b"{") else {})
    finally:
        connection.close()


def escaped(pem_path: Path) -> str:
    """nginx's $ssl_client_escaped_cert: the certificate's PEM, URL-encoded."""
    pem = pem_path.read_text()
    certificate = pem[pem.index("-----BEGIN CERTIFICATE-----"):pem.index("-----END CERTIFICATE-----") + 25] + "\n"
    return quote(certificate, safe="")


def test_a_certificate_forwarded_by_nginx_is_the_client_with_its_own_clearance(proxied: Proxied) -> None:
    roost, url = proxied.roost, proxied.url
    admin = proxied.via(roost.admin_pem).get(f"{url}/certificates/whoami")
    assert admin.status_code == 200, admin.text
    assert admin.json()["SecurityClearance"] == "ClusterAdmin"
    user = roost.generate("proxied-reader", permissions={"proxied-db": "Read"})
    seen = proxied.via(user.pem_path).get(f"{url}/certificates/whoami")
    assert seen.status_code == 200 and seen.json()["Thumbprint"] == user.thumbprint
    assert seen.json()["SecurityClearance"] == "ValidUser"


def test_through_nginx_a_reader_may_read_and_may_not_write(proxied: Proxied) -> None:
    roost, url = proxied.roost, proxied.url
    admin = proxied.via(roost.admin_pem)
    created = admin.put(f"{url}/admin/databases", json={"DatabaseName": "proxied-shop"})
    assert created.status_code in (200, 201), created.text
    assert admin.put(f"{url}/databases/proxied-shop/docs?id=items/1", json={"Name": "x"}).status_code == 201
    reader = roost.generate("proxied-shop-reader", permissions={"proxied-shop": "Read"})
    session = proxied.via(reader.pem_path)
    assert session.get(f"{url}/databases/proxied-shop/docs?id=items/1").status_code == 200
    refused = session.put(f"{url}/databases/proxied-shop/docs?id=items/2", json={"Name": "y"})
    assert refused.status_code == 403
    assert admin.get(f"{url}/databases/proxied-shop/docs?id=items/2").status_code == 404  # nothing written


def test_through_nginx_no_certificate_and_a_forged_header_are_refused(proxied: Proxied) -> None:
    roost, url = proxied.roost, proxied.url
    anonymous = proxied.via(None)
    refused = anonymous.get(f"{url}/admin/certificates")
    assert refused.status_code in (401, 403)
    # The client names the admin certificate in the header it hopes reaches Roost: nginx overwrites it.
    forged = anonymous.get(f"{url}/admin/certificates", headers={"X-SSL-Client-Cert": escaped(roost.admin_pem)})
    assert forged.status_code in (401, 403)
    reader = roost.generate("proxied-forger")
    as_reader = proxied.via(reader.pem_path).get(f"{url}/admin/certificates",
                                                 headers={"X-SSL-Client-Cert": escaped(roost.admin_pem)})
    assert as_reader.status_code == 403


def test_a_certificate_deleted_is_refused_through_nginx_on_the_next_request(proxied: Proxied) -> None:
    roost, url = proxied.roost, proxied.url
    doomed = roost.generate("proxied-doomed", permissions={"proxied-db": "Read"})
    session = proxied.via(doomed.pem_path)  # one keep-alive connection to nginx, one upstream connection
    assert session.get(f"{url}/certificates/whoami").json()["Thumbprint"] == doomed.thumbprint
    deleted = proxied.via(roost.admin_pem).delete(f"{url}/admin/certificates?thumbprint={doomed.thumbprint}")
    assert deleted.status_code == 204, deleted.text
    after = session.get(f"{url}/databases/proxied-db/docs?id=x")
    assert after.status_code in (401, 403)


def test_the_header_sent_straight_to_roost_is_ignored_and_logged(proxied: Proxied) -> None:
    roost = proxied.roost
    forged = {"X-SSL-Client-Cert": escaped(roost.admin_pem)}
    user = roost.generate("proxied-direct-user")
    as_user = proxied.via(user.pem_path).get(f"{proxied.direct}/certificates/whoami", headers=forged)
    assert as_user.status_code == 200 and as_user.json()["Thumbprint"] == user.thumbprint
    anonymous = proxied.via(None).get(f"{proxied.direct}/admin/certificates", headers=forged)
    assert anonymous.status_code in (401, 403)
    line = roost.wait_for_output("Ignored X-SSL-Client-Cert")
    assert "not a trusted proxy" in line
    # Without the header the same direct client is logged nothing new: compare counts after a clean request.
    assert proxied.via(user.pem_path).get(f"{proxied.direct}/certificates/whoami").status_code == 200


def test_the_proxy_socket_has_the_configured_mode_and_an_open_mode_is_refused(proxied: Proxied, tmp_path: Path) -> None:
    mode = stat.S_IMODE(os.stat(proxied.socket_path).st_mode)
    assert stat.S_ISSOCK(os.stat(proxied.socket_path).st_mode) and mode == 0o660
    short = Path(tempfile.mkdtemp(prefix="rp-", dir="/tmp"))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "roost", "serve", "--data-dir", str(tmp_path / "data"), "--port", "0",
             f"--Security.TrustedProxy.Socket={short / 'p.sock'}", "--Security.TrustedProxy.SocketMode=666"],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "SocketMode" in result.stderr + result.stdout
        assert not (short / "p.sock").exists()
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_the_client_address_is_the_one_the_proxy_forwards(proxied: Proxied) -> None:
    roost = proxied.roost
    header = {"X-SSL-Client-Cert": escaped(roost.admin_pem), "X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    status, body = unix_request(proxied.socket_path, "GET", "/admin/security/allowed-ips", header)
    assert status == 200 and body["YourAddress"] == "203.0.113.7"  # the right-most: the one the proxy wrote
    via_nginx = proxied.via(roost.admin_pem).get(f"{proxied.url}/admin/security/allowed-ips",
                                                 headers={"X-Forwarded-For": "203.0.113.99"})
    assert via_nginx.json()["YourAddress"] == "127.0.0.1"  # nginx wrote $remote_addr over the client's own


def test_the_allowlist_applies_to_the_forwarded_address(proxied: Proxied) -> None:
    roost = proxied.roost
    admin_header = {"X-SSL-Client-Cert": escaped(roost.admin_pem)}
    admin = proxied.via(roost.admin_pem)
    changed = admin.put(f"{proxied.direct}/admin/security/allowed-ips", json={"AllowedIPs": ["127.0.0.1"]})
    assert changed.status_code == 200, changed.text
    try:
        outside, body = unix_request(proxied.socket_path, "GET", "/certificates/whoami",
                                     {**admin_header, "X-Forwarded-For": "203.0.113.7"})
        assert outside == 403 and body.get("Reason") == "AddressNotAllowed"
        unnamed, _ = unix_request(proxied.socket_path, "GET", "/certificates/whoami", admin_header)
        assert unnamed == 403  # a proxied request with no address is no allowed address
        inside, _ = unix_request(proxied.socket_path, "GET", "/certificates/whoami",
                                 {**admin_header, "X-Forwarded-For": "127.0.0.1"})
        assert inside == 200
    finally:
        assert admin.put(f"{proxied.direct}/admin/security/allowed-ips", json={"AllowedIPs": []}).status_code == 200


def test_a_malformed_forwarded_certificate_is_a_400_and_an_absent_one_is_anonymous(proxied: Proxied) -> None:
    status, body = unix_request(proxied.socket_path, "GET", "/certificates/whoami",
                                {"X-SSL-Client-Cert": "-----BEGIN%20CERTIFICATE-----%0Anope%0A"})
    assert status == 400 and "X-SSL-Client-Cert" in str(body.get("Message"))
    status, _ = unix_request(proxied.socket_path, "GET", "/admin/certificates")
    assert status in (401, 403)


def test_two_factor_applies_to_a_forwarded_certificate(proxied: Proxied) -> None:
    roost, url = proxied.roost, proxied.url
    secret = roost.admin().get(f"{roost.url}/admin/certificates/2fa/generate").json()["Secret"]
    cert = roost.generate("proxied-2fa", TwoFactorAuthenticationKey=secret)
    session = proxied.via(cert.pem_path)
    assert session.get(f"{url}/certificates/whoami").status_code == 428
    opened = session.post(f"{url}/authentication/2fa", params={"hasLimits": "false"},
                          json={"Token": pyotp.TOTP(secret).now()})
    assert opened.status_code == 202, opened.text
    assert session.get(f"{url}/certificates/whoami").status_code == 200


@pytest.fixture
def envoy_style(proxied: Proxied, tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    """A second node on the first one's CA, trusting a remote proxy by its certificate, reading Envoy's header."""
    proxy_cert = issue(roost_ca(proxied.roost.certs_dir), "edge-proxy").write_pem(tmp_path / "edge-proxy.pem")
    thumbprint = _thumbprint(proxy_cert)
    roost = start_server(tmp_path / "data", f"--Security.Ca.Path={proxied.roost.certs_dir}",
                         "--Security.TrustedProxy.Header=X-Forwarded-Client-Cert",
                         f"--Security.TrustedProxy.Thumbprints={thumbprint}")
    yield roost, proxy_cert
    roost.stop()


def _thumbprint(pem_path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    return x509.load_pem_x509_certificate(pem_path.read_bytes()).fingerprint(hashes.SHA1()).hex().upper()


def test_a_proxy_trusted_by_its_certificate_forwards_envoys_header_and_others_are_ignored(
    envoy_style: tuple[RunningServer, Path],
) -> None:
    roost, proxy_cert = envoy_style
    admin_cert = quote(roost.admin_pem.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n",
                       safe="")
    reader = roost.generate("envoy-reader")
    xfcc = (f'By=spiffe://cluster/edge;Hash=ab12;Subject="CN=reader";Cert="{escaped(reader.pem_path)}",'
            f'By=spiffe://cluster/roost;Hash=cd34;Subject="CN=admin, O=x";Cert="{admin_cert}"')
    # The listed proxy: the last element (the one the nearest proxy added) is the client.
    via_proxy = roost.session(proxy_cert).get(f"{roost.url}/certificates/whoami",
                                              headers={"X-Forwarded-Client-Cert": xfcc})
    assert via_proxy.status_code == 200 and via_proxy.json()["SecurityClearance"] == "ClusterAdmin"
    # The proxy's own certificate forwards nothing when it sends no header: it is not registered, so it is refused.
    alone = roost.session(proxy_cert).get(f"{roost.url}/admin/certificates")
    assert alone.status_code in (401, 403)
    # Anyone else's header is ignored: the reader stays the reader.
    ignored = roost.session(reader.pem_path).get(f"{roost.url}/admin/certificates",
                                                 headers={"X-Forwarded-Client-Cert": xfcc})
    assert ignored.status_code == 403
    # The nginx header means nothing on a server configured for Envoy's.
    other = roost.session(proxy_cert).get(f"{roost.url}/admin/certificates",
                                          headers={"X-SSL-Client-Cert": admin_cert})
    assert other.status_code in (401, 403)
    broken = roost.session(proxy_cert).get(f"{roost.url}/certificates/whoami",
                                           headers={"X-Forwarded-Client-Cert": 'By=x;Cert="%2D%2Dnot-pem"'})
    assert broken.status_code == 400


def test_workers_share_the_proxy_socket(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="rp-", dir="/tmp"))
    socket_path = short / "proxy.sock"
    roost = start_server(tmp_path / "data", "--workers", "2", f"--Security.TrustedProxy.Socket={socket_path}")
    try:
        header = {"X-SSL-Client-Cert": escaped(roost.admin_pem)}
        statuses = {unix_request(socket_path, "GET", "/certificates/whoami", header)[0] for _ in range(20)}
        assert statuses == {200}
        user = roost.generate("workers-proxied")
        user_header = {"X-SSL-Client-Cert": escaped(user.pem_path)}
        assert unix_request(socket_path, "GET", "/certificates/whoami", user_header)[0] == 200
        assert roost.admin().delete(f"{roost.url}/admin/certificates?thumbprint={user.thumbprint}").status_code == 204
        after = {unix_request(socket_path, "GET", "/admin/databases", user_header)[0] for _ in range(10)}
        assert after <= {401, 403}
    finally:
        roost.stop()
        shutil.rmtree(short, ignore_errors=True)
