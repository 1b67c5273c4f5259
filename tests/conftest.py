"""Real servers for real tests: every integration test talks HTTPS to a ``roost serve`` process."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
if str(ROOT) not in sys.path:  # tests that drive bench/'s helpers (nginx in front of Roost) import them as `bench`
    sys.path.insert(0, str(ROOT))
# Node.js (Playwright's driver, the RavenDB Node client) reads extra CAs from this; a machine that sets it to a file
# the tests cannot read, or to a corporate proxy's CA, made the browser tests fail. The tests bring their own CAs.
os.environ.pop("NODE_EXTRA_CA_CERTS", None)
# requests lets these variables override a session's own `verify` (and the RavenDB client sets only that), so a
# machine-wide bundle would hide Roost's CA from every test client. Tests name their trust store explicitly.
for _variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_variable, None)


@dataclass
class ClientCertificate:
    name: str
    pem_path: Path  # certificate + unencrypted key
    thumbprint: str
    package: bytes = b""


@dataclass
class RunningServer:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def certs_dir(self) -> Path:
        return self.data_dir / "certificates"

    @property
    def admin_pem(self) -> Path:
        return self.certs_dir / "admin.client.pem"

    @property
    def ca_pem(self) -> Path:
        return self.certs_dir / "ca.crt"

    def session(self, pem: Path | None = None) -> requests.Session:
        """A requests session presenting ``pem`` (default: the admin certificate), verifying the server."""
        session = requests.Session()
        if self.url.startswith("https"):
            session.verify = str(self.ca_pem)
            if pem is not None:
                session.cert = str(pem)
        return session

    def admin(self) -> requests.Session:
        return self.session(self.admin_pem)

    def generate(self, name: str, clearance: str = "ValidUser", permissions: dict[str, str] | None = None,
                 *, via: requests.Session | None = None, directory: Path | None = None, **extra: Any) -> ClientCertificate:
        """Generate a client certificate through the API and keep it as a PEM file, as a user would."""
        session = via or self.admin()
        body = {"Name": name, "SecurityClearance": clearance, "Permissions": permissions or {}, **extra}
        response = session.post(f"{self.url}/admin/certificates", json=body)
        assert response.status_code == 200, response.text
        return unpack_package(response.content, name, directory or self.data_dir.parent)

    def wait_for_output(self, fragment: str, timeout: float = 10.0) -> str:
        """The first output line containing ``fragment`` (lines after the ready line arrive asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                if fragment in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no output line contains {fragment!r}: {self.output}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def unpack_package(package: bytes, name: str, directory: Path, password: str | None = None) -> ClientCertificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        crt = archive.read(f"{name}.crt")
        key = archive.read(f"{name}.key")
    if password:
        private = serialization.load_pem_private_key(key, password.encode())
        key = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    pem_path = directory / f"{safe}-{time.monotonic_ns()}.pem"
    pem_path.write_bytes(crt + key)
    pem_path.chmod(0o600)
    thumbprint = x509.load_pem_x509_certificate(crt).fingerprint(hashes.SHA1()).hex().upper()
    return ClientCertificate(name, pem_path, thumbprint, package)


EVENT_LOOP = os.environ.get("TEST_EVENT_LOOP", "asyncio")


def start_server(data_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180.0,
                 port: int = 0) -> RunningServer:
    """Start ``roost serve`` and wait for its 'Server available on:' line."""
    command = [sys.executable, "-m", "roost", "serve", "--data-dir", str(data_dir), "--port", str(port), *args]
    if EVENT_LOOP != "asyncio":  # TEST_EVENT_LOOP=uvloop runs the server on uvloop (.ci/run does, for TLS)
        command.append(f"--Server.EventLoop={EVENT_LOOP}")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert process.stdout is not None
    output: list[str] = []
    # A reader thread from the first byte: select() on the pipe cannot see lines already sitting in the
    # TextIOWrapper's buffer, so two lines arriving in one chunk (a warning and the ready line) would hang.
    pump = _drain(process, output)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(output):
            if line.startswith("Server available on: "):
                url = line.split(": ", 1)[1].strip()
                port_number = int(url.rsplit(":", 1)[1])
                return RunningServer(url, port_number, data_dir, process, output)
        if process.poll() is not None and not pump.is_alive():
            break
        time.sleep(0.02)
    process.kill()
    pump.join(timeout=5)
    raise RuntimeError("roost serve did not start:\n" + "\n".join(output))


def _drain(process: subprocess.Popen[str], output: list[str]) -> threading.Thread:
    """Keep reading the server's output in the background so that it never blocks on a full pipe."""

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("roost") / "data")
    yield running
    running.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "data")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> requests.Session:
    return server.admin()


# PostgreSQL -------------------------------------------------------------------------------------------------------

# The server every PostgreSQL test uses; each test gets a database of its own in it, dropped afterwards.
POSTGRES_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres(statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_SERVER_URL, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def postgres_database_url(name: str) -> str:
    base, _, _ = POSTGRES_SERVER_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test alone. Skips when the server is unreachable, except under CI."""
    import uuid

    name = f"roost_test_{uuid.uuid4().hex[:16]}"
    try:
        _postgres(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError) as exc:
        if IN_CI:
            raise AssertionError(f"PostgreSQL at {POSTGRES_SERVER_URL} is unreachable under CI=true: {exc}") from exc
        pytest.skip(f"PostgreSQL at {POSTGRES_SERVER_URL} is unreachable ({exc}); CI runs these tests")
    try:
        yield postgres_database_url(name)
    finally:
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
