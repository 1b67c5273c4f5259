"""The seven figures of issue 7. Each figure is a function of the run's Context and returns table rows."""

from __future__ import annotations

import importlib.util
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from .common import LoadResult, Row, free_port, pin_self_to_client_core, run_load
from .nginx import Nginx
from .proxied import figure_12
from .throwaway_pki import CertSet, make_cert_set


class Context:
    """What the figures share in one run: sizes, a scratch directory, certificates."""

    def __init__(self, *, smoke: bool, keep: bool = False) -> None:
        self.smoke = smoke
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="roost-bench-"))
        self._certs: CertSet | None = None
        pin_self_to_client_core()
        # Sizes: (smoke, full).
        self.load_seconds = 0.5 if smoke else 8.0
        self.warmup_seconds = 0.0 if smoke else 2.0

    @property
    def certs(self) -> CertSet:
        if self._certs is None:
            self._certs = make_cert_set(self.tmp / "throwaway-pki")
        return self._certs

    def scratch(self, name: str) -> Path:
        p = self.tmp / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def load(self, url: str, *, cert: Path, key: Path, ca: Path | None, mode: str, pids: list[int],
             connections: int = 16) -> LoadResult:
        return run_load(url, cert=cert, key=key, ca=ca, mode=mode, connections=connections,
                        duration=self.load_seconds, warmup=self.warmup_seconds, server_pids=pids)

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.keep:
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _load_details(r: LoadResult) -> dict[str, object]:
    return {
        "rps": round(r.rps), "p50_ms": round(r.p50_ms, 3), "p99_ms": round(r.p99_ms, 3), "requests": r.requests,
        "errors": r.errors, "non_2xx": r.non_2xx, "server_cpu": round(r.server_cpu, 2),
        "client_cpu": round(r.client_cpu, 2), **({"first_error": r.first_error} if r.first_error else {}),
    }


def _ratio_row(fig: str, name: str, roost: LoadResult, base: LoadResult, target: float,
               unit: str = "req/s", note: str = "") -> Row:
    ratio = roost.rps / base.rps if base.rps else None
    ok = ratio is not None and roost.ok and base.ok
    cpu = ""
    if roost.server_cpu and base.server_cpu:
        cpu_ratio = (roost.rps / roost.server_cpu) / (base.rps / base.server_cpu)
        cpu = (f"per server CPU-second {cpu_ratio:.3f}; server CPU used: Roost {roost.server_cpu:.2f}, "
               f"nginx {base.server_cpu:.2f}; load generator CPU with nginx {base.client_cpu:.2f}")
    return Row(fig, name, roost.rps, unit, baseline=base.rps, ratio=ratio, target=f">= {target}",
               passed=ok and ratio >= target if ratio is not None else None,
               note="; ".join(x for x in (note, cpu) if x),
               details={"roost": _load_details(roost), "nginx": _load_details(base)})


