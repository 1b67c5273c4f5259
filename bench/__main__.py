"""`python -m bench [--smoke] [--only N] [--json FILE]`: run the figures of issue 7 and print one table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import sys
import time
import traceback
from dataclasses import asdict

from .common import NICE, Row, can_pin, render_table
from .figures import FIGURES, Context


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, "
        f"{platform.system()} {platform.release()}" + (f", measured processes at nice {NICE}" if NICE else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every figure still runs")
    parser.add_argument("--only", type=int, action="append", metavar="N", help="run only figure N (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write every row, with details, as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = parser.parse_args(argv)

    wanted = sorted(set(args.only)) if args.only else sorted(FIGURES)
    unknown = [n for n in wanted if n not in FIGURES]
    if unknown:
        parser.error(f"no figure {unknown}; figures are {sorted(FIGURES)}")

    print(f"Roost benchmarks ({'smoke' if args.smoke else 'full'}) on {machine()}", flush=True)
    load_before = os.getloadavg()
    if not can_pin():
        print("warning: cannot pin server and load generator to separate cores (need taskset and 2 cores)")
    rows: list[Row] = []
    started = time.monotonic()
    with Context(smoke=args.smoke, keep=args.keep) as ctx:
        for n in wanted:
            t0 = time.monotonic()
            print(f"figure {n}: {FIGURES[n].__doc__.strip().splitlines()[0]} ...", flush=True)  # type: ignore[union-attr]
            try:
                got = FIGURES[n](ctx)
            except Exception as e:  # one broken figure must not hide the others
                traceback.print_exc()
                got = [Row(str(n), "failed", None, "", note=f"{type(e).__name__}: {e}")]
            rows += got
            for r in got:
                print(f"  {r.name}: {r.value} {r.unit} {r.details or ''}", flush=True)
            print(f"  ({time.monotonic() - t0:.1f} s)", flush=True)
    print()
    print(render_table(rows))
    load_after = os.getloadavg()
    print(f"\n{len(rows)} rows in {time.monotonic() - started:.0f} s; load average (1 min) {load_before[0]:.1f} "
          f"before, {load_after[0]:.1f} after (2 cores: above 2 means other processes competed for the CPU)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "smoke": args.smoke, "rows": [asdict(r) for r in rows]}, f, indent=2)
    failed = [r for r in rows if r.name == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
