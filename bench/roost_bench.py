"""The Roost side of the figures: real `roost serve` processes, driven over HTTPS with client certificates."""

from __future__ import annotations

import base64
import io
import json
import statistics
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .client import Client
from .common import SERVER_CORE, LoadResult, Row, cpu_seconds, run_load
from .roost_server import RoostServer
from .throwaway_pki import make_cert_set

if TYPE_CHECKING:
    from .figures import Context

DB = "bench"
DOC_ID = "bench/1"
DOC = {"Name": "bench", "Value": 42, "Tags": ["a", "b"], "@metadata": {"@collection": "Bench"}}


@dataclass
class Setup:
    """A started Roost server with a database, one document and a Read-only User certificate for it."""

    data_dir: Path
    server: RoostServer
    certs_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.certs_dir = self.data_dir / "certificates"

    @property
    def ca(self) -> Path:
        return self.certs_dir / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.certs_dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.certs_dir / "server.key"

    @property
    def admin_pem(self) -> Path:
        return self.certs_dir / "admin.client.pem"

    @property
    def client_cert(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-reader.crt"

    @property
    def client_key(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-reader.key"

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def doc_url(self) -> str:
        return f"{self.url}/databases/{DB}/docs?id={DOC_ID}"

    @property
    def bare_doc_url(self) -> str:
        assert self.server.bare_url, "started without bare=True"
        return f"{self.server.bare_url}/databases/{DB}/docs?id={DOC_ID}"  # the same route, no security path

    def admin(self) -> Client:
        return Client(self.url, self.admin_pem, ca=self.ca)

    def prepare(self) -> None:
        """Once per data directory: the database, the document and the reader certificate."""
        if self.client_cert.exists():
            return
        admin = self.admin()
        admin.ok("PUT", f"/admin/databases?name={DB}", {"DatabaseName": DB})
        admin.ok("PUT", f"/databases/{DB}/docs?id={DOC_ID}", DOC)
        package = admin.ok("POST", "/admin/certificates",
                           {"Name": "bench reader", "SecurityClearance": "ValidUser",
                            "Permissions": {DB: "Read"}}).body
        with zipfile.ZipFile(io.BytesIO(package)) as z:
            self.client_cert.write_bytes(z.read("bench reader.crt"))
            self.client_key.write_bytes(z.read("bench reader.key"))
        self.client_key.chmod(0o600)
        admin.close()
        # The reader must be able to read the document: fail here rather than in a load run full of 403s.
        reader = Client(self.url, self.client_cert, self.client_key, ca=self.ca)
        reader.ok("GET", f"/databases/{DB}/docs?id={DOC_ID}")
        reader.close()

    def __enter__(self) -> Setup:
        self.server.start()
        try:
            self.prepare()
        except BaseException:
            self.server.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.stop()


def setup(ctx: Context, name: str, *, core: int | None = SERVER_CORE, args: tuple[str, ...] = (),
          bare: bool = False) -> Setup:
    data_dir = ctx.tmp / name
    return Setup(data_dir, RoostServer(data_dir, core=core, args=args, bare=bare))


def prepared_server(ctx: Context) -> Setup:
    return setup(ctx, "roost-main")


def _ms(seconds: list[float]) -> tuple[float, float]:
    s = sorted(x * 1000 for x in seconds)
    return statistics.median(s), s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


# Figure 1 ----------------------------------------------------------------------------------------------------


def _crypto_floor(repeat: int) -> tuple[float, float]:
    """In-process floor of one EC-P256 issuance and of the passphrase's key derivation, with Roost's own pki."""
    from roost.pki import packages
    from roost.pki.authority import CertificateAuthority, generate_private_key

    ca = CertificateAuthority.create()
    plain, derivation = [], []
    for i in range(repeat):
        t0 = time.perf_counter()
        key = generate_private_key("EC-P256")
        cert = ca.issue_client(f"floor-{i}", key)
        t1 = time.perf_counter()
        packages.pfx_bytes("x", cert, key, None)
        t2 = time.perf_counter()
        packages.pfx_bytes("x", cert, key, "correct horse battery staple")
        t3 = time.perf_counter()
        plain.append(t1 - t0)
        derivation.append(max(0.0, (t3 - t2) - (t2 - t1)))
    return statistics.median(plain) * 1000, statistics.median(derivation) * 1000


def figure_1(ctx: Context) -> list[Row]:
    n = {"EC-P256": 2, "EC-P256+pass": 2, "RSA-2048": 1, "RSA-4096": 1} if ctx.smoke else \
        {"EC-P256": 60, "EC-P256+pass": 60, "RSA-2048": 20, "RSA-4096": 20}
    times: dict[str, list[float]] = {k: [] for k in n}
    with setup(ctx, "roost-main") as s:
        admin = s.admin()
        admin.ok("GET", "/certificates/whoami")
        warm = ["EC-P256", "EC-P256+pass"] if ctx.smoke else list(n)
        for variant in warm:  # warm-up, not counted: the first pooled job starts the worker processes
            body = {"Name": f"f1-warm-{variant}", "SecurityClearance": "ValidUser", "Permissions": {},
                    "KeyType": variant.split("+")[0]}
            if variant.endswith("+pass"):
                body["Password"] = "warm"
            admin.ok("POST", "/admin/certificates", body)
        # Interleave the variants so that drift on a shared machine hits all of them alike.
        for i in range(max(n.values())):
            for variant, count in n.items():
                if i >= count:
                    continue
                body: dict[str, Any] = {"Name": f"f1-{variant}-{i}", "SecurityClearance": "ValidUser",
                                        "Permissions": {DB: "Read"}, "KeyType": variant.split("+")[0]}
                if variant.endswith("+pass"):
                    body["Password"] = "correct horse battery staple"
                times[variant].append(admin.ok("POST", "/admin/certificates", body).seconds)
        admin.close()
    floor_ms, kdf_ms = _crypto_floor(5 if ctx.smoke else 50)
    base_med, base_p95 = _ms(times["RSA-4096"])
    rows = []
    for variant, label in (("EC-P256+pass", "issue EC-P256 + passphrase"), ("EC-P256", "issue EC-P256"),
                           ("RSA-2048", "issue RSA-2048"), ("RSA-4096", "issue RSA-4096 (baseline)")):
        med, p95 = _ms(times[variant])
        speedup = base_med / med
        is_target = variant == "EC-P256+pass"
        rows.append(Row(
            "1", f"{label}, median", med, "ms", baseline=base_med, ratio=speedup,
            target=">= 40x faster" if is_target else "",
            passed=(speedup >= 40) if is_target else None,
            note=f"p95 {p95:.1f} ms (RSA-4096 p95 {base_p95:.0f} ms); n={len(times[variant])}"
                 + (f"; in-process floor {floor_ms:.2f} ms + {kdf_ms:.1f} ms passphrase KDF" if is_target else ""),
            details={"median_ms": med, "p95_ms": p95, "samples": len(times[variant])},
        ))
    return rows


# Figure 2 ----------------------------------------------------------------------------------------------------


def figure_2(ctx: Context) -> list[Row]:
    seconds = 0.5 if ctx.smoke else 8.0
    # Unpinned server: the RSA process pool and the event loop share both cores, as in a real deployment.
    with setup(ctx, "roost-main", core=None) as s:
        kw: dict[str, Any] = {"cert": s.client_cert, "key": s.client_key, "ca": s.ca, "mode": "keepalive",
                              "connections": 1, "duration": seconds, "server_pids": s.server.pids}
        if not ctx.smoke:
            run_load(s.doc_url, warmup=0.5, **{**kw, "duration": 1.0})  # warm caches and the connection path
        idle = run_load(s.doc_url, **kw)
        stop = threading.Event()
        done: list[float] = []
        errors: list[str] = []

        def generate(worker: int) -> None:
            client = s.admin()
            i = 0
            while not stop.is_set():
                r = client.request("POST", "/admin/certificates",
                                   {"Name": f"f2-{worker}-{i}", "SecurityClearance": "ValidUser",
                                    "Permissions": {}, "KeyType": "RSA-2048" if ctx.smoke else "RSA-4096"})
                if r.status != 200:
                    errors.append(f"{r.status} {r.body[:200]!r}")
                    break
                done.append(r.seconds)
                i += 1
            client.close()

        # Smoke: two RSA-2048 generations only check that the path runs; the figure is 8 x RSA-4096.
        threads = [threading.Thread(target=generate, args=(w,), daemon=True) for w in range(2 if ctx.smoke else 8)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # let all 8 be in flight
        busy = run_load(s.doc_url, **kw)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    if errors:
        raise RuntimeError(f"RSA-4096 generation failed during figure 2: {errors[0]}")
    ratio = busy.p99_ms / idle.p99_ms if idle.p99_ms else None
    return [Row(
        "2", "GET p99 during 8 RSA-4096 generations", busy.p99_ms, "ms", baseline=idle.p99_ms, ratio=ratio,
        target="<= 3x idle", passed=ratio is not None and ratio <= 3 and busy.ok and idle.ok,
        note=f"p50 {busy.p50_ms:.2f} vs idle {idle.p50_ms:.2f} ms; {len(done)} RSA-4096 generations completed "
             f"during the run; server unpinned",
        details={"busy": _load(busy), "idle": _load(idle), "rsa4096_done": len(done)},
    )]


def per_cpu(results: list[LoadResult]) -> float:
    """Requests per second of server CPU: robust when other processes share the server's core."""
    return sum(r.requests for r in results) / max(1e-9, sum(r.server_cpu * r.seconds for r in results))


def _load(r: LoadResult) -> dict[str, object]:
    return {"rps": round(r.rps), "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "requests": r.requests,
            "errors": r.errors, "non_2xx": r.non_2xx, "server_cpu": round(r.server_cpu, 2),
            "client_cpu": round(r.client_cpu, 2)}


# Figure 4 ----------------------------------------------------------------------------------------------------


def figure_4(ctx: Context) -> list[Row]:
    rounds = 1 if ctx.smoke else 3
    full: list[LoadResult] = []
    bare: list[LoadResult] = []
    with setup(ctx, "roost-bare", bare=True) as s:
        kw: dict[str, Any] = {"cert": s.client_cert, "key": s.client_key, "ca": s.ca, "mode": "keepalive",
                              "connections": 16, "duration": ctx.load_seconds / 2 if not ctx.smoke else 0.5,
                              "warmup": 0 if ctx.smoke else 1.0}
        # A/B alternated: both paths see the same drift.
        for _ in range(rounds):
            full.append(run_load(s.doc_url, server_pids=s.server.pids, **kw))
            bare.append(run_load(s.bare_doc_url, server_pids=s.server.pids, **kw))
    f = sum(r.requests for r in full) / sum(r.seconds for r in full)
    b = sum(r.requests for r in bare) / sum(r.seconds for r in bare)
    ok = all(r.ok for r in full + bare)
    ratio = f / b
    cpu_ratio = per_cpu(full) / per_cpu(bare)
    per_request_us = (1 / per_cpu(full) - 1 / per_cpu(bare)) * 1e6
    return [Row(
        "4", "GET with the security path vs the same app without it", f, "req/s", baseline=b, ratio=ratio,
        target=">= 0.95",
        passed=ok and ratio >= 0.95,
        note=f"per server CPU-second {cpu_ratio:.3f}; security costs {per_request_us:.0f} us of CPU per request "
             f"({rounds} A/B rounds)",
        details={"full": [_load(r) for r in full], "bare": [_load(r) for r in bare]},
    )]


# Figure 6 ----------------------------------------------------------------------------------------------------


def _prepare_registry(ctx: Context, name: str, count: int) -> tuple[Setup, float, bool]:
    """A prepared data directory with ``count`` extra certificates written into storage while stopped."""
    from .bulk_registry import cached_definitions, generate_definitions, register
    from .common import WORK_DIR

    s = setup(ctx, name)
    with s:
        pass  # first start: CA, server certificate, admin, database, document, reader
    t0 = time.perf_counter()
    ca, ca_key = s.ca.read_bytes(), (s.certs_dir / "ca.key").read_bytes()
    if count >= 10_000:
        definitions, cached = cached_definitions(count, ca, ca_key, "bulk", WORK_DIR)
    else:
        definitions, cached = generate_definitions(count, ca, ca_key, prefix=name), False
    register(s.data_dir, definitions)
    return s, time.perf_counter() - t0, cached


def _latencies(s: Setup, ctx: Context) -> dict[str, list[float]]:
    samples = 3 if ctx.smoke else 30
    throwaway = make_cert_set(ctx.tmp / f"{s.data_dir.name}-upload")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    upload_ders = _distinct_uploads(throwaway, samples)
    del x509, serialization
    admin = s.admin()
    out: dict[str, list[float]] = {"generate": [], "upload": [], "delete": [], "list page (after a write)": [],
                                   "list page": []}
    page = "/admin/certificates?start=0&pageSize=25&metadataOnly=true"
    admin.ok("GET", page)
    for i in range(samples):
        r = admin.ok("POST", "/admin/certificates", {"Name": f"lat-{i}", "SecurityClearance": "ValidUser",
                                                      "Permissions": {DB: "Read"}})
        out["generate"].append(r.seconds)
        thumbprint = _thumbprint_of_package(r.body, f"lat-{i}")
        out["list page (after a write)"].append(admin.ok("GET", page).seconds)
        out["list page"].append(admin.ok("GET", page).seconds)
        out["upload"].append(admin.ok("PUT", "/admin/certificates", {
            "Name": f"up-{i}", "SecurityClearance": "ValidUser", "Permissions": {DB: "Read"},
            "Certificate": base64.b64encode(upload_ders[i]).decode()}).seconds)
        out["delete"].append(admin.ok("DELETE", f"/admin/certificates?thumbprint={thumbprint}").seconds)
    admin.close()
    return out


def _distinct_uploads(throwaway: Any, n: int) -> list[bytes]:
    """``n`` self-signed clientAuth certificates (each its own anchor, as an uploaded certificate is)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"uploaded-{i}-{time.monotonic_ns()}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(key, hashes.SHA256()))
        out.append(cert.public_bytes(serialization.Encoding.DER))
    return out


def _thumbprint_of_package(package: bytes, name: str) -> str:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with zipfile.ZipFile(io.BytesIO(package)) as z:
        cert = x509.load_pem_x509_certificate(z.read(f"{name}.crt"))
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def figure_6(ctx: Context) -> list[Row]:
    big_n = 200 if ctx.smoke else 100_000
    big, gen_seconds, cached = _prepare_registry(ctx, "roost-100k", big_n)
    small, _, _ = _prepare_registry(ctx, "roost-10", 8)  # + admin + reader = 10 registered
    rows: list[Row] = []
    lat: dict[str, dict[str, list[float]]] = {}
    info: dict[str, dict[str, float]] = {}
    loads: dict[str, list[LoadResult]] = {"big": [], "small": []}
    rounds = 1 if ctx.smoke else 2
    dur = 0.5 if ctx.smoke else ctx.load_seconds / 2
    # Both servers run at once, pinned to the same core; only the one under load uses it. A/B alternated.
    with big, small:
        for key, s in (("big", big), ("small", small)):
            info[key] = {"start_s": s.server.start_seconds, "rss_mb": s.server.rss() / 2**20}
        for _ in range(rounds):
            for key, s in (("big", big), ("small", small)):
                loads[key].append(run_load(s.doc_url, cert=s.client_cert, key=s.client_key, ca=s.ca,
                                           mode="keepalive", connections=16, duration=dur,
                                           warmup=0 if ctx.smoke else 1.0, server_pids=s.server.pids))
        for key, s in (("big", big), ("small", small)):
            lat[key] = _latencies(s, ctx)
            info[key]["rss_after_mb"] = s.server.rss() / 2**20
    rps = {k: sum(r.requests for r in v) / sum(r.seconds for r in v) for k, v in loads.items()}
    ok = all(r.ok for v in loads.values() for r in v)
    label = f"{big_n:,}"
    how = "registration (generated set cached in bench/.work)" if cached else "generation + registration"
    rows.append(Row("6", f"start time, {label} certs", info["big"]["start_s"], "s", baseline=info["small"]["start_s"],
                    ratio=info["big"]["start_s"] / info["small"]["start_s"],
                    note=f"bulk {how} took {gen_seconds:.1f} s (not counted)"))
    rows.append(Row("6", f"resident memory, {label} certs", info["big"]["rss_mb"], "MB",
                    baseline=info["small"]["rss_mb"], ratio=info["big"]["rss_mb"] / info["small"]["rss_mb"],
                    note=f"after the latency runs: {info['big']['rss_after_mb']:.0f} MB"))
    ratio = rps["big"] / rps["small"]
    cpu_ratio = per_cpu(loads["big"]) / per_cpu(loads["small"])
    rows.append(Row("6", f"keep-alive GET, {label} vs 10 certs", rps["big"], "req/s", baseline=rps["small"],
                    ratio=ratio, target=">= 0.95", passed=ok and ratio >= 0.95,
                    note=f"per server CPU-second {cpu_ratio:.3f}",
                    details={"big": [_load(r) for r in loads["big"]], "small": [_load(r) for r in loads["small"]]}))
    for op in ("generate", "upload", "delete", "list page", "list page (after a write)"):
        med, p95 = _ms(lat["big"][op])
        base_med, _ = _ms(lat["small"][op])
        rows.append(Row("6", f"{op}, {label} certs, median", med, "ms", baseline=base_med, ratio=med / base_med,
                        target="< 20 ms", passed=med < 20,
                        note=f"p95 {p95:.1f} ms; 10-cert registry {base_med:.1f} ms"))
    return rows


# Figure 7 ----------------------------------------------------------------------------------------------------


def figure_7(ctx: Context) -> list[Row]:
    batches = 5 if ctx.smoke else 200
    with setup(ctx, "roost-main") as s:
        admin = s.admin()
        bodies = []
        for b in range(batches):
            bodies.append({"Commands": [
                {"Type": "PUT", "Id": f"users/{b * 100 + i}", "ChangeVector": None,
                 "Document": {"Name": f"User {b * 100 + i}", "Age": (b + i) % 90, "Email": f"u{b}x{i}@example.com",
                              "@metadata": {"@collection": "Users"}}}
                for i in range(100)]})
        import json

        payloads = [json.dumps(body).encode() for body in bodies]
        t0 = time.perf_counter()
        per_batch = [admin.ok("POST", f"/databases/{DB}/bulk_docs", p).seconds for p in payloads]
        elapsed = time.perf_counter() - t0
        admin.close()
        docs_per_s = batches * 100 / elapsed
        url = f"{s.url}/databases/{DB}/docs?id=users/{batches * 50}"
        single = run_load(url, cert=s.client_cert, key=s.client_key, ca=s.ca, mode="keepalive", connections=1,
                          duration=0.5 if ctx.smoke else 5.0, warmup=0 if ctx.smoke else 1.0,
                          server_pids=s.server.pids)
    med, p95 = _ms(per_batch)
    return [
        Row("7", "bulk_docs inserts (batches of 100)", docs_per_s, "docs/s",
            note=f"one connection, sequential; batch median {med:.1f} ms, p95 {p95:.1f} ms; {batches * 100} docs"),
        Row("7", "single-document load, p50", single.p50_ms, "ms",
            note=f"p99 {single.p99_ms:.2f} ms; one keep-alive connection, {single.rps:.0f} req/s",
            details={"load": _load(single)}),
    ]


# Figure 10 ---------------------------------------------------------------------------------------------------


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _bulk_insert_stream(first: int, count: int) -> Any:
    """The client's stream: one JSON array of PUT commands, sent in 1 MB pieces as BulkInsertOperation does."""
    piece = bytearray(b"[")
    for n in range(first, first + count):
        if n != first:
            piece += b","
        piece += (b'{"Id":"items/%d","Type":"PUT","Document":{"Name":"Item %d","Price":%d,"Tags":["a","b"],'
                  b'"@metadata":{"@collection":"Items"}}}' % (n, n, n % 1000))
        if len(piece) >= 1024 * 1024:
            yield bytes(piece)
            piece = bytearray()
    piece += b"]"
    yield bytes(piece)


def _bulk_insert(s: Setup, first: int, count: int) -> tuple[float, float]:
    """Wall seconds and server CPU seconds of one bulk insert of ``count`` small documents."""
    admin = s.admin()
    conn = admin._connection()
    cpu0, t0 = cpu_seconds(s.server.pids), time.perf_counter()
    conn.request("POST", f"/databases/{DB}/bulk_insert?id={first + 1}", body=_bulk_insert_stream(first, count),
                 encode_chunked=True)
    response = conn.getresponse()
    payload = response.read()
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(s.server.pids) - cpu0
    admin.close()
    if response.status != 201:
        raise RuntimeError(f"bulk_insert -> {response.status}: {payload[:300]!r}")
    return elapsed, cpu


def figure_10(ctx: Context) -> list[Row]:
    small, large = (2_000, 5_000) if ctx.smoke else (100_000, 1_000_000)
    with setup(ctx, "roost-bulk-insert") as s:
        # Baseline of the same run: the same documents through bulk_docs, batches of 100, one connection.
        admin = s.admin()
        batches = [json.dumps({"Commands": [
            {"Type": "PUT", "Id": f"base/{b * 100 + i}", "ChangeVector": None,
             "Document": {"Name": f"Item {b * 100 + i}", "Price": i, "Tags": ["a", "b"],
                          "@metadata": {"@collection": "Items"}}} for i in range(100)]}).encode()
            for b in range(small // 100)]
        t0 = time.perf_counter()
        for body in batches:
            admin.ok("POST", f"/databases/{DB}/bulk_docs", body)
        base_rate = small / (time.perf_counter() - t0)
        admin.close()
        elapsed, cpu = _bulk_insert(s, 0, small)
        rate, per_cpu = small / elapsed, small / max(cpu, 1e-9)
        rss0 = s.server.rss()
        big_elapsed, _ = _bulk_insert(s, small, large)
        rss1, peak = s.server.rss(), _peak_rss(s.server.proc.pid)  # type: ignore[union-attr]
    return [
        Row("10", f"bulk_insert, {small:,} small documents", rate, "docs/s", target=">= 30,000",
            passed=rate >= 30_000,
            note=f"server pinned to one core; {per_cpu:,.0f} docs per server CPU-second; "
                 f"{rate / base_rate:.1f}x bulk_docs"),
        Row("10", "baseline: bulk_docs, batches of 100 (same run)", base_rate, "docs/s",
            note="one connection, sequential"),
        Row("10", f"bulk_insert, {large:,} documents: server RSS growth", (rss1 - rss0) / 1024 / 1024, "MB",
            note=f"{large / big_elapsed:,.0f} docs/s; RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MB, "
                 f"peak {peak / 2**20:.0f} MB"),
    ]


# Figure 11 ---------------------------------------------------------------------------------------------------


def _open_idle(s: Setup, count: int, into: list[Any]) -> None:
    """Open TLS connections (handshake done, client certificate presented) until ``into`` holds ``count``."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(s.ca))
    context.load_cert_chain(str(s.client_cert), str(s.client_key))
    port = int(s.url.rsplit(":", 1)[1])
    while len(into) < count:
        raw = socket.create_connection(("localhost", port), timeout=30)
        into.append(context.wrap_socket(raw, server_hostname="localhost"))


def figure_11(ctx: Context) -> list[Row]:
    counts = (20, 50) if ctx.smoke else (500, 5000)
    dur = 0.5 if ctx.smoke else 4.0
    rows: list[Row] = []
    # A long keep-alive time: the idle connections must outlive the time it takes to open the next thousands.
    with setup(ctx, "roost-main", args=("--Http.KeepAliveTimeoutSeconds=900",)) as s:
        kw: dict[str, Any] = {"cert": s.client_cert, "key": s.client_key, "ca": s.ca, "mode": "keepalive",
                              "connections": 16, "duration": dur, "warmup": 0 if ctx.smoke else 1.0,
                              "server_pids": s.server.pids}
        quiet = run_load(s.doc_url, **kw)
        time.sleep(0.5)
        rss0 = s.server.rss()
        idle: list[Any] = []
        try:
            for n in counts:
                t0 = time.perf_counter()
                _open_idle(s, n, idle)
                opened = time.perf_counter() - t0
                time.sleep(1.0)  # the server finishes the last handshakes (TLS 1.3: the client is done first)
                per_kb = (s.server.rss() - rss0) / n / 1024
                rows.append(Row("11", f"memory per idle TLS connection, {n:,} open", per_kb, "KB",
                                target="<= 100 KB", passed=per_kb <= 100,
                                note=f"server RSS growth / {n}; opening took {opened:.1f} s"))
                busy = run_load(s.doc_url, **kw)
                ratio = busy.p99_ms / quiet.p99_ms if quiet.p99_ms else None
                rows.append(Row("11", f"  p99 of 16 active clients with {n:,} idle open", busy.p99_ms, "ms",
                                baseline=quiet.p99_ms, ratio=ratio, target="<= 1.5x (no idle)",
                                passed=ratio is not None and ratio <= 1.5 and busy.ok and quiet.ok,
                                note=f"p50 {busy.p50_ms:.2f} ms vs {quiet.p50_ms:.2f} ms",
                                details={"busy": _load(busy), "quiet": _load(quiet)}))
        finally:
            for conn in idle:
                conn.close()
    return rows
