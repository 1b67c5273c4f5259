"""The RQL subset Roost answers: parse a query once, then evaluate it against documents in memory.

RQL is RavenDB's query language. Roost supports the collection-query part of it, which is what the
official clients emit for ``session.query(...)``:

    from Users where Age >= $p0 and startsWith(Name, $p1) order by Age as long desc limit $p2, $p3
    from 'Users' where Address.City in ('Lyon', 'Nice') or not exists(Email) include Manager
    from @all_docs where id() = 'users/1-A'

Semantics follow RavenDB's dynamic (auto-index) queries, because that is what client code was
written against:

- strings compare case-insensitively (RavenDB's auto-indexes lowercase terms); ``exact(...)``
  makes the comparisons inside it case-sensitive; ``id()`` is always case-insensitive, as ids are;
- numbers compare numerically (``1 = 1.0``); a string never equals a number and bools only equal
  bools, so a value of the wrong type simply does not match;
- a missing field never equals anything, not even ``null``; ``!=`` is ``not =`` (RavenDB rewrites
  it to ``true and not``), so ``Name != 'x'`` matches documents without ``Name``;
- a field holding a list matches when any element matches, as a multi-valued index field does;
- ``order by`` without a type sorts numbers numerically and strings case-insensitively
  (numbers first), ``as string`` sorts everything as text, ``as long``/``as double`` numerically,
  ``as alphaNumeric`` naturally (``a2 < a10``); missing values sort first ascending, last
  descending, unless ``nulls first|last`` says otherwise.

Anything outside the subset (``index`` queries, ``group by``, ``load``, ``declare``, ``search()``,
...) is refused with :class:`RqlSyntaxError` naming the position, never silently ignored. No
input makes this module raise anything but :class:`roost.errors.BadRequestError` subclasses.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from roost.documents.paths import flatten, walk
from roost.errors import BadRequestError
from roost.storage.base import collection_key

__all__ = [
    "Ordering",
    "OrderKey",
    "Query",
    "QueryResult",
    "RqlParameterError",
    "RqlSyntaxError",
    "parse",
]

Document: TypeAlias = Mapping[str, object]
Params: TypeAlias = Mapping[str, object]

# Parentheses and `not` nest; Python recursion would fail long before a real query needs this much.
MAX_NESTING: Final = 64
# Longer than any query a client writes by hand or by builder; keeps a hostile body cheap to refuse.
MAX_QUERY_LENGTH: Final = 64 * 1024


class RqlSyntaxError(BadRequestError):
    """The query text is not in Roost's RQL subset. The message names the line, column and the expectation."""

    # RavenDB's own type for a query it cannot parse; the Python client turns it into RavenException.
    error_type = "Raven.Client.Exceptions.InvalidQueryException"


class RqlParameterError(BadRequestError):
    """A ``$parameter`` the query uses is missing from QueryParameters or has an unusable value."""

    error_type = "Raven.Client.Exceptions.InvalidQueryException"


# ---------------------------------------------------------------------------------------------------
# Tokens


class _Kind(enum.Enum):
    IDENT = "a name"
    STRING = "a string"
    NUMBER = "a number"
    PARAM = "a $parameter"
    PUNCT = "a symbol"
    END = "the end of the query"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # for STRING the unescaped value, for PARAM the name without '$', otherwise the source text
    pos: int
    value: int | float | None = None  # NUMBER only

    def is_word(self, *words: str) -> bool:
        """Keywords are case-insensitive (`FROM`, `Order By`, `AS long` all appear in the wild)."""
        return self.kind is _Kind.IDENT and self.text.lower() in words

    def describe(self) -> str:
        if self.kind is _Kind.END:
            return "the end of the query"
        if self.kind is _Kind.STRING:
            return f"the string {_quote(self.text)}"
        if self.kind is _Kind.PARAM:
            return f"'${self.text}'"
        return f"'{self.text}'"


def _quote(text: str) -> str:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return "'" + shown.replace("'", "\\'") + "'"


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"at line {line}, column {column}"


def _error(text: str, pos: int, message: str) -> RqlSyntaxError:
    """Every syntax error reads "Invalid query at line L, column C: <what was expected or refused>."."""
    return RqlSyntaxError(f"Invalid query {_position(text, pos)}: {message}.")


_DIGITS: Final = frozenset("0123456789")
_PUNCT: Final = ("!=", "<>", "<=", ">=", "==", "(", ")", ",", ".", "=", "<", ">")
_NUMBER_RE: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _is_ident_start(c: str) -> bool:
    return c.isalpha() or c in "_@"


def _is_ident_char(c: str) -> bool:
    # '-' is allowed inside a name because the client writes field names like `first-name` unquoted.
    return c.isalnum() or c in "_@-"


