"""Every command that docs/ and the README show is a command that exists, with options that exist.

Each ``roost ...`` line of a shell block is parsed by the CLI's own click parser (unknown subcommands and options
fail; values are not checked, since the examples name files the reader has); each ``curl``/``rcurl``/``$C`` line
names a method and path that the route table serves. Commands with real effects are also run by the tests of
their feature (e.g. tests/test_packages.py runs the README's CA commands); this check keeps the rest honest.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from aiohttp import web

from conftest import ROOT
from roost.cli.main import main
from roost.http.app import ROUTE_TABLES
from roost.http.routing import install

DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"```(sh|)\n(.*?)```", re.S)
CURL = re.compile(r"^(?:curl|rcurl|\$C)\b")


def shell_lines(path: Path) -> list[str]:
    """The commands of the shell blocks: continuation lines joined, comments dropped."""
    lines: list[str] = []
    for _, block in BLOCK.findall(path.read_text()):
        pending = ""
        for raw in block.splitlines():
            line = pending + raw.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _words(line: str) -> list[str]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an example cut across lines (a JSON body): the head is still worth checking
        words = shlex.split(line.split("'", 1)[0].split('"', 1)[0], comments=True)
    return words


def roost_problem(line: str) -> str | None:
    """None when click accepts the command line's subcommands and options; else what is wrong."""
    if not line.startswith(("roost ", ".venv/bin/roost ")):
        return None
    words = _words(line)
    command: click.Command = main
    args = words[1:]
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        sub = command.get_command(click.Context(command), args[0])
        if sub is None:
            return f"no command {args[0]!r} in {command.name!r}"
        command, args = sub, args[1:]
    if command is main:
        return "no subcommand"
    args = [a for a in args if not re.fullmatch(r"\[.*\]|\.\.\.", a)]  # "[--data-dir DIR]": optional parts
    if command.name == "serve":  # RavenDB's --Key=Value settings are checked by test_settings.py
        args = [a for a in args if not re.match(r"--[A-Z]|--storage_url", a)]
    context = click.Context(command, info_name=command.name)
    parser = command.make_parser(context)
    try:
        parser.parse_args(args)
    except click.UsageError as exc:
        return exc.format_message()
    return None


def _app() -> web.Application:
    app = web.Application()
    install(app, ROUTE_TABLES)
    return app


def curl_problem(line: str, app: web.Application) -> str | None:
    """None when the curl line's method and path are served by a route; else what is wrong."""
    if not CURL.match(line):
        return None
    words = _words(line.replace("$URL", "https://localhost:8443"))
    method = "GET"
    url = None
    for i, word in enumerate(words):
        if word == "-X" and i + 1 < len(words):
            method = words[i + 1]
        elif word in ("-d", "--data") and method == "GET":
            method = "POST"
        elif word.startswith("https://"):
            url = word
    if url is None:
        return "no URL"
    path = "/" + url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0] if url.count("/") > 2 else "/"
    for resource in app.router.resources():
        if resource.get_info().get("pattern") is None and resource.canonical == path:
            methods = {route.method for route in resource}
        else:
            match = resource.get_info().get("pattern")
            if match is None or not match.fullmatch(path):
                continue
            methods = {route.method for route in resource}
        if method in methods:
            return None
    return f"no route serves {method} {path}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_documented_command_exists(path: Path) -> None:
    app = _app()
    problems = [f"{line}: {problem}" for line in shell_lines(path)
                if (problem := roost_problem(line) or curl_problem(line, app))]
    assert not problems, "\n".join(problems)


def test_the_check_refuses_what_does_not_exist() -> None:
    app = _app()
    assert roost_problem("roost certs generate alice --no-such-flag") is not None
    assert roost_problem("roost certs frobnicate") is not None
    assert roost_problem("roost backup schedule set --db shop --every 6h --keep 3 --folder f -r age1") is None
    assert curl_problem("rcurl $URL/admin/nope", app) is not None
    assert curl_problem("rcurl -X PATCH $URL/certificates/whoami", app) is not None
    assert curl_problem('rcurl "$URL/admin/certificates?thumbprint=AB"', app) is None
    assert curl_problem("rcurl -X DELETE $URL/admin/certificates/purge", app) is None
