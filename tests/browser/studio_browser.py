"""Shared pieces of the Studio's browser tests: a real Roost server, Debian's Chromium driven by Playwright,
and client certificates presented by the browser exactly as a user's would be.

Trust: Playwright presents client certificates through a TLS proxy inside its Node driver, and that proxy is
what verifies the server certificate. ``NODE_EXTRA_CA_CERTS`` (read once, when the driver starts) makes it
trust the Roost server's CA, so the tests run with ``ignore_https_errors=False``: a server certificate the CA
did not issue fails the test. That is why each test module starts its own driver for its own server.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from conftest import ROOT, ClientCertificate, RunningServer, start_server, unpack_package

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 1000}
# The sizes issue 17 names: a laptop and a narrow window (or a tablet held upright).
LAPTOP = {"width": 1280, "height": 800}
NARROW = {"width": 800, "height": 900}
DOCS_IMAGES = ROOT / "docs" / "images"
XSS_NAME = "<img src=x onerror=\"document.title='pwned'\">"
# The machine running the suite may be busy (a full `make test` starts many servers): be patient, not flaky.
expect.set_options(timeout=10_000)


def require_chromium() -> None:
    """Skip without Chromium on a developer machine; under CI=true a missing browser is a failure."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium package (see .ci/run).")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); browser tests need it.")


def split_pem(pem_path: Path) -> tuple[Path, Path]:
    """Playwright takes the certificate and the key as two PEM files."""
    text = pem_path.read_text()
    certs = "".join(re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", text, re.S))
    key = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----\n?", text, re.S)
    assert certs and key, f"{pem_path} holds no certificate and key"
    cert_path = pem_path.with_suffix(".crt.pem")
    key_path = pem_path.with_suffix(".key.pem")
    cert_path.write_text(certs)
    key_path.write_text(key.group(0))
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Studio:
    """A running server plus a browser; ``open(pem)`` is the Studio as the holder of ``pem`` sees it."""

    server: RunningServer
    browser: Any
    images: Path
    problems: list[str] = field(default_factory=list)
    _contexts: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def context(self, pem: Path | None = None, **options: Any) -> Any:
        cert_path, key_path = split_pem(pem or self.server.admin_pem)
        context = self.browser.new_context(
            client_certificates=[{"origin": self.url, "certPath": str(cert_path), "keyPath": str(key_path)}],
            ignore_https_errors=False,
            viewport=options.pop("viewport", VIEWPORT),
            accept_downloads=True,
            **options,
        )
        context.set_default_timeout(15_000)
        self._contexts.append(context)
        return context

    def open(self, pem: Path | None = None, route: str = "certificates", **options: Any) -> Any:
        """A page on /studio/#/<route>, once the header knows who is connected."""
        page = self.context(pem, **options).new_page()
        self.watch(page)
        page.goto(f"{self.url}/studio/#/{route}")
        page.locator("#identity .me-name").wait_for()
        return page

    def watch(self, page: Any) -> None:
        """Every script error and every CSP violation fails the test that caused it (see ``check``)."""
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

        def console(message: Any) -> None:
            text = message.text
            if "Content Security Policy" in text or "Refused to" in text:
                self.problems.append(f"CSP: {text}")

        page.on("console", console)

    def check(self) -> None:
        problems, self.problems[:] = list(self.problems), []
        assert not problems, "\n".join(problems)

    def shot(self, page: Any, name: str, *, full_page: bool = False) -> Path:
        """Screenshots for docs/studio.md (docs/images when STUDIO_DOCS_IMAGES=1, else a temp folder)."""
        page.wait_for_timeout(150)  # let focus rings and fades settle
        path = self.images / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    def generate(self, name: str, clearance: str = "ValidUser", permissions: dict[str, str] | None = None,
                 **extra: Any) -> ClientCertificate:
        return self.server.generate(name, clearance, permissions, directory=self.server.data_dir.parent / "certs",
                                    **extra)

    def close_contexts(self) -> None:
        for context in self._contexts:
            context.close()
        self._contexts.clear()


def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("STUDIO_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        return DOCS_IMAGES
    return tmp_path_factory.mktemp("studio-images")


@contextmanager
def studio_on(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A Chromium whose Playwright driver trusts ``server``'s CA, and the Studio of that server (the caller starts
    and stops the server)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("NODE_EXTRA_CA_CERTS")
    os.environ["NODE_EXTRA_CA_CERTS"] = str(server.ca_pem)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            studio = Studio(server, browser, images_dir(tmp_path_factory))
            try:
                yield studio
            finally:
                studio.close_contexts()
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("NODE_EXTRA_CA_CERTS", None)
        else:
            os.environ["NODE_EXTRA_CA_CERTS"] = previous


@pytest.fixture(scope="module", name="studio")
def studio_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    require_chromium()
    server = start_server(tmp_path_factory.mktemp("roost") / "data")
    try:
        with studio_on(server, tmp_path_factory) as studio:
            yield studio
    finally:
        server.stop()


@pytest.fixture(name="checked")
def checked_fixture(studio: Studio) -> Iterator[Studio]:
    """The module's Studio; the test fails on any script error or CSP violation it caused."""
    studio.problems.clear()
    yield studio
    studio.close_contexts()
    studio.check()


def downloaded_certificate(download: Any, name: str, directory: Path, password: str | None = None) -> ClientCertificate:
    """Unpack a <Name>.zip the browser downloaded, as the user would, into a PEM the next browser presents."""
    path = directory / f"{name}-{time.monotonic_ns()}.zip"
    download.save_as(str(path))
    return unpack_package(path.read_bytes(), name, directory, password)


def row(page: Any, name: str) -> Any:
    """The client-certificate table row whose name is exactly ``name``."""
    return page.locator("table.cert-table tbody tr").filter(
        has=page.locator(".cert-name", has_text=re.compile(f"^{re.escape(name)}$"))
    )
