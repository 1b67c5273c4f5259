"""Figure 12: the authenticated document GET through nginx terminating TLS (docs/deployment.md's site block, in
front of Roost's trusted-proxy socket) against the same GET straight to Roost, in the same run.

nginx and Roost share the server core, so both paths have the same CPU to spend: through the proxy nginx does
the TLS and Roost reads plain HTTP from its Unix socket and the forwarded certificate from a header.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .common import Row
from .nginx import Nginx

if TYPE_CHECKING:
    from .figures import Context


def figure_12(ctx: Context) -> list[Row]:
    """TLS at a proxy: authenticated GET through nginx (docs/deployment.md) vs the same GET direct"""
    from . import roost_bench

    short = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))  # a Unix socket path must be short
    sock = short / "proxy.sock"
    try:
        with roost_bench.setup(ctx, "roost-proxied", args=(f"--Security.TrustedProxy.Socket={sock}",)) as s:
            kw = {"cert": s.client_cert, "key": s.client_key, "ca": s.ca, "mode": "keepalive"}
            direct = ctx.load(s.doc_url, pids=s.server.pids, **kw)  # type: ignore[arg-type]
            with Nginx(s.server_cert, s.server_key, proxy_socket=sock) as n:
                path = s.doc_url.split("/", 3)[3]
                via = ctx.load(f"{n.url}{path}", pids=n.pids + s.server.pids, **kw)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(short, ignore_errors=True)
    per_cpu = (via.rps / max(via.server_cpu, 1e-9)) / (direct.rps / max(direct.server_cpu, 1e-9))
    return [Row("12", "GET through nginx (TLS at the proxy) vs direct, 16 conns", via.rps, "req/s",
                baseline=direct.rps, ratio=via.rps / direct.rps if direct.rps else None,
                note=f"per server CPU-second (nginx + Roost vs Roost) {per_cpu:.3f}; p99 {via.p99_ms:.1f} ms vs "
                     f"{direct.p99_ms:.1f} ms" + ("" if via.ok and direct.ok else
                                                  f"; errors: {via.first_error or direct.first_error}"),
                details={"direct": roost_bench._load(direct), "proxied": roost_bench._load(via)})]