def _tokenize(text: str) -> Iterator[_Token]:
    """Tokens, lazily: a parse error earlier in the text is reported before a bad character later on."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise _error(text, i, "unterminated comment, expected '*/'")
            i = end + 2
        elif c in "'\"":
            token, i = _scan_string(text, i)
            yield token
        elif c in _DIGITS or (c == "-" and i + 1 < n and text[i + 1] in _DIGITS):
            match = _NUMBER_RE.match(text, i)
            assert match is not None  # the first one or two characters guarantee a match
            source = match.group(0)
            token = _Token(_Kind.NUMBER, source, i, _number(source, text, i))
            i = match.end()
            if i < n and _is_ident_char(text[i]) and text[i] != "-":
                raise _error(
                    text,
                    i,
                    f"unexpected {text[i]!r} after the number {source}, expected a space or an operator",
                )
            yield token
        elif c == "$":
            start = i
            i += 1
            while i < n and _is_ident_char(text[i]):
                i += 1
            if i == start + 1:
                raise _error(text, start, "expected a parameter name after '$'")
            yield _Token(_Kind.PARAM, text[start + 1 : i], start)
        elif _is_ident_start(c):
            start = i
            while i < n and (_is_ident_char(text[i]) or text.startswith("[]", i)):
                i += 2 if text[i] == "[" else 1
            yield _Token(_Kind.IDENT, text[start:i], start)
        else:
            for symbol in _PUNCT:
                if text.startswith(symbol, i):
                    yield _Token(_Kind.PUNCT, symbol, i)
                    i += len(symbol)
                    break
            else:
                raise _error(text, i, f"unexpected character {c!r}")
    yield _Token(_Kind.END, "", n)


def _scan_string(text: str, start: int) -> tuple[_Token, int]:
    """Quoted with ' or ". Inside, a doubled quote or a backslash escapes the quote; `\\\\` is a backslash.

    Other backslashes stay as written, so Windows paths such as 'C:\\temp' survive unchanged.
    """
    quote = text[start]
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
        elif c == quote:
            if i + 1 < n and text[i + 1] == quote:
                out.append(quote)
                i += 2
            else:
                return _Token(_Kind.STRING, "".join(out), start), i + 1
        else:
            out.append(c)
            i += 1
    raise _error(text, start, f"unterminated string, expected a closing {quote}")


def _number(source: str, text: str, pos: int) -> int | float:
    try:
        if "." in source or "e" in source or "E" in source:
            return float(source)
        return int(source)
    except ValueError as exc:  # Python refuses to parse integers of more than 4300 digits
        raise _error(text, pos, "the number is too long") from exc


# ---------------------------------------------------------------------------------------------------
# The query model


@dataclass(frozen=True, slots=True)
class _Literal:
    value: object


@dataclass(frozen=True, slots=True)
class _Param:
    name: str


_Operand: TypeAlias = _Literal | _Param


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A document path such as ``Address.City`` or ``Lines[].Product``; ``id()`` is the document id."""

    segments: tuple[str, ...]
    is_id: bool = False

    def __str__(self) -> str:
        return "id()" if self.is_id else ".".join(self.segments)


class Ordering(enum.StrEnum):
    """How an ``order by`` key compares values (RavenDB's OrderingType, plus the untyped default)."""

    IMPLICIT = "implicit"
    STRING = "string"
    LONG = "long"
    DOUBLE = "double"
    ALPHANUMERIC = "alphanumeric"


@dataclass(frozen=True, slots=True)
class OrderKey:
    path: FieldPath
    descending: bool = False
    ordering: Ordering = Ordering.IMPLICIT
    nulls_first: bool | None = None  # None: RavenDB's default (first ascending, last descending)


@dataclass(frozen=True, slots=True)
class _Projection:
    path: FieldPath
    alias: str


# Expression nodes. Each knows how to compile itself, once per query run, into a predicate.
_Predicate: TypeAlias = Callable[[Document], bool]


@dataclass(frozen=True, slots=True)
class _True:
    def compile(self, params: Params, exact: bool) -> _Predicate:
        return lambda doc: True


@dataclass(frozen=True, slots=True)
class _And:
    parts: tuple[_Expr, ...]

    def compile(self, params: Params, exact: bool) -> _Predicate:
        preds = [p.compile(params, exact) for p in self.parts]
        return lambda doc: all(p(doc) for p in preds)


@dataclass(frozen=True, slots=True)
class _Or:
    parts: tuple[_Expr, ...]

    def compile(self, params: Params, exact: bool) -> _Predicate:
        preds = [p.compile(params, exact) for p in self.parts]
        return lambda doc: any(p(doc) for p in preds)


