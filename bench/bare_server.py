"""The benchmark's own app (figure 4): Roost's server and, beside it, the same app without its security path.

``python -m bench.bare_server --data-dir DIR`` builds the product's Server from the product's settings and
starts it as ``roost serve`` would, then serves, from the same process, the same services and the same TLS
context, a second app on a second port: the product's app (``build_app``: every route, the same request
middleware, header policy, CSRF and Unicode checks, body limits, error rendering, metrics) whose security path
(``roost.http.middleware.security_path``: identify, 2FA gate, authorize, last-used) is replaced by one that does
none of it. Figure 4's ratio is therefore the cost of exactly that path (issue 15 asks <= 5%). The product itself
has no such route, setting or branch: the bench composes the product's own parts differently.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiohttp import web

from roost.http.app import build_app
from roost.http.middleware import request_middleware
from roost.security.identity import NO_CERTIFICATE, Identity
from roost.server import Server, loop_factory
from roost.services import Services
from roost.settings import load_settings

BARE_READY = "Bare route on:"


async def no_security(request: web.Request, services: Services) -> Identity:
    """The baseline's security path: nobody identified, nothing gated, authorized or noted (the document GET's
    handler never looks at the identity for a load by id)."""
    return NO_CERTIFICATE


async def main(data_dir: Path, flags: list[str]) -> None:
    settings, _ = load_settings({"data_dir": data_dir, "host": None, "port": 0}, flags)
    server = await Server.create(settings)
    runner: web.AppRunner | None = None
    try:
        url = await server.start()
        services = server.services
        bare = build_app(services, middleware=request_middleware(no_security))
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
