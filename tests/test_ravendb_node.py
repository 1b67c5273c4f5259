"""The official RavenDB Node.js client (npm ``ravendb``, pinned exactly in tests/node/package.json and its
package-lock.json, installed by ``npm ci`` from ``make test``) against a live secured Roost: tests/node/roost_client.mjs
does what an application does (the admin .pfx from the package, a database, a session with HiLo ids, query, delete,
attachments, changes, certificate operations) and a User certificate with Read is refused a write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, RunningServer

NODE_DIR = ROOT / "tests" / "node"


def _node() -> str:
    node = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "ravendb" / "package.json").exists()
    if node is None or not installed:
        missing = "node" if node is None else "tests/node/node_modules (npm ci in tests/node; make test runs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"The Node.js client test needs {missing}; CI must install it (.ci/run, make test).")
        pytest.skip(f"needs {missing}")
    return node


def _admin_pfx(server: RunningServer, directory: Path) -> Path:
    with zipfile.ZipFile(server.certs_dir / "admin.client.zip") as package:
        [name] = [n for n in package.namelist() if n.endswith(".pfx")]
        path = directory / "admin.pfx"
        path.write_bytes(package.read(name))
    path.chmod(0o600)
    return path


def test_the_node_client_works_against_roost(server: RunningServer, tmp_path: Path) -> None:
    node = _node()
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["ravendb"]
    installed = json.loads((NODE_DIR / "node_modules" / "ravendb" / "package.json").read_text())["version"]
    assert installed == pinned  # npm ci installed exactly the pinned client
    database = f"node-{uuid.uuid4().hex[:8]}"
    run = subprocess.run([node, "roost_client.mjs", server.url, str(_admin_pfx(server, tmp_path)),
                          str(server.ca_pem), database], cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    steps: dict[str, dict[str, Any]] = {}
    for line in run.stdout.splitlines():
        entry = json.loads(line)
        steps[entry.pop("step")] = entry
    assert steps["database"] == {"name": database}
    alice, bob = steps["stored"]["ids"]
    assert (alice, bob) == ("users/1-A", "users/2-A")  # HiLo ids, RavenDB's shape
    assert steps["loaded"] == {"id": alice, "name": "Alice", "age": 30}
    assert steps["query"] == {"names": ["Bob"]}
    assert steps["deleted"] == {"id": bob, "after": None}
    assert steps["attachment"] == {"text": "hello roost", "size": 11, "contentType": "text/plain"}
    assert steps["session attachment"] == {"names": ["photo.png"]}
    assert steps["stats"] == {"documents": 3, "attachments": 2}  # Alice, Carol and Raven/Hilo/users
    seen = steps["changes"]["seen"]
    assert seen[:3] == [{"type": "Put", "id": alice, "collection": "Users"},
                        {"type": "Put", "id": bob, "collection": "Users"},
                        {"type": "Delete", "id": bob, "collection": "Users"}]
    assert steps["certificate created"] == {"listed": True, "permissions": {database: "Read"}}
    # The refusal and its twin: the reader loads, and its write is refused with RavenDB's exception.
    assert steps["reader"] == {"loaded": "Alice", "refusal": "AuthorizationException"}
    assert steps["certificate deleted"] == {"listed": False}
    admin = server.admin()
    assert admin.get(f"{server.url}/databases/{database}/docs?id=users/mallory").status_code == 404
