"""The floor under figure 3: a minimal aiohttp app on the same stdlib TLS set-up as Roost, answering nginx's body.

`python -m bench.aiohttp_floor CERT KEY CA PORT`. It asks for a client certificate exactly as Roost does
(CERT_OPTIONAL, partial chain) and reads it on every request (`getpeercert(binary_form=True)`), but has no
middleware, no identity, no storage: the gap between it and Roost is Roost's own work, the gap between it and
nginx is Python, asyncio's TLS transport and aiohttp.
"""

from __future__ import annotations

import ssl
import sys

from aiohttp import web

from .nginx import FIXED_BODY


def main() -> None:
    cert, key, ca, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    body = FIXED_BODY.encode()

    async def handle(request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    print(f"listening on {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=ctx, access_log=None, print=None)


if __name__ == "__main__":
    main()
