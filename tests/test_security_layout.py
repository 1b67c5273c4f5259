"""The security package's dependency contract (issue 13): it never reaches up into the server, the HTTP layer or
the backups, so that the services can be built from their parts (see server.py) and tested without a Server."""

from __future__ import annotations

import ast
from pathlib import Path

SECURITY = Path(__file__).resolve().parent.parent / "src" / "roost" / "security"
FORBIDDEN = ("roost.server", "roost.http", "roost.backups")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_security_never_imports_the_server_http_or_backups() -> None:
    offending = sorted(
        f"{path.name}: {name}"
        for path in SECURITY.glob("*.py")
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert offending == []


def test_the_contract_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The check above can fail: an import inside TYPE_CHECKING counts too."""
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from roost.server import Server\n")
    assert "roost.server" in _imports(module)
