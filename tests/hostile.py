"""Hypothesis strategies of hostile text: what an attacker puts in every string field, parameter and header.

Each family is one way text has broken servers: lone UTF-16 surrogates (not encodable as UTF-8), control and
format characters (NUL, CR/LF, bidi overrides, zero-width), over-long values, case variants of names that compare
case-insensitively, and Unicode normalisation forms (NFC vs NFD: 'é' as one code point or two). ``text()`` mixes
them with ordinary text so that a hostile piece also lands inside otherwise valid values.
"""

from __future__ import annotations

import unicodedata

from hypothesis import strategies as st

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
CONTROLS = st.sampled_from(
    [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u2028", "\u2029", "\u200b", "\u200d", "\u202e", "\u2066",
                                     "\ufeff", "\ufffe", "\uffff"])
# Ordinary text that still exercises the whole Unicode range (no surrogates: those are their own family).
ORDINARY = st.text(st.characters(codec="utf-8"), max_size=24)
# Values that look like the names and ids Roost knows, so that hostile pieces reach past the first check.
FAMILIAR = st.sampled_from(["Shop", "shop", "SHOP", "orders/1", "users/1-A", "admin", "Café", "Cafe\u0301",
                            "ß", "SS", "İ", "ı", "K", "\u212a", "..", ".", "/", "\\", "%00", "{db}", "$p0"])


def _nfd(value: str) -> str:
    return unicodedata.normalize("NFD", value)


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


def _swapped(value: str) -> str:
    return value.swapcase()


@st.composite
def _spliced(draw: st.DrawFn, piece: st.SearchStrategy[str]) -> str:
    """``piece`` at the start, middle or end of a familiar or ordinary value."""
    base = draw(st.one_of(FAMILIAR, ORDINARY))
    at = draw(st.integers(0, len(base)))
    return base[:at] + draw(piece) + base[at:]


def surrogate_text() -> st.SearchStrategy[str]:
    return _spliced(st.text(SURROGATES, min_size=1, max_size=3))


def control_text() -> st.SearchStrategy[str]:
    return _spliced(st.text(CONTROLS, min_size=1, max_size=3))


def long_text(longest: int = 1 << 20) -> st.SearchStrategy[str]:
    """Just past the limits Roost sets (64-character names, 128-character databases, 512-character ids) and far past
    them (64 KiB, 1 MiB). In a URL, ``longest`` stays near the server's 8 KiB request-line limit: past it every value
    gets the same refusal, and megabyte URLs only slow the client down."""
    sizes = st.sampled_from([n for n in (65, 129, 257, 513, 4097, 8191, 65_537, 1 << 20) if n <= longest])
    return st.builds(lambda size, ch: ch * size, sizes, st.sampled_from(["a", "é", "\U0001f600", "/", " "]))


def case_variants() -> st.SearchStrategy[str]:
    return st.one_of(FAMILIAR.map(_swapped), FAMILIAR.map(str.upper), FAMILIAR.map(str.casefold))


def normalisation_forms() -> st.SearchStrategy[str]:
    return st.one_of(FAMILIAR, ORDINARY).flatmap(lambda v: st.sampled_from([_nfc(v), _nfd(v)]))


def text(longest: int = 1 << 20) -> st.SearchStrategy[str]:
    """Any string field's value: mostly hostile, sometimes ordinary or familiar."""
    return st.one_of(surrogate_text(), control_text(), long_text(longest), case_variants(), normalisation_forms(),
                     ORDINARY, FAMILIAR)


def header_text() -> st.SearchStrategy[str]:
    """What a header value can carry on the wire (latin-1 bytes): controls, CR/LF, non-UTF-8 bytes, long values."""
    latin1 = st.characters(min_codepoint=0, max_codepoint=0xFF)
    return st.one_of(st.text(latin1, max_size=40), control_text().filter(lambda v: v.isascii()),
                     st.sampled_from(["\xff\xfe", "é".encode().decode("latin-1"), "a" * 9000]))
