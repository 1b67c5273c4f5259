"""nginx as the baseline of figures 3 and 5: one worker, TLS, `ssl_verify_client optional_no_ca`.

Everything nginx writes (pid, logs, temp dirs) lives in a temporary directory; the config is generated;
no root-owned path is touched. The master and its worker are pinned to the server core.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .common import SERVER_CORE, free_port, pinned, process_tree, wait_for_port

# The body is the size and shape of a small Roost document GET answer.
FIXED_BODY = json.dumps(
    {"Results": [{"Name": "bench", "Value": 42, "@metadata": {"@collection": "Bench", "@id": "bench/1"}}],
     "Includes": {}},
    separators=(",", ":"),
)

CONFIG = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{
    worker_connections 4096;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    {site}
}}
"""

FIXED_SITE = """\
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client optional_no_ca;
        {sessions}
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
"""


def deployment_site(port: int, proxy_socket: Path, cert: Path, key: Path) -> str:
    """The nginx site block of docs/deployment.md, as written there, with the port and paths replaced."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text()
    match = re.search(r"<!-- nginx-site -->\n```nginx\n(.*?)```", text, re.S)
    if match is None:
        raise RuntimeError("docs/deployment.md lost its nginx site block")
    site = match.group(1)
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"), ("/run/roost/proxy.sock", str(proxy_socket)),
                     ("/etc/roost/tls/server.crt", str(cert)), ("/etc/roost/tls/server.key", str(key))):
        if old not in site:
            raise RuntimeError(f"docs/deployment.md's nginx block no longer holds {old!r}")
        site = site.replace(old, new)
    return site


class Nginx:
    """``with Nginx(cert, key) as n: n.url`` -- a pinned nginx answering a fixed JSON body."""

    def __init__(self, cert: Path, key: Path, *, core: int = SERVER_CORE, resumption: bool = False,
                 proxy_socket: Path | None = None, port: int = 0) -> None:
        # Full handshakes only unless asked (figure 5's resumed row): then TLS 1.3 tickets, as Roost issues them.
        self.sessions = ("ssl_session_tickets on; ssl_session_cache shared:bench:10m;" if resumption
                         else "ssl_session_cache off; ssl_session_tickets off;")
        self.cert = Path(cert).resolve()
        self.key = Path(key).resolve()
        self.core = core
        self.proxy_socket = proxy_socket  # in front of Roost's proxy socket, with docs/deployment.md's site block
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/"

    @property
    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    def start(self) -> Nginx:
        binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if binary is None:
            raise RuntimeError("the nginx baseline needs nginx: apt-get install nginx-light")
        self._tmp = tempfile.TemporaryDirectory(prefix="roost-bench-nginx-")
        tmp = Path(self._tmp.name)
        # Copy the key material in so that a worker that drops privileges can still find the paths.
        cert, key = tmp / "server.crt", tmp / "server.key"
        shutil.copyfile(self.cert, cert)
        shutil.copyfile(self.key, key)
        self.port = self.port or free_port()
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = tmp / "nginx.conf"
        if self.proxy_socket is not None:
            site = deployment_site(self.port, self.proxy_socket, cert, key)
        else:
            site = FIXED_SITE.format(port=self.port, cert=cert, key=key, body=FIXED_BODY, sessions=self.sessions)
        conf.write_text(CONFIG.format(dir=tmp, user=user, site=site))
        cmd = [binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
        self.proc = subprocess.Popen(pinned(cmd, self.core), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, proc=self.proc)  # type: ignore[arg-type]
            # CPU accounting needs the worker too: wait until the master has forked it.
            deadline = time.monotonic() + 10
            while len(self.pids) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        except RuntimeError as e:
            log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
            self.stop()
            raise RuntimeError(f"nginx did not start: {e}\n{log}") from e
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown of master and worker
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
