"""`python -m bench --smoke` still runs every figure and prints its table. No timing is asserted here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_smoke_runs_every_figure_and_prints_the_table() -> None:
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx")
    missing = [name for name, found in (("go", shutil.which("go")), ("nginx", nginx)) if not found]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"the benchmark needs {', '.join(missing)} (CI installs them)")
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,  # first run also builds the Go load generator
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = proc.stdout[proc.stdout.index("| fig"):]
    figures = {int(m) for m in re.findall(r"^\| (\d+) ", table, flags=re.M)}
    assert figures == {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, table
    assert "failed" not in table, table
