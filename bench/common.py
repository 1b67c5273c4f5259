"""Shared plumbing: the result table, CPU pinning, free ports, process CPU accounting, the load generator."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"
LOADGEN_SRC = BENCH_DIR / "loadgen"
LOADGEN_BIN = WORK_DIR / "loadgen"

SERVER_CORE = 0
CLIENT_CORE = 1

# On a shared machine the measured processes (servers, nginx, load generator, this process) run at a higher
# priority than everything else, so that they get the cores they are pinned to, as on a quiet machine. Both
# sides of every ratio get the same priority. ROOST_BENCH_NICE=0 turns it off; only root may raise priority.
NICE = int(os.environ.get("ROOST_BENCH_NICE", "-10" if os.geteuid() == 0 else "0"))


@dataclass
class Row:
    """One line of the result table. ``ratio`` is value / baseline when there is a baseline."""

    figure: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    ratio: float | None = None
    details: dict[str, object] = field(default_factory=dict)

    def status(self) -> str:
        if self.passed is None:
            return "record" if self.value is not None else "n/a"
        return "pass" if self.passed else "MISS"


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        s = f"{x:,.0f}"
    elif abs(x) >= 100:
        s = f"{x:.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    elif abs(x) >= 0.1:
        s = f"{x:.2f}"
    else:
        s = f"{x:.3f}"
    return f"{s} {unit}".rstrip()


def render_table(rows: Sequence[Row]) -> str:
    header = ("fig", "figure", "value", "baseline", "ratio", "target", "result")
    lines = [
        (
            r.figure,
            r.name,
            _fmt(r.value, r.unit),
            _fmt(r.baseline, r.unit),
            "-" if r.ratio is None else f"{r.ratio:.3f}",
            r.target or "-",
            r.status(),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]

    def fmt_line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt_line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt_line(line) for line in lines]
    notes = [f"  [{r.figure}] {r.name}: {r.note}" for r in rows if r.note]
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


def can_pin() -> bool:
    return shutil.which("taskset") is not None and os.cpu_count() is not None and os.cpu_count() >= 2  # type: ignore[operator]


ALL_CORES = "all"


def pinned(cmd: Sequence[str], core: int | str) -> list[str]:
    """Prefix ``cmd`` with ``taskset -c core`` when the machine has the cores to pin to.

    ``ALL_CORES`` un-pins: children inherit the affinity of the bench process, which sits on the client core.
    """
    if core == ALL_CORES:
        core = f"0-{(os.cpu_count() or 1) - 1}"
    relative = NICE - os.nice(0)  # nice(1) is relative to this process, which may already run at NICE
    prefix = ["nice", "-n", str(relative)] if NICE and relative else []
    if can_pin():
        return [*prefix, "taskset", "-c", str(core), *cmd]
    return [*prefix, *cmd]


def pin_self_to_client_core() -> None:
    """The bench process itself (its HTTP clients) runs on the client core, never on the server's."""
    if can_pin():
        os.sched_setaffinity(0, {CLIENT_CORE})
    if NICE and os.nice(0) > NICE:
        os.nice(NICE - os.nice(0))


def unpin_self() -> None:
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    i = 0
    while i < len(pids):
        pids += _children(pids[i])
        i += 1
    return pids


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds consumed so far by the given processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def build_loadgen() -> Path:
    """Build the Go load generator into bench/.work (stdlib only: no network, works as root)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    sources = sorted(LOADGEN_SRC.glob("*.go")) + [LOADGEN_SRC / "go.mod"]
    newest = max(p.stat().st_mtime for p in sources)
    if LOADGEN_BIN.exists() and LOADGEN_BIN.stat().st_mtime >= newest:
        return LOADGEN_BIN
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the load generator needs Go: apt-get install golang-go")
    env = {
        **os.environ,
        "GOCACHE": str(WORK_DIR / "gocache"),
        "GOPATH": str(WORK_DIR / "gopath"),
        "GOENV": "off",  # no user config file: works without $HOME, as root on a fresh machine
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    subprocess.run([go, "build", "-o", str(LOADGEN_BIN), "."], cwd=LOADGEN_SRC, env=env, check=True)
    return LOADGEN_BIN


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    non_2xx: int
    seconds: float
    client_cpu: float
    server_cpu: float
    first_error: str = ""
    resumed: int = 0  # handshakes that resumed a session (mode "resume")

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.errors == 0 and self.non_2xx == 0


def run_load(
    url: str,
    *,
    cert: Path,
    key: Path,
    ca: Path | None,
    mode: str = "keepalive",
    connections: int = 16,
    duration: float | None = None,
    requests: int | None = None,
    warmup: float = 0.0,
    server_pids: Sequence[int] = (),
) -> LoadResult:
    """Run the Go load generator pinned to the client core; returns its JSON plus CPU use of both sides.

    ``client_cpu`` and ``server_cpu`` are CPU seconds per wall second of the measured run (1.0 = one core
    busy), so a reader can tell whether the server or the load generator was the bottleneck.
    """
    binary = build_loadgen()
    cmd = [str(binary), "-url", url, "-cert", str(cert), "-key", str(key), "-mode", mode, "-c", str(connections)]
    if ca is not None:
        cmd += ["-ca", str(ca)]
    if duration is not None:
        cmd += ["-d", f"{duration}s"]
    else:
        cmd += ["-n", str(requests or 1000)]
    if warmup:
        cmd += ["-warmup", f"{warmup}s"]
    before_server = cpu_seconds(server_pids)
    t_warm_end = time.monotonic() + warmup
    proc = subprocess.Popen(pinned(cmd, CLIENT_CORE), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if warmup:
        # Server CPU is sampled from the end of the warm-up, the client's from its own rusage (whole run).
        time.sleep(max(0.0, t_warm_end - time.monotonic()))
        before_server = cpu_seconds(server_pids)
    pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    after_server = cpu_seconds(server_pids)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.decode(errors='replace')}")
    data = json.loads(out)
    secs = float(data["seconds"])
    client_cpu = (usage.ru_utime + usage.ru_stime) / max(secs + warmup, 1e-9)
    return LoadResult(
        rps=float(data["rps"]),
        p50_ms=float(data["p50_ms"]),
        p90_ms=float(data["p90_ms"]),
        p99_ms=float(data["p99_ms"]),
        requests=int(data["requests"]),
        errors=int(data["errors"]),
        non_2xx=int(data["non_2xx"]),
        seconds=secs,
        client_cpu=client_cpu,
        server_cpu=(after_server - before_server) / max(secs, 1e-9),
        first_error=str(data.get("first_error", "")),
        resumed=int(data.get("resumed", 0)),
    )
