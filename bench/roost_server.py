"""A real Roost server process for the benchmarks: `roost serve --data-dir DIR --port 0`."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .common import ALL_CORES, SERVER_CORE, pinned, process_tree, rss_bytes

READY = re.compile(rb"Server available on:\s*(https://\S+)")
BARE = re.compile(rb"Bare route on:\s*(https://\S+)")


class RoostServer:
    """Start Roost on a free port (pinned to the server core unless ``core`` is None) and wait until ready."""

    def __init__(
        self,
        data_dir: Path,
        *,
        core: int | None = SERVER_CORE,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        timeout: float = 120.0,
        bare: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.core = core
        self.env = dict(env or {})
        self.args = list(args)
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.bare = bare  # bench.bare_server instead of roost serve: the product plus the bench-only bare app
        self.bare_url = ""
        self.start_seconds = 0.0
        self.output = b""

    @property
    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    def rss(self) -> int:
        assert self.proc is not None
        return rss_bytes(self.proc.pid)

    def start(self) -> RoostServer:
        if self.bare:
            cmd = [sys.executable, "-m", "bench.bare_server", "--data-dir", str(self.data_dir), *self.args]
        else:
            cmd = [sys.executable, "-m", "roost", "serve", "--data-dir", str(self.data_dir), "--port", "0", *self.args]
        cmd = pinned(cmd, ALL_CORES if self.core is None else self.core)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        buf = b""
        while True:
            m = READY.search(buf)
            if m:
                self.start_seconds = time.perf_counter() - t0
                self.url = m.group(1).decode().rstrip("/")
                if (bare := BARE.search(buf)) is not None:
                    self.bare_url = bare.group(1).decode().rstrip("/")
                break
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"roost serve did not become ready:\n{buf.decode(errors='replace')[-3000:]}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk and self.proc.poll() is not None:
                    continue
                buf += chunk
        self.output = buf
        # Keep draining the server's output so that it never blocks on a full pipe.
        import threading

        def drain() -> None:
            try:
                while os.read(fd, 65536):
                    pass
            except OSError:
                pass

        threading.Thread(target=drain, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> RoostServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
