"""`python -m bench.profile`: where a Roost server spends its time under figure 3's load (py-spy, sampled).

Starts a prepared server pinned to the server core, drives keep-alive GETs (or new connections with
``--mode newconn``) from the client core, records the server with py-spy (``pip install py-spy``) and prints
the functions with the most samples, by own time and including callees.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .common import run_load
from .figures import Context
from .roost_bench import setup


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


# Where a request's time goes, by layer: a sample counts for the layer of the innermost frame that names one
# (so HTTP parsing called from the SSL protocol counts as aiohttp, and a SHA-1 inside identify as security).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("security: identify + authorize + last-used", ("Identifier.identify ", "refusal ", "Registry.touch ",
                                                    "peer_certificate ", "peer_thumbprint ")),
    ("handler: storage (SQLite)", ("SqliteStorage.",)),
    ("handler: JSON render + response", ("json_response ", "render ", "json_bytes ", "dumps_bytes ")),
    ("handler: other (validation, routing of ids)", ("get_docs ", "_load ")),
    ("TLS: decrypt (SSLObject.read)", ("SSLObject.read ",)),
    ("TLS: encrypt (SSLObject.write)", ("SSLObject.write ",)),
    ("TLS: handshake", ("SSLObject.do_handshake ",)),
    ("asyncio SSL protocol (buffers, copies)", ("SSLProtocol.", "_SSLProtocolTransport.")),
    ("aiohttp: HTTP parse, dispatch, response", ("RequestHandler.", "Application._handle ", "StreamWriter.",
                                                 "StreamResponse.", "Response.", "HttpRequestParser",
                                                 "UrlDispatcher.", "_fix_request_current_app", "security_middleware ")),
    ("socket I/O", ("_SelectorSocketTransport.",)),
    ("event loop (select, scheduling)", ("EpollSelector.select ", "BaseEventLoop._run_once ")),
]


def layers(collapsed: Path) -> list[tuple[str, float]]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        label = next((lab for f in reversed(stack.split(";")) for lab, pre in LAYERS if f.startswith(pre)), "other")
        counts[label] += n
    return [(label, 100 * counts[label] / total) for label, _ in [*LAYERS, ("other", ())] if counts[label]]


def summarize(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples", "", "own time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "including callees:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top * 2)]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--mode", choices=("keepalive", "newconn"), default="keepalive")
    p.add_argument("--bare", action="store_true",
                   help="load the same app without its security path (figure 4's baseline) instead")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="Server.EventLoop")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    spy = _py_spy()
    with Context(smoke=False) as ctx, setup(ctx, "roost-profile", bare=True,
                                                  args=(f"--Server.EventLoop={args.loop}",)) as s:
        url = s.bare_doc_url if args.bare else s.doc_url
        result: dict[str, object] = {}

        def load() -> None:
            result["r"] = run_load(url, cert=s.client_cert, key=s.client_key, ca=s.ca, mode=args.mode,
                                   connections=16, duration=args.seconds + 2, server_pids=s.server.pids)

        t = threading.Thread(target=load)
        t.start()
        assert s.server.proc is not None
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "stacks.txt"
            pid = str(s.server.proc.pid)
            subprocess.run([spy, "record", "--pid", pid, "--duration", str(int(args.seconds)), "--rate", "250",
                            "--format", "raw", "--output", str(raw), "--nonblocking"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t.join()
            print(result.get("r"))
            print("by layer:")
            for label, pct in layers(raw):
                print(f"  {pct:5.1f}%  {label}")
            print()
            print(summarize(raw, args.top))


if __name__ == "__main__":
    main()
