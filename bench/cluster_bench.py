"""Figures 8 and 9 (issue 14). Figure 8: revocation across the nodes of a cluster (three `roost serve` nodes on one
PostgreSQL database).

Each trial generates a client certificate on node A, opens keep-alive connections presenting it to B and C (one
request each, accepted), deletes it on A, and from the moment A's DELETE response has arrived asks B and C, each
from its own thread, until they refuse. The figure is the time from that response to the first refusal on each
node, and the count of requests B or C accepted after the response (the guarantee says 0).
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import Client
from .common import LoadResult, Row
from .roost_server import RoostServer

if TYPE_CHECKING:
    from .figures import Context

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def _client_pem(admin: Client, name: str, directory: Path) -> tuple[Path, Path, str]:
    package = admin.ok("POST", "/admin/certificates",
                       {"Name": name, "SecurityClearance": "ValidUser", "Permissions": {}}).body
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        crt, key = z.read(f"{name}.crt"), z.read(f"{name}.key")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    thumbprint = x509.load_pem_x509_certificate(crt).fingerprint(hashes.SHA1()).hex().upper()
    crt_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    crt_path.write_bytes(crt)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return crt_path, key_path, thumbprint


def _first_refusal(client: Client, start: threading.Event, t0: list[float], out: dict[str, float | int]) -> None:
    """After ``start``: ask until refused; the delay from t0[0] and how many were accepted before."""
    start.wait()
    accepted = 0
    while True:
        reply = client.request("GET", "/certificates/whoami")
        if reply.status == 403:
            out["ms"] = (time.perf_counter() - t0[0]) * 1000
            out["accepted"] = accepted
            return
        accepted += 1
        if accepted > 100_000:
            out["ms"] = float("inf")
            out["accepted"] = accepted
            return


def figure_8(ctx: Context) -> list[Row]:
    trials = 5 if ctx.smoke else 120
    name = f"roost_bench_{uuid.uuid4().hex[:12]}"
    try:
        _postgres(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no PostgreSQL here: say so rather than fail the whole run
        return [Row("8", "revocation across 3 nodes", None, "ms", target="p99 <= 100 ms",
                    note=f"PostgreSQL at {POSTGRES_URL} is unreachable ({type(exc).__name__}); set TEST_POSTGRES_URL")]
    url = f"{POSTGRES_URL.rpartition('/')[0]}/{name}"
    ca_dir = ctx.scratch("fig8-ca")
    nodes: list[RoostServer] = []
    try:
        for tag in "abc":
            nodes.append(RoostServer(ctx.scratch(f"fig8-{tag}"), core=None,
                                     args=[f"--storage_url={url}", f"--Security.Ca.Path={ca_dir}"]).start())
        a, b, c = nodes
        certs = ctx.scratch("fig8-clients")
        admin = Client(a.url, a.data_dir / "certificates" / "admin.client.pem",
                       ca=a.data_dir / "certificates" / "ca.crt")
        delays: dict[str, list[float]] = {"B": [], "C": []}
        accepted_after = 0
        for trial in range(trials):
            crt, key, thumbprint = _client_pem(admin, f"fig8-{trial}", certs)
            readers = {tag: Client(node.url, crt, key, ca=node.data_dir / "certificates" / "ca.crt")
                       for tag, node in (("B", b), ("C", c))}
            for reader in readers.values():
                reader.ok("GET", "/certificates/whoami")  # open and accepted before the deletion
            start, t0 = threading.Event(), [0.0]
            results: dict[str, dict[str, float | int]] = {"B": {}, "C": {}}
            threads = [threading.Thread(target=_first_refusal, args=(readers[t], start, t0, results[t]))
                       for t in readers]
            for thread in threads:
                thread.start()
            admin.ok("DELETE", f"/admin/certificates?thumbprint={thumbprint}")
            t0[0] = time.perf_counter()
            start.set()
            for thread in threads:
                thread.join()
            for tag, result in results.items():
                delays[tag].append(float(result["ms"]))
                accepted_after += int(result["accepted"])
            for reader in readers.values():
                reader.close()
        admin.close()
    finally:
        for node in nodes:
            node.stop()
        try:
            _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:
            pass
    every = sorted(delays["B"] + delays["C"])
    p50 = statistics.median(every)
    p99 = every[min(len(every) - 1, int(round(0.99 * (len(every) - 1))))]
    load = os.getloadavg()[0]
    return [Row(
        "8", "revocation across 3 nodes: DELETE response on A to first refusal on B and C, p99", p99, "ms",
        target="p99 <= 100 ms, 0 accepted", passed=p99 <= 100 and accepted_after == 0,
        note=f"p50 {p50:.2f} ms, max {every[-1]:.2f} ms; {trials} trials x 2 nodes; accepted after the response: "
             f"{accepted_after}; load average {load:.1f}",
        details={"p50_ms": p50, "p99_ms": p99, "max_ms": every[-1], "trials": trials,
                 "accepted_after_response": accepted_after,
                 "p50_ms_by_node": {t: statistics.median(v) for t, v in delays.items()}},
    )]


def figure_9(ctx: Context) -> list[Row]:
    """Workers: requests per server CPU-second with 2 workers over 1 worker (same core: the cost of coordination)."""
    from .common import run_load
    from .roost_bench import _load, per_cpu, setup

    rounds = 1 if ctx.smoke else 3
    results: dict[int, list[LoadResult]] = {1: [], 2: []}
    servers = {n: setup(ctx, f"fig9-{n}-workers", args=("--workers", str(n))) for n in (1, 2)}
    with servers[1] as one, servers[2] as two:
        kw: dict[str, Any] = {"mode": "keepalive", "connections": 16,
                              "duration": 0.5 if ctx.smoke else ctx.load_seconds / 2,
                              "warmup": 0 if ctx.smoke else 1.0}
        for _ in range(rounds):  # A/B alternated: both see the same drift of a shared machine
            for n, s in ((1, one), (2, two)):
                results[n].append(run_load(s.doc_url, cert=s.client_cert, key=s.client_key, ca=s.ca,
                                           server_pids=s.server.pids, **kw))
    ok = all(r.ok for rs in results.values() for r in rs)
    ratio = per_cpu(results[2]) / per_cpu(results[1])
    rps = {n: sum(r.requests for r in rs) / sum(r.seconds for r in rs) for n, rs in results.items()}
    return [Row(
        "9", "workers: req per server CPU-second, 2 workers / 1 worker (one core)", per_cpu(results[2]),
        "req/cpu-s", baseline=per_cpu(results[1]), ratio=ratio, target=">= 0.9", passed=ok and ratio >= 0.9,
        note=f"throughput 2 workers {rps[2]:.0f} req/s, 1 worker {rps[1]:.0f} req/s (both pinned to the server core; "
             f"{rounds} A/B rounds); load average {os.getloadavg()[0]:.1f}",
        details={"1": [_load(r) for r in results[1]], "2": [_load(r) for r in results[2]]},
    )]
