"""The two commands of the README: `make serve` installs only what Roost runs on; `make test` gets the Debian
packages the tests need, or stops with one line naming them (never a silent skip of the browser tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT

# make's own lines ("make: Entering directory", "make[1]: ..." when run from another make, as `make test` does).
MAKE_CHATTER = re.compile(r"^make(\[\d+\])?:")


def make(*args: str, user: str | None = None, where: Path = ROOT) -> subprocess.CompletedProcess[str]:
    command = ["make", "-C", str(where), *args]
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_make_serve_installs_the_runtime_only() -> None:
    dry = make("-n", "-B", "serve")
    assert dry.returncode == 0, dry.stderr
    assert "pip install -q -e ." in dry.stdout and "[test]" not in dry.stdout
    assert "roost serve" in dry.stdout
    tests = make("-n", "-B", "test")  # its twin: the test extras come with `make test`
    assert "pip install -q -e '.[test]'" in tests.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to act as another user")
def test_make_test_without_the_packages_names_them_in_one_line() -> None:
    # Another user must be able to read the Makefile: a copy in a directory anyone can enter (the checkout may not be).
    where = Path(tempfile.mkdtemp(prefix="roost-make-", dir="/tmp"))
    (where / ".ci").mkdir()
    shutil.copy(ROOT / "Makefile", where / "Makefile")
    shutil.copy(ROOT / ".ci" / "debian-packages", where / ".ci" / "debian-packages")
    for path in (where, where / ".ci", where / "Makefile", where / ".ci" / "debian-packages"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        _check_missing_and_present(where)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _check_missing_and_present(where: Path) -> None:
    missing = make("system-deps", "TEST_PROGRAMS=no-such-program", user="nobody", where=where)
    assert missing.returncode != 0
    lines = [line for line in missing.stdout.splitlines() if line.strip() and not MAKE_CHATTER.match(line)]
    assert len(lines) == 1, missing.stdout
    assert "no-such-program" in lines[0] and "apt-get install" in lines[0] and "chromium" in lines[0]
    present = make("system-deps", "TEST_PROGRAMS=sh", user="nobody", where=where)  # the twin: nothing missing, nothing to do
    assert present.returncode == 0, present.stdout + present.stderr
    assert [line for line in present.stdout.splitlines() if not MAKE_CHATTER.match(line)] == []


def test_make_test_installs_the_pinned_node_client_and_make_serve_does_not() -> None:
    tests = make("-n", "-B", "test")
    assert "cd tests/node && npm ci" in tests.stdout  # exactly the versions of tests/node/package-lock.json
    assert "npm" not in make("-n", "-B", "serve").stdout
    lock = (ROOT / "tests" / "node" / "package-lock.json").read_text()
    assert '"node_modules/ravendb"' in lock
