"""The benchmark's own app (figure 4): Roost's server and, beside it, the same document GET without security.

``python -m bench.bare_server --data-dir DIR`` builds the product's Server from the product's settings and
starts it as ``roost serve`` would, then serves, from the same process, the same services and the same TLS
context, a second app on a second port whose only route is ``GET /bench/bare/databases/{db}/docs`` answered by
the product's own handler (roost.http.routes.documents.get_docs) with no middleware: no identify, no 2FA gate, no
authorize, no last-used. The product itself has no such route, setting or branch.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiohttp import web

from roost.http.middleware import IDENTITY, SERVICES
from roost.http.routes.documents import get_docs
from roost.security.identity import NO_CERTIFICATE
from roost.server import Server, loop_factory
from roost.settings import load_settings

BARE_PATH = "/bench/bare/databases/{db}/docs"
BARE_READY = "Bare route on:"


async def bare_get_docs(request: web.Request) -> web.StreamResponse:
    request[IDENTITY] = NO_CERTIFICATE  # the handler never looks at it for a load by id; nothing checked it
    return await get_docs(request)


async def main(data_dir: Path, flags: list[str]) -> None:
    settings, _ = load_settings({"data_dir": data_dir, "host": None, "port": 0}, flags)
    server = await Server.create(settings)
    runner: web.AppRunner | None = None
    try:
        url = await server.start()
        services = server.services
        bare = web.Application()
        bare[SERVICES] = services
        bare.router.add_get(BARE_PATH, bare_get_docs)
        runner = web.AppRunner(bare, access_log=None, handle_signals=False)
        await runner.setup()
        context = services.tls.listening_context if services.tls else None
        # Not gated by the allowlist (the bench sets none): the plain site works on either event loop.
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context, backlog=1024)
        await site.start()
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        scheme = "https" if context else "http"
        print(f"{BARE_READY} {scheme}://localhost:{port}", flush=True)
        print(f"Server available on: {url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    known, flags = parser.parse_known_args()  # the rest: Roost's --Key=Value settings (e.g. --Server.EventLoop)
    chosen, _ = load_settings({"data_dir": known.data_dir, "host": None, "port": 0}, flags)
    with asyncio.Runner(loop_factory=loop_factory(chosen.event_loop)) as runner:
        runner.run(main(known.data_dir, flags))
