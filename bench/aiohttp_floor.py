"""The floor under figure 3: a minimal aiohttp app on Roost's own TLS context, answering nginx's body.

`python -m bench.aiohttp_floor CERT KEY CA PORT [asyncio|uvloop]`. Its context is the one Roost listens with
(``roost.tls.ServerTLS``: CERT_OPTIONAL, partial chain, the sni_callback that swaps certificates) and it reads the
peer certificate on every request (`getpeercert(binary_form=True)`), but has no middleware, no identity, no
storage: the gap between it and Roost is Roost's own work, the gap between it and nginx is Python, the event
loop's TLS transport and aiohttp. The last argument picks the event loop (figure 3b records both).
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from roost.tls import ServerTLS, use_small_read_buffers

from .nginx import FIXED_BODY


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name != "asyncio":
        raise SystemExit(f"unknown event loop {name!r}: asyncio or uvloop")
    return asyncio.new_event_loop


def main() -> None:
    cert, key, ca, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    loop_name = sys.argv[5] if len(sys.argv) > 5 else "asyncio"
    anchor = ssl.PEM_cert_to_DER_cert(Path(ca).read_text())
    ctx = ServerTLS(Path(cert), Path(key), [anchor]).listening_context
    use_small_read_buffers()  # as Roost's server does (asyncio's TLS read buffer, figure 11)
    body = FIXED_BODY.encode()

    async def handle(request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return web.Response(body=body, content_type="application/json")

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx, backlog=1024).start()
        print(f"listening on {port} ({loop_name})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        try:
            runner.run(serve())
        except (KeyboardInterrupt, web.GracefulExit):
            pass


if __name__ == "__main__":
    main()
