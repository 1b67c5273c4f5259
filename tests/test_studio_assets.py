"""The Studio's files keep the promises the CSP and the XSS rules depend on (issue 9).

The CSP is `default-src 'self'` with no inline script or style, so the Studio must have no inline
<script>, no <style> element, no style= attribute and no on*= handler; it must never parse data as
HTML; and it must load nothing from another origin (it works offline). These checks read the files;
the browser tests prove the same things in Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STUDIO = Path(__file__).resolve().parents[1] / "src" / "roost" / "studio"
SCRIPTS = sorted(STUDIO.glob("*.js"))
PAGES = sorted(STUDIO.glob("*.html"))


def test_the_studio_is_there() -> None:
    assert (STUDIO / "index.html").is_file()
    assert (STUDIO / "app.js").is_file()
    assert (STUDIO / "dom.js").is_file()
    assert (STUDIO / "studio.css").is_file()


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_never_parse_data_as_html(path: Path) -> None:
    source = path.read_text()
    for pattern in (
        r"\.innerHTML\s*[+]?=",
        r"\.outerHTML\s*[+]?=",
        r"insertAdjacentHTML\s*\(",
        r"document\.write",
        r"\beval\s*\(",
        r"new\s+Function\s*\(",
        r"createContextualFragment",
        r"DOMParser",
    ):
        assert not re.search(pattern, source), f"{path.name} uses {pattern}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_set_no_inline_style_or_handler(path: Path) -> None:
    source = path.read_text()
    assert not re.search(r"""setAttribute\(\s*["'](style|on\w+)["']""", source), path.name
    assert not re.search(r"\.style\.\w+\s*=|\.style\s*=|cssText", source), path.name
    assert not re.search(r"""\bon[a-z]+\s*:\s*["']""", source), path.name


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_pages_have_no_inline_script_style_or_handler(path: Path) -> None:
    html = path.read_text()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, f"inline <script> in {path.name}"
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), f"inline script body in {path.name}"
    assert "<style" not in html
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)


def test_nothing_is_loaded_from_another_origin() -> None:
    for path in sorted(STUDIO.iterdir()):
        if not path.is_file():
            continue
        text = path.read_text()
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), f"{path.name} names another origin"
        assert "@import" not in text and "url(" not in text, f"{path.name} loads a resource from CSS"


def test_every_module_import_resolves() -> None:
    for path in SCRIPTS:
        for target in re.findall(r"""from\s+["'](\.[^"']+)["']""", path.read_text()):
            assert (STUDIO / target).resolve().is_file(), f"{path.name} imports missing {target}"
