"""``roost serve --workers N``: N worker processes accepting on one listening socket, supervised by the parent.

The parent binds the socket (so every worker has the same port, and the kernel hands each new connection to one
worker), starts the first worker and waits until it is ready (it creates the CA, the server certificate and the
initial client certificate on a first start, under their directory's lock), then the others. It prints one
``Server available on:`` line, restarts a worker that dies, and stops every worker when it is stopped.

Each worker is an ordinary ``roost serve`` process (its own event loop, storage connection and TLS context) that
listens on the inherited socket: what one worker changes, the others see on their next request (SQLite:
``roost.cluster.changes``; PostgreSQL: the storage's notifications, as between nodes).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from roost.errors import ConfigurationError
from roost.pki import datadir
from roost.security import proxy
from roost.security.allowlist import AllowList, listening_socket
from roost.settings import Settings

# How the parent hands a worker its socket and its readiness pipe (file descriptors inherited across exec).
SOCKET_FD_ENV = "ROOSTWORKER_SOCKET_FD"  # not ROOST_: those are settings
PROXY_FD_ENV = "ROOSTWORKER_PROXY_FD"  # Security.TrustedProxy.Socket, bound once by the parent
READY_FD_ENV = "ROOSTWORKER_READY_FD"
INDEX_ENV = "ROOSTWORKER_INDEX"  # 0 for the worker that runs the scheduled tasks (kept by its replacement)
MAX_WORKERS = 256
READY_SECONDS = 120.0
STOP_SECONDS = 15.0
RESPAWN_PAUSE_SECONDS = 1.0  # a worker that dies at once is not restarted in a tight loop
_PR_SET_PDEATHSIG = 1


def parse_workers(value: str | None) -> int:
    """``--workers``: a count from 1, or ``auto`` (one per core)."""
    if value is None:
        return 1
    text = value.strip().lower()
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise ConfigurationError(f"--workers must be a number from 1 to {MAX_WORKERS} or 'auto', not {value!r}.")
    return int(text)


def worker_socket_fd() -> int | None:
    """The inherited listening socket when this process is a worker, else None."""
    value = os.environ.get(SOCKET_FD_ENV)
    return int(value) if value and value.isdigit() else None


def worker_proxy_fd() -> int | None:
    """The inherited trusted-proxy Unix socket when this process is a worker and one is configured, else None."""
    value = os.environ.get(PROXY_FD_ENV)
    return int(value) if value and value.isdigit() else None


def runs_schedules() -> bool:
    """Scheduled backups and the renewal check run in one worker (index 0), or in the one process."""
    return os.environ.get(INDEX_ENV, "0") == "0"


def report_ready(url: str, warnings: list[str]) -> None:
    """Called by a worker once it listens: tells the parent (one JSON line on the readiness pipe)."""
    value = os.environ.get(READY_FD_ENV)
    if not value or not value.isdigit():
        return
    with contextlib.suppress(OSError):
        os.write(int(value), (json.dumps({"Url": url, "Warnings": warnings}) + "\n").encode())
        os.close(int(value))


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    ready_fd: int  # the parent's reading end
    started: float
    index: int


class Supervisor:
    def __init__(self, settings: Settings, command: list[str], count: int, echo: Callable[[str], None]) -> None:
        self._settings = settings
        self._command = command  # the worker's ``roost serve ...`` command line (without --workers)
        self._count = count
        self._echo = echo
        self._workers: list[_Worker] = []
        self._stopping = False
        self._sock_fd = -1
        self._proxy_fd: int | None = None

    def run(self, ignored: list[str]) -> None:
        settings = self._settings
        if settings.run_in_memory:
            raise ConfigurationError("--workers needs a data directory the workers share: it cannot be used with "
                                     "RunInMemory=true.")
        host = "127.0.0.1" if settings.host == "localhost" else settings.host
        try:
            # The parent never accepts: the allowlist is enforced by each worker at its accept().
            sock = listening_socket(host, settings.port, AllowList())
        except OSError as exc:
            raise ConfigurationError(f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror}.") from exc
        sock.set_inheritable(True)
        self._sock_fd = sock.fileno()
        proxy_sock = None
        if settings.trusted_proxy_socket is not None:
            proxy_sock = proxy.bind_socket(settings.trusted_proxy_socket, settings.trusted_proxy_socket_mode)
            proxy_sock.set_inheritable(True)
            self._proxy_fd = proxy_sock.fileno()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request_stop)
        try:
            first = self._spawn(0)
            report = self._wait_ready(first)  # alone: a first start creates the certificates once
            rest = [self._spawn(index) for index in range(1, self._count)]
            for worker in rest:
                self._wait_ready(worker)
            self._banner(report, ignored)
            self._supervise()
        finally:
            self._stop_all()
            sock.close()
            if proxy_sock is not None:
                proxy_sock.close()

    def _request_stop(self, _signum: int, _frame: object) -> None:
        self._stopping = True

    def _spawn(self, index: int) -> _Worker:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, SOCKET_FD_ENV: str(self._sock_fd), READY_FD_ENV: str(write_fd), INDEX_ENV: str(index)}
        fds = [self._sock_fd, write_fd]
        if self._proxy_fd is not None:
            env[PROXY_FD_ENV] = str(self._proxy_fd)
            fds.append(self._proxy_fd)
        process = subprocess.Popen(self._command, env=env, pass_fds=fds,
                                   preexec_fn=_die_with_parent)
        os.close(write_fd)
        worker = _Worker(process, read_fd, time.monotonic(), index)
        self._workers.append(worker)
        self._echo(f"Worker started (pid {process.pid})")
        return worker

    def _wait_ready(self, worker: _Worker) -> dict[str, object]:
        deadline = time.monotonic() + READY_SECONDS
        data = b""
        while not self._stopping and time.monotonic() < deadline:
            readable, _, _ = select.select([worker.ready_fd], [], [], 0.2)
            if readable:
                chunk = os.read(worker.ready_fd, 65536)
                data += chunk
                if not chunk or data.endswith(b"\n"):
                    break
        _close_ready(worker)
        if not data.endswith(b"\n"):
            raise ConfigurationError(f"Worker {worker.process.pid} did not start; see its messages above.")
        report: dict[str, object] = json.loads(data)
        return report

    def _banner(self, report: dict[str, object], ignored: list[str]) -> None:
        from roost.server import startup_lines

        settings = self._settings
        warnings = report.get("Warnings")
        initial = datadir.existing_initial_client(settings.certificates_dir) if settings.secured else None
        for line in startup_lines(settings, str(report["Url"]), ignored,
                                  [str(w) for w in warnings] if isinstance(warnings, list) else [], initial,
                                  extra=[f"{self._count} workers share the listening socket"]):
            self._echo(line)

    def _supervise(self) -> None:
        while not self._stopping:
            time.sleep(0.1)
            for index, worker in enumerate(self._workers):
                code = worker.process.poll()
                if code is None or self._stopping:
                    continue
                self._echo(f"Worker {worker.process.pid} exited with code {code}; starting a new one")
                if time.monotonic() - worker.started < RESPAWN_PAUSE_SECONDS:
                    time.sleep(RESPAWN_PAUSE_SECONDS)
                _close_ready(worker)
                self._workers.pop(index)
                _close_ready(self._spawn(worker.index))  # serving as soon as it listens; nothing to wait for
                break

    def _stop_all(self) -> None:
        for worker in self._workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in self._workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


def _close_ready(worker: _Worker) -> None:
    if worker.ready_fd >= 0:
        os.close(worker.ready_fd)
        worker.ready_fd = -1


def _die_with_parent() -> None:
    """In the child before exec: a worker gets SIGTERM if the parent dies without stopping it (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def serve_workers(settings: Settings, ignored: list[str], command: list[str], count: int,
                  echo: Callable[[str], None]) -> None:
    Supervisor(settings, command, count, echo).run(ignored)


def worker_command(serve_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "roost", "serve", *serve_args]