def _aiohttp_floor(ctx: Context, cert: Path, key: Path, client_cert: Path, client_key: Path, ca: Path,
                   mode: str, loop: str = "asyncio") -> LoadResult:
    """A minimal aiohttp app on Roost's TLS context and the given event loop, pinned like Roost
    (see bench/aiohttp_floor.py)."""
    import subprocess
    import sys

    from .common import BENCH_DIR, SERVER_CORE, pinned, process_tree, wait_for_port

    port = free_port()
    cmd = [sys.executable, "-m", "bench.aiohttp_floor", str(cert), str(key), str(ca), str(port), loop]
    proc = subprocess.Popen(pinned(cmd, SERVER_CORE), cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=proc)  # type: ignore[arg-type]
        return ctx.load(f"https://localhost:{port}/", cert=client_cert, key=client_key, ca=ca, mode=mode,
                        pids=process_tree(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _per_cpu(r: LoadResult) -> float:
    return r.rps / max(r.server_cpu, 1e-9)


def _uvloop_note(on_uvloop: LoadResult, floor: LoadResult, roost: LoadResult) -> str:
    return (f"per server CPU-second {_per_cpu(on_uvloop) / max(_per_cpu(floor), 1e-9):.3f}; Roost on uvloop / "
            f"Roost on asyncio, per CPU {_per_cpu(on_uvloop) / max(_per_cpu(roost), 1e-9):.3f}")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def _nginx_vs_roost(ctx: Context, mode: str) -> tuple[LoadResult, LoadResult]:
    """nginx and Roost with the same server certificate, the same client certificate and the same pinning."""
    from . import roost_bench

    with roost_bench.prepared_server(ctx) as s:
        with Nginx(s.server_cert, s.server_key, resumption=mode == "resume") as n:
            base = ctx.load(n.url, cert=s.client_cert, key=s.client_key, ca=s.ca, mode=mode, pids=n.pids)
        roost = ctx.load(s.doc_url, cert=s.client_cert, key=s.client_key, ca=s.ca, mode=mode, pids=s.server.pids)
    return base, roost


def _floor_row(fig: str, loop: str, floor: LoadResult, base: LoadResult, unit: str) -> Row:
    per_cpu = (floor.rps / max(floor.server_cpu, 1e-9)) / (base.rps / max(base.server_cpu, 1e-9))
    return Row(fig, f"  floor: bare aiohttp on {loop}, Roost's TLS context, vs nginx", floor.rps, unit,
               baseline=base.rps, ratio=floor.rps / base.rps if base.rps else None,
               note=f"the ceiling for any aiohttp server on {loop} here; per server CPU-second {per_cpu:.3f}",
               details={"floor": _load_details(floor), "loop": loop})


# The event loop Roost runs on (roost.server: asyncio; see docs/performance.md, "uvloop"): the floor Roost is
# measured against is the bare app on that same loop.
ROOST_LOOP = "asyncio"


def _with_floor(ctx: Context, fig: str, mode: str, target: float, name: str, unit: str,
                floor_target: float | None = None) -> list[Row]:
    from . import roost_bench

    base, roost = _nginx_vs_roost(ctx, mode)
    rows = [_ratio_row(fig, name, roost, base, target, unit=unit)]
    s = roost_bench.prepared_server(ctx)  # already prepared: only its files are used
    loops = ["asyncio", "uvloop"] if uvloop_available() else ["asyncio"]
    floors = {loop: _aiohttp_floor(ctx, s.server_cert, s.server_key, s.client_cert, s.client_key, s.ca, mode,
                                   loop) for loop in loops}
    for loop, floor in floors.items():
        rows.append(_floor_row(f"{fig}b", loop, floor, base, unit))
    if "uvloop" in floors:
        with roost_bench.setup(ctx, "roost-main", args=("--Server.EventLoop=uvloop",)) as su:
            on_uvloop = ctx.load(su.doc_url, cert=su.client_cert, key=su.client_key, ca=su.ca, mode=mode,
                                 pids=su.server.pids)
        rows.append(Row(f"{fig}b", "  Roost on uvloop (Server.EventLoop=uvloop), vs nginx", on_uvloop.rps, unit,
                        baseline=base.rps, ratio=on_uvloop.rps / base.rps if base.rps else None,
                        details={"roost_uvloop": _load_details(on_uvloop)}))
        rows.append(Row(f"{fig}b", "  Roost on uvloop vs the uvloop floor", on_uvloop.rps, unit,
                        baseline=floors["uvloop"].rps,
                        ratio=on_uvloop.rps / floors["uvloop"].rps if floors["uvloop"].rps else None,
                        note=_uvloop_note(on_uvloop, floors["uvloop"], roost)))
    own = floors[ROOST_LOOP]
    if own.rps:
        ratio = roost.rps / own.rps
        rows.append(Row(f"{fig}b", f"  Roost vs the floor of its own stack ({ROOST_LOOP})", roost.rps, unit,
                        baseline=own.rps, ratio=ratio,
                        target=f">= {floor_target}" if floor_target is not None else "",
                        passed=(ratio >= floor_target and roost.ok and own.ok)
                        if floor_target is not None else None,
                        note="how much of the gap to nginx is Roost's own work; per server CPU-second "
                             f"{_per_cpu(roost) / max(_per_cpu(own), 1e-9):.3f}"))
    return rows


def figure_3(ctx: Context) -> list[Row]:
    """Keep-alive throughput of an authenticated document GET over mutual TLS vs nginx (3b: the floors)"""
    return _with_floor(ctx, "3", "keepalive", 0.20, "keep-alive GET, 16 conns, vs nginx", "req/s",
                       floor_target=0.85)


def figure_5(ctx: Context) -> list[Row]:
    """Full TLS handshakes per second (a new connection per request) vs nginx, and resumed ones (TLS 1.3 tickets)"""
    rows = _with_floor(ctx, "5", "newconn", 0.45, "full handshakes/s, vs nginx", "conn/s")
    base, roost = _nginx_vs_roost(ctx, "resume")
    row = _ratio_row("5", "resumed handshakes/s (TLS 1.3 tickets), vs nginx", roost, base, 0.45, unit="conn/s")
    resumed = f"resumed: nginx {base.resumed} of {base.requests}, Roost {roost.resumed} of {roost.requests}"
    row.note = "; ".join(x for x in (resumed, "revocation on a resumed session: tests/test_authentication.py::"
                                     "test_deleted_certificate_is_refused_on_a_resumed_tls_session", row.note) if x)
    row.target, row.passed = "", None
    rows.append(row)
    return rows


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def _roost_figure(n: int) -> Callable[[Context], list[Row]]:
    def run(ctx: Context) -> list[Row]:
        from . import roost_bench

        return getattr(roost_bench, f"figure_{n}")(ctx)  # type: ignore[no-any-return]

    run.__doc__ = {
        1: "Certificate issuance time by key type, against RSA-4096",
        2: "Event-loop stall: GET p99 while 8 RSA-4096 generations run, against idle",
        4: "Cost of security per request: the security path against the same app without it (bench/bare_server.py)",
        6: "Registry scale: 100,000 registered certificates",
        7: "Documents: bulk_docs inserts per second and single-document load latency",
        10: "Bulk insert: small documents per second on one core, against bulk_docs; memory for a large insert",
        11: "Idle TLS connections: memory per connection with 500 and 5,000 open, and the p99 of active clients",
    }[n]
    return run


def figure_8(ctx: Context) -> list[Row]:
    """Revocation across 3 nodes on PostgreSQL: DELETE response on A to the first refusal on B and C"""
    from . import cluster_bench

    return cluster_bench.figure_8(ctx)


def figure_9(ctx: Context) -> list[Row]:
    """Workers: requests per server CPU-second with 2 workers over 1 worker"""
    from . import cluster_bench

    return cluster_bench.figure_9(ctx)


FIGURES: dict[int, Callable[[Context], list[Row]]] = {
    1: _roost_figure(1),
    2: _roost_figure(2),
    3: figure_3,
    4: _roost_figure(4),
    5: figure_5,
    6: _roost_figure(6),
    7: _roost_figure(7),
    8: figure_8,
    9: figure_9,
    10: _roost_figure(10),
    11: _roost_figure(11),
    12: figure_12,
}