@dataclass(frozen=True, slots=True)
class _Not:
    inner: _Expr

    def compile(self, params: Params, exact: bool) -> _Predicate:
        pred = self.inner.compile(params, exact)
        return lambda doc: not pred(doc)


@dataclass(frozen=True, slots=True)
class _Exact:
    inner: _Expr

    def compile(self, params: Params, exact: bool) -> _Predicate:
        return self.inner.compile(params, True)


_OPERATORS: Final[dict[str, Callable[[int], bool]]] = {
    "=": lambda c: c == 0,
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


@dataclass(frozen=True, slots=True)
class _Compare:
    path: FieldPath
    op: str  # one of _OPERATORS; '!=' is parsed as _Not(_Compare('='))
    operand: _Operand

    def compile(self, params: Params, exact: bool) -> _Predicate:
        wanted = _scalar(self.operand, params, f"the comparison with {self.path}")
        test = _OPERATORS[self.op]
        exact = exact and not self.path.is_id
        path = self.path

        def predicate(doc: Document) -> bool:
            for value in _values(doc, path)[1]:
                order = _compare(value, wanted, exact)
                if order is not None and test(order):
                    return True
            return False

        return predicate


@dataclass(frozen=True, slots=True)
class _Between:
    path: FieldPath
    low: _Operand
    high: _Operand

    def compile(self, params: Params, exact: bool) -> _Predicate:
        low = _scalar(self.low, params, f"'between' on {self.path}")
        high = _scalar(self.high, params, f"'between' on {self.path}")
        exact = exact and not self.path.is_id
        path = self.path

        def predicate(doc: Document) -> bool:
            for value in _values(doc, path)[1]:
                above = _compare(value, low, exact)
                below = _compare(value, high, exact)
                if above is not None and below is not None and above >= 0 and below <= 0:
                    return True
            return False

        return predicate


@dataclass(frozen=True, slots=True)
class _In:
    path: FieldPath
    operands: tuple[_Operand, ...]
    all_in: bool

    def compile(self, params: Params, exact: bool) -> _Predicate:
        wanted: list[object] = []
        for operand in self.operands:
            value = _resolve(operand, params)
            # The client writes `Name in ($p0)` with a list in p0; a list parameter means its elements.
            if isinstance(value, list):
                wanted.extend(value)
            else:
                wanted.append(value)
        for value in wanted:
            _check_scalar(value, f"'in' on {self.path}")
        exact = exact and not self.path.is_id
        path = self.path

        def hit(values: Sequence[object], w: object) -> bool:
            return any(_compare(v, w, exact) == 0 for v in values)

        if self.all_in:
            # RavenDB's `all in`: every listed value is among the field's values.
            return lambda doc: all(hit(_values(doc, path)[1], w) for w in wanted)
        return lambda doc: any(hit(_values(doc, path)[1], w) for w in wanted)


@dataclass(frozen=True, slots=True)
class _Affix:
    function: str  # 'startswith' or 'endswith'
    path: FieldPath
    operand: _Operand

    def compile(self, params: Params, exact: bool) -> _Predicate:
        name = "startsWith" if self.function == "startswith" else "endsWith"
        affix = _resolve(self.operand, params)
        if not isinstance(affix, str):
            raise RqlParameterError(f"{name}() on {self.path} needs a string, not {_type_name(affix)}.")
        fold = not exact or self.path.is_id
        wanted = affix.casefold() if fold else affix
        path = self.path
        starts = self.function == "startswith"

        def predicate(doc: Document) -> bool:
            for value in _values(doc, path)[1]:
                if isinstance(value, str):
                    text = value.casefold() if fold else value
                    if text.startswith(wanted) if starts else text.endswith(wanted):
                        return True
            return False

        return predicate


@dataclass(frozen=True, slots=True)
class _Exists:
    path: FieldPath

    def compile(self, params: Params, exact: bool) -> _Predicate:
        path = self.path
        return lambda doc: _values(doc, path)[0]


_Expr: TypeAlias = _True | _And | _Or | _Not | _Exact | _Compare | _Between | _In | _Affix | _Exists


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One page of results.

    ``results`` are the (projected, if the query has ``select``) documents of the page, ``documents``
    the same page unprojected (what ``include`` paths are read from), ``total`` the number of matches
    before paging and ``skipped`` how many matches the offset passed over. Note: ``skipped`` is not
    RavenDB's ``SkippedResults`` (duplicates a distinct query dropped); Roost has no distinct, so that
    one is always 0.
    """

    results: list[dict[str, object]]
    total: int
    skipped: int
    documents: list[Document] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query. Immutable and independent of parameters, so one parse can serve many runs."""

    text: str
    collection: str | None  # None for @all_docs: what a storage layer can push down
    where: _Expr | None = None
    order_by: tuple[OrderKey, ...] = ()
    projection: tuple[_Projection, ...] = ()
    includes: tuple[str, ...] = ()
    limit: _Operand | None = None
    offset: _Operand | None = None
    parameters: frozenset[str] = frozenset()

    # -- evaluation ---------------------------------------------------------------------------------

    def predicate(self, params: Params) -> _Predicate:
        """Check the parameters once and return a function that tells whether a document matches."""
        missing = sorted(self.parameters - set(params))
        if missing:
            names = ", ".join("$" + m for m in missing)
            raise RqlParameterError(
                f"The query uses {names} but QueryParameters does not give "
                f"{'it' if len(missing) == 1 else 'them'}."
            )
        where = self.where.compile(params, False) if self.where is not None else None
        collection = collection_key(self.collection)

        def predicate(doc: Document) -> bool:
            if collection is not None:
                actual = _metadata(doc).get("@collection")
                if not isinstance(actual, str) or collection_key(actual) != collection:
                    return False
            return where is None or where(doc)

        return predicate

    def matches(self, doc: Document, params: Params) -> bool:
        """Whether ``doc`` (RavenDB's JSON shape, with ``@metadata.@collection`` and ``@id``) matches."""
        return self.predicate(params)(doc)

    def sort_key(self, doc: Document) -> tuple[object, ...]:
        """A key that sorts documents in this query's ``order by`` order (ties keep the input order)."""
        return tuple(_order_value(doc, key) for key in self.order_by)

    def page(self, params: Params, skip: int = 0, take: int | None = None) -> tuple[int, int | None]:
        """The (offset, count) to apply: the query's own ``limit``/``offset`` win over ``skip``/``take``.

        The 7.x clients put their skip/take into the text (`limit $p0, $p1`); ``skip``/``take`` are
        the older body fields ``Start``/``PageSize``, used only when the text has no ``limit``.
        """
        offset = skip if self.offset is None else _count(self.offset, params, "offset")
        count = take if self.limit is None else _count(self.limit, params, "limit")
        if offset < 0 or (count is not None and count < 0):
            raise RqlParameterError("Paging values must not be negative.")
        return offset, count

    def project(self, doc: Document) -> dict[str, object]:
        """The document as the query returns it: whole, or only the selected fields plus metadata."""
        if not self.projection:
            return dict(doc)
        out: dict[str, object] = {}
        for item in self.projection:
            raw = _raw_value(doc, item.path)
            if raw is _MISSING:
                # `Lines[].Product` projects as the list of every line's product; a missing field as
                # null, as in RavenDB.
                present, values = _values(doc, item.path)
                raw = values if present else None
            out[item.alias] = raw
        metadata = dict(_metadata(doc))
        metadata["@projection"] = True
        out["@metadata"] = metadata
        return out

    def run(
        self, docs: Iterable[Document], params: Params, skip: int = 0, take: int | None = None
    ) -> QueryResult:
        """Filter, order, page and project ``docs`` (any order; ties keep it)."""
        predicate = self.predicate(params)
        offset, count = self.page(params, skip, take)
        matched = [doc for doc in docs if predicate(doc)]
        if self.order_by:
            matched.sort(key=self.sort_key)
        end = None if count is None else offset + count
        window = matched[offset:end]
        return QueryResult(
            results=[self.project(doc) for doc in window],
            total=len(matched),
            skipped=min(offset, len(matched)),
            documents=window,
        )


# ---------------------------------------------------------------------------------------------------
# Values


class _Missing:
    __slots__ = ()


_MISSING: Final = _Missing()


def _metadata(doc: Document) -> Mapping[str, object]:
    metadata = doc.get("@metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _raw_value(doc: Document, path: FieldPath) -> object:
    """The single value at a path without list flattening, or _MISSING (for projection)."""
    if path.is_id:
        return _metadata(doc).get("@id", _MISSING)
    current: object = doc
    for segment in path.segments:
        if not isinstance(current, Mapping) or segment.removesuffix("[]") not in current:
            return _MISSING
        current = current[segment.removesuffix("[]")]
    return current


def _values(doc: Document, path: FieldPath) -> tuple[bool, list[object]]:
    """(present, values): the values a path reaches, with lists flattened as a multi-valued index field.

    ``Lines[].Product`` and ``Lines.Product`` both reach every line's product, because RavenDB users
    write both.
    """
    if path.is_id:
        doc_id = _metadata(doc).get("@id")
        return (doc_id is not None, [doc_id] if isinstance(doc_id, str) else [])
    reached = walk(doc, path.segments)
    return bool(reached), flatten(reached)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _resolve(operand: _Operand, params: Params) -> object:
    if isinstance(operand, _Literal):
        return operand.value
    # predicate() already checked presence; a direct compile() call gets the same clear error.
    if operand.name not in params:
        raise RqlParameterError(f"The query uses ${operand.name} but QueryParameters does not give it.")
    return params[operand.name]


def _check_scalar(value: object, where: str) -> None:
    if isinstance(value, list | dict | Mapping):
        raise RqlParameterError(f"{where} needs a single value, not {_type_name(value)}.")
    if not (value is None or isinstance(value, str | int | float | bool)):
        raise RqlParameterError(f"{where} needs a JSON value, not {type(value).__name__}.")


def _scalar(operand: _Operand, params: Params, where: str) -> object:
    value = _resolve(operand, params)
    _check_scalar(value, where)
    return value


def _count(operand: _Operand, params: Params, what: str) -> int:
    value = _resolve(operand, params)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RqlParameterError(f"The {what} must be a whole number, not {_type_name(value)}.")
    return value


def _sign(a: float | str | bool, b: float | str | bool) -> int:
    return (a > b) - (a < b)  # type: ignore[operator]


def _compare(a: object, b: object, exact: bool) -> int | None:
    """-1, 0 or 1 when the values are comparable the RavenDB way, None when they never match."""
    if isinstance(a, bool) or isinstance(b, bool):
        return _sign(a, b) if isinstance(a, bool) and isinstance(b, bool) else None
    if a is None or b is None:
        return 0 if a is None and b is None else None
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
            return None
        return _sign(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return _sign(a, b) if exact else _sign(a.casefold(), b.casefold())
    return None


# ---------------------------------------------------------------------------------------------------
# Ordering


_NULL_LOW: Final = 0
_NULL_HIGH: Final = 9


class _Descending:
    """Wraps a key so that a single ascending sort puts it in descending order."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[object, ...]) -> None:
        self.key = key

    def __lt__(self, other: _Descending) -> bool:
        return other.key < self.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def _order_value(doc: Document, key: OrderKey) -> object:
    values = _values(doc, key.path)[1]
    value = values[0] if values else None  # RavenDB sorts a multi-valued field by its first value
    nulls_first = (not key.descending) if key.nulls_first is None else key.nulls_first
    # Under _Descending the order flips, so "first" is the high rank there.
    null_rank = _NULL_LOW if nulls_first != key.descending else _NULL_HIGH
    typed = _typed(value, key.ordering)
    sortable: tuple[object, ...] = (null_rank,) if typed is None else typed
    return _Descending(sortable) if key.descending else sortable


def _typed(value: object, ordering: Ordering) -> tuple[object, ...] | None:
    """A comparable tuple for one value; None when it sorts with the nulls. Ranks keep types apart."""
    if value is None or isinstance(value, Mapping):
        # An object has no order in RavenDB's sorting; it sorts with the nulls (and never goes through
        # str(), which would recurse through a deeply nested document).
        return None
    if ordering is Ordering.IMPLICIT:
        if isinstance(value, bool):
            return (4, int(value))
        if isinstance(value, int | float):
            return None if isinstance(value, float) and math.isnan(value) else (2, value)
        if isinstance(value, str):
            return (3, value.casefold(), value)
        return None
    if ordering is Ordering.LONG or ordering is Ordering.DOUBLE:
        number = _as_number(value)
        if number is None:
            return None
        return (2, int(number) if ordering is Ordering.LONG else number)
    text = _text(value)
    if ordering is Ordering.ALPHANUMERIC:
        return (3, _natural(text), text)
    return (3, text.casefold(), text)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _as_number(value: object) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    number: float
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    # `as long` truncates, and infinities or NaN have no long value: they sort with the nulls.
    return number if math.isfinite(number) else None


_CHUNK_RE: Final = re.compile(r"[0-9]+|[^0-9]+")


def _natural(text: str) -> tuple[tuple[int, int, str], ...]:
    """alphaNumeric: digit runs compare as numbers ("a2" < "a10"), the rest case-insensitively."""
    return tuple(
        (0, int(chunk), "") if chunk[0] in _DIGITS else (1, 0, chunk.casefold())
        for chunk in _CHUNK_RE.findall(text[:1000])
        if not (chunk[0] in _DIGITS and len(chunk) > 4000)  # int() refuses > 4300 digits
    )


# ---------------------------------------------------------------------------------------------------
# The parser


_UNSUPPORTED_FROM: Final = {
    "index": "queries on static indexes ('from index') are not supported by Roost; query a collection",
}
_UNSUPPORTED_CLAUSES: Final = {
    "group": "'group by' is not supported by Roost",
    "load": "'load' is not supported by Roost",
    "declare": "'declare function' is not supported by Roost",
    "update": "patch queries ('update') are not supported by Roost",
    "filter": "'filter' is not supported by Roost; use 'where'",
    "with": "'with' is not supported by Roost",
}
_UNSUPPORTED_FUNCTIONS: Final = frozenset(
    {
        "search",
        "regex",
        "lucene",
        "boost",
        "fuzzy",
        "proximity",
        "spatial",
        "vector",
        "moreLikeThis",
        "intersect",
        "cmpxchg",
        "now",
        "today",
    }
)
_ORDERINGS: Final = {
    "string": Ordering.STRING,
    "long": Ordering.LONG,
    "double": Ordering.DOUBLE,
    "alphanumeric": Ordering.ALPHANUMERIC,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.source_tokens = _tokenize(text)
        self.tokens: list[_Token] = []
        self.i = 0
        self.depth = 0
        self.alias: str | None = None
        self.parameters: set[str] = set()

    # -- token helpers --

    def at(self, index: int) -> _Token:
        """The token at ``index``, scanning on demand; past the end, the END token."""
        while len(self.tokens) <= index:
            if self.tokens and self.tokens[-1].kind is _Kind.END:
                return self.tokens[-1]
            self.tokens.append(next(self.source_tokens))
        return self.tokens[index]

    @property
    def peek(self) -> _Token:
        return self.at(self.i)

    def next(self) -> _Token:
        token = self.at(self.i)
        if token.kind is not _Kind.END:
            self.i += 1
        return token

    def fail(self, expected: str, token: _Token | None = None) -> RqlSyntaxError:
        token = token or self.peek
        return _error(self.text, token.pos, f"expected {expected}, but found {token.describe()}")

    def refuse(self, message: str, token: _Token) -> RqlSyntaxError:
        return _error(self.text, token.pos, message)

    def accept_word(self, *words: str) -> _Token | None:
        if self.peek.is_word(*words):
            return self.next()
        return None

    def expect_word(self, word: str, expected: str | None = None) -> _Token:
        token = self.accept_word(word)
        if token is None:
            raise self.fail(expected or f"'{word}'")
        return token

    def accept_punct(self, *symbols: str) -> _Token | None:
        if self.peek.kind is _Kind.PUNCT and self.peek.text in symbols:
            return self.next()
        return None

    def expect_punct(self, symbol: str, expected: str | None = None) -> _Token:
        token = self.accept_punct(symbol)
        if token is None:
            raise self.fail(expected or f"'{symbol}'")
        return token

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.refuse(f"the query nests deeper than {MAX_NESTING} levels", token)

    # -- grammar --

    def query(self) -> Query:
        self.check_unsupported_clause()
        self.expect_word("from", "'from' at the start of the query")
        collection = self.source()
        if self.accept_word("as"):
            alias = self.next()
            if alias.kind is not _Kind.IDENT:
                raise self.fail("an alias name after 'as'", alias)
            self.alias = alias.text
        self.check_unsupported_clause()
        where = None
        if self.accept_word("where"):
            where = self.expression()
        self.check_unsupported_clause()
        order_by: tuple[OrderKey, ...] = ()
        if self.accept_word("order"):
            self.expect_word("by", "'by' after 'order'")
            order_by = self.order_keys()
        self.check_unsupported_clause()
        projection: tuple[_Projection, ...] = ()
        if self.accept_word("select"):
            projection = self.select()
        includes: tuple[str, ...] = ()
        if self.accept_word("include"):
            includes = self.include()
        limit: _Operand | None = None
        offset: _Operand | None = None
        if self.accept_word("limit"):
            first = self.count_operand("limit")
            if self.accept_punct(","):
                offset, limit = first, self.count_operand("limit")  # `limit M, N`: skip M, take N
            else:
                limit = first
                if self.accept_word("offset"):
                    offset = self.count_operand("offset")
        if self.peek.kind is not _Kind.END:
            self.check_unsupported_clause()
            raise self.fail(self.expected_after(where, order_by, projection, includes, limit))
        return Query(
            text=self.text,
            collection=collection,
            where=where,
            order_by=order_by,
            projection=projection,
            includes=includes,
            limit=limit,
            offset=offset,
            parameters=frozenset(self.parameters),
        )

    @staticmethod
    def expected_after(
        where: object,
        order_by: tuple[object, ...],
        projection: tuple[object, ...],
        includes: tuple[object, ...],
        limit: object,
    ) -> str:
        clauses = []
        if where is None and not order_by and not projection and not includes and limit is None:
            clauses.append("'where'")
        if not order_by and not projection and not includes and limit is None:
            clauses.append("'order by'")
        if not projection and not includes and limit is None:
            clauses.append("'select'")
        if not includes and limit is None:
            clauses.append("'include'")
        if limit is None:
            clauses.append("'limit'")
        if where is not None and not order_by and not projection and not includes and limit is None:
            clauses[:0] = ["'and'", "'or'"]
        return (
            ", ".join(clauses[:-1]) + f" or {clauses[-1]}"
            if len(clauses) > 1
            else (clauses[0] if clauses else "the end of the query")
        )

    def check_unsupported_clause(self) -> None:
        token = self.peek
        for word, message in _UNSUPPORTED_CLAUSES.items():
            if token.is_word(word):
                raise self.refuse(message, token)

    def source(self) -> str | None:
        token = self.next()
        if token.kind is _Kind.IDENT:
            if token.text.lower() in _UNSUPPORTED_FROM and self.peek.kind in (_Kind.IDENT, _Kind.STRING):
                raise self.refuse(_UNSUPPORTED_FROM[token.text.lower()], token)
            if token.text.lower() == "@all_docs":
                return None
            if token.text.startswith("@"):
                raise self.refuse(
                    f"unknown collection {token.text}; the only special one is @all_docs", token
                )
            return token.text
        if token.kind is _Kind.STRING and token.text:
            return token.text
        raise self.fail("a collection name (Users, 'Users' or @all_docs) after 'from'", token)

    def expression(self) -> _Expr:
        parts = [self.conjunction()]
        while self.accept_word("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else _Or(tuple(parts))

    def conjunction(self) -> _Expr:
        parts = [self.unary()]
        while self.accept_word("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else _And(tuple(parts))

    def unary(self) -> _Expr:
        token = self.peek
        if token.is_word("not"):
            self.next()
            self.enter(token)
            inner = self.unary()
            self.depth -= 1
            return _Not(inner)
        if self.accept_punct("("):
            self.enter(token)
            inner = self.expression()
            self.expect_punct(")", "')' to close the parenthesis opened " + _position(self.text, token.pos))
            self.depth -= 1
            return inner
        if token.is_word("true") and not self.is_followed_by_operator():
            self.next()
            return _True()
        return self.predicate()

    def is_followed_by_operator(self) -> bool:
        following = self.at(self.i + 1)
        return (following.kind is _Kind.PUNCT and following.text not in (")", ",")) or following.is_word(
            "in", "all", "between"
        )

    def predicate(self) -> _Expr:
        token = self.peek
        if token.kind is _Kind.IDENT and self.is_call():
            name = token.text.lower()
            if name in ("startswith", "endswith"):
                self.next()
                self.expect_punct("(")
                path = self.field_path()
                self.expect_punct(",", f"',' and the prefix after the field in {token.text}()")
                operand = self.operand()
                self.expect_punct(")", f"')' to close {token.text}()")
                return _Affix(name, path, operand)
            if name == "exists":
                self.next()
                self.expect_punct("(")
                path = self.field_path()
                self.expect_punct(")", "')' to close exists()")
                return _Exists(path)
            if name == "exact":
                self.next()
                self.expect_punct("(")
                self.enter(token)
                inner = self.expression()
                self.depth -= 1
                self.expect_punct(")", "')' to close exact()")
                return _Exact(inner)
            if name in {f.lower() for f in _UNSUPPORTED_FUNCTIONS}:
                raise self.refuse(f"the function {token.text}() is not supported by Roost", token)
            if name != "id":
                raise self.refuse(
                    f"unknown function {token.text}(); Roost supports startsWith, endsWith, exists, "
                    "exact and id",
                    token,
                )
        path = self.field_path()
        if self.accept_word("in"):
            return _In(path, self.operand_list(), all_in=False)
        if self.accept_word("all"):
            self.expect_word("in", "'in' after 'all'")
            return _In(path, self.operand_list(), all_in=True)
        if self.accept_word("between"):
            low = self.operand()
            self.expect_word("and", "'and' between the two bounds of 'between'")
            return _Between(path, low, self.operand())
        op = self.accept_punct("=", "==", "!=", "<>", "<", "<=", ">", ">=")
        if op is None:
            raise self.fail(f"an operator (=, !=, <, <=, >, >=, in, between) after {path}")
        operand = self.operand()
        if op.text in ("!=", "<>"):
            return _Not(_Compare(path, "=", operand))
        return _Compare(path, "=" if op.text == "==" else op.text, operand)

    def is_call(self) -> bool:
        following = self.at(self.i + 1)
        return following.kind is _Kind.PUNCT and following.text == "("

    def field_path(self) -> FieldPath:
        token = self.peek
        if token.is_word("id") and self.is_call():
            self.next()
            self.next()
            self.expect_punct(")", "')' after 'id('")
            return FieldPath((), is_id=True)
        segments = [self.segment()]
        while self.accept_punct("."):
            segments.append(self.segment())
        if self.alias is not None and len(segments) > 1 and segments[0] == self.alias:
            segments.pop(0)
        return FieldPath(tuple(segments))

    def segment(self) -> str:
        token = self.next()
        if token.kind is _Kind.IDENT and not token.is_word("and", "or", "not"):
            return token.text
        if token.kind is _Kind.STRING and token.text:
            return token.text  # the client quotes names that are keywords or hold odd characters
        raise self.fail("a field name", token)

    def operand(self) -> _Operand:
        token = self.next()
        if token.kind is _Kind.PARAM:
            self.parameters.add(token.text)
            return _Param(token.text)
        if token.kind is _Kind.STRING:
            return _Literal(token.text)
        if token.kind is _Kind.NUMBER:
            return _Literal(token.value)
        if token.is_word("true", "false"):
            return _Literal(token.text.lower() == "true")
        if token.is_word("null"):
            return _Literal(None)
        raise self.fail("a value (a string, a number, true, false, null or a $parameter)", token)

    def operand_list(self) -> tuple[_Operand, ...]:
        self.expect_punct("(", "'(' to start the list of values")
        items = [self.operand()]
        while self.accept_punct(","):
            items.append(self.operand())
        self.expect_punct(")", "',' or ')' in the list of values")
        return tuple(items)

    def count_operand(self, clause: str) -> _Operand:
        token = self.next()
        if token.kind is _Kind.PARAM:
            self.parameters.add(token.text)
            return _Param(token.text)
        if token.kind is _Kind.NUMBER and isinstance(token.value, int) and token.value >= 0:
            return _Literal(token.value)
        raise self.fail(f"a whole number or a $parameter after '{clause}'", token)

    def order_keys(self) -> tuple[OrderKey, ...]:
        keys = [self.order_key()]
        while self.accept_punct(","):
            keys.append(self.order_key())
        return tuple(keys)

    def order_key(self) -> OrderKey:
        token = self.peek
        if token.kind is _Kind.IDENT and self.is_call() and not token.is_word("id"):
            raise self.refuse(
                f"ordering by {token.text}() is not supported by Roost; order by a field", token
            )
        path = self.field_path()
        ordering = Ordering.IMPLICIT
        if self.accept_word("as"):
            kind = self.next()
            if kind.kind is not _Kind.IDENT or kind.text.lower() not in _ORDERINGS:
                raise self.fail("string, long, double or alphaNumeric after 'as'", kind)
            ordering = _ORDERINGS[kind.text.lower()]
        descending = False
        if self.accept_word("desc", "descending"):
            descending = True
        else:
            self.accept_word("asc", "ascending")
        nulls_first: bool | None = None
        if self.accept_word("nulls"):
            which = self.next()
            if not which.is_word("first", "last"):
                raise self.fail("'first' or 'last' after 'nulls'", which)
            nulls_first = which.is_word("first")
        return OrderKey(path, descending, ordering, nulls_first)

    def select(self) -> tuple[_Projection, ...]:
        if self.peek.is_word("distinct"):
            raise self.refuse("'select distinct' is not supported by Roost", self.peek)
        start = self.peek
        items = [self.projection_item()]
        while self.accept_punct(","):
            items.append(self.projection_item())
        seen: set[str] = set()
        for item in items:
            if item.alias in seen:
                raise self.refuse(
                    f"the select list names '{item.alias}' twice; give one an 'as' alias", start
                )
            seen.add(item.alias)
        return tuple(items)

    def projection_item(self) -> _Projection:
        token = self.peek
        if token.kind is _Kind.IDENT and self.is_call() and not token.is_word("id"):
            raise self.refuse(f"projecting {token.text}() is not supported by Roost; select fields", token)
        path = self.field_path()
        alias = "Id" if path.is_id else path.segments[-1].removesuffix("[]")
        if self.accept_word("as"):
            name = self.next()
            if name.kind not in (_Kind.IDENT, _Kind.STRING) or not name.text:
                raise self.fail("a name after 'as'", name)
            alias = name.text
        return _Projection(path, alias)

    def include(self) -> tuple[str, ...]:
        paths = [self.include_path()]
        while self.accept_punct(","):
            paths.append(self.include_path())
        return tuple(paths)

    def include_path(self) -> str:
        token = self.peek
        if token.kind is _Kind.IDENT and self.is_call():
            raise self.refuse(
                f"'include {token.text}(...)' is not supported by Roost; include document paths", token
            )
        return str(self.field_path())


def parse(text: str) -> Query:
    """Parse RQL text into a :class:`Query`, or raise :class:`RqlSyntaxError` saying where and what.

    Parameters are not needed here; they are checked when the query runs.
    """
    if not isinstance(text, str):
        raise _error("", 0, "the query must be a string of RQL, such as \"from 'Users'\"")
    if len(text) > MAX_QUERY_LENGTH:
        raise _error(text, MAX_QUERY_LENGTH, f"the query is longer than {MAX_QUERY_LENGTH} characters")
    return _Parser(text).query()
