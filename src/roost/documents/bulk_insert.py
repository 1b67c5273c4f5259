"""RavenDB's bulk insert stream: one JSON array of commands (``[{"Id": ..., "Type": "PUT", "Document": {...}},
...]``), parsed as it arrives so that server memory stays flat however many documents the stream holds.

The parser keeps only the text not yet parsed (at most one command beyond what the last chunk completed), decodes
one command at a time with the standard library's C scanner, and retries an incomplete command only once its
pending text has doubled, so that a large document arriving in small chunks is parsed in linear time.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from roost.documents.store import DocumentStore, counters_command
from roost.errors import BulkInsertProtocolError
from roost.names import document_id
from roost.storage.base import BatchCommand

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A \uD800-\uDFFF escape: the only way a decoded UTF-8 text yields a lone surrogate through the JSON scanner.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Command types of RavenDB's stream that Roost does not take yet: named in the refusal.
_NOT_YET = ("AttachmentPUT", "TimeSeriesBulkInsert", "TimeSeriesBulkInsertWithTypedValues")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class CommandStream:
    """Feed bytes in, get complete command objects out; ``finish`` at the end of the body checks the array closed.

    ``max_command`` bounds the text of one command (the server's body limit): beyond it the stream is refused
    instead of buffered.
    """

    def __init__(self, max_command: int) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._scanner = json.JSONDecoder(parse_constant=_no_constants)
        self._text = ""
        self._max_command = max_command
        self._started = False  # the opening '[' was read
        self._closed = False  # the closing ']' was read
        self._first = True  # no command read yet (no ',' expected)
        self._retry_at = 0  # pending length at which an incomplete command is tried again
        self.commands_read = 0
        self._error: BulkInsertProtocolError | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.check()
        return self._add(self._decoder.decode(data), final=False)

    def _add(self, text: str, *, final: bool) -> list[dict[str, Any]]:
        bad = _UNDECODABLE.search(text)  # what surrogateescape kept of a byte that is not UTF-8
        if bad is not None:
            self._text += text[:bad.start()]
            out = self._parse(final=False)
            if self._error is None:
                self._error = self._violation("the stream is not UTF-8")
            return out
        self._text += text
        if not final and len(self._text) < self._retry_at:
            return []
        return self._parse(final=final)

    def finish(self) -> list[dict[str, Any]]:
        self.check()
        commands = self._add(self._decoder.decode(b"", final=True), final=True)
        if self._error is not None:
            return commands
        if not self._started and not self._text.strip():
            return commands  # an empty body: a bulk insert that stored nothing (the client opens none then)
        if not self._closed:
            raise self._violation("the stream ends before the closing ']' of its array of commands")
        return commands

    def _violation(self, what: str) -> BulkInsertProtocolError:
        return BulkInsertProtocolError(f"Bulk insert stream, command #{self.commands_read + 1}: {what}.")

    def check(self) -> None:
        """Raise the violation found after the commands the last ``feed`` or ``finish`` returned."""
        if self._error is not None:
            raise self._error

    def _parse(self, *, final: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            self._parse_into(out, final=final)
        except BulkInsertProtocolError as exc:
            self._error = exc  # the commands before it are good: the caller stores them, then check() raises
            self._text = ""
        return out

    def _parse_into(self, out: list[dict[str, Any]], *, final: bool) -> None:
        text, pos = self._text, 0
        escapes = _SURROGATE_ESCAPE.search(text) is not None  # rare: only then is each command checked
        while True:
            pos = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string
            if pos == len(text):
                break
            if self._closed:
                raise self._violation("nothing may follow the closing ']'")
            if not self._started:
                if text[pos] != "[":
                    raise self._violation("the stream must be a JSON array of commands, starting with '['")
                self._started, pos = True, pos + 1
                continue
            if text[pos] == "]":
                self._closed, pos = True, pos + 1
                continue
            element = pos  # where this command starts, its ',' included: kept whole when it is incomplete
            if not self._first:
                if text[pos] != ",":
                    raise self._violation("commands must be separated by ','")
                after = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
                if after == len(text):
                    break  # the ',' stays for the next chunk
                pos = after
            if text[pos] != "{":
                raise self._violation("each command must be a JSON object")
            try:
                command, end = self._scanner.raw_decode(text, pos)
            except (json.JSONDecodeError, ValueError, RecursionError) as exc:
                pending = len(text) - pos
                if final or pending > self._max_command:
                    if pending > self._max_command:
                        raise self._violation(f"a command is larger than the limit of {self._max_command} "
                                              "characters (Http.MaxBodySize)") from None
                    raise self._violation(f"malformed JSON ({exc})") from None
                self._retry_at = 2 * pending
                pos = element
                break
            if escapes and _SURROGATE_ESCAPE.search(text, pos, end) and not _valid_unicode(command):
                raise self._violation("invalid Unicode (a lone UTF-16 surrogate such as \\ud800)")
            out.append(command)
            self.commands_read += 1
            self._first = False
            pos = end
            if command.get("Type") in _NOT_YET:
                break  # binary content may follow (an attachment's bytes): batch_command refuses the command
        self._text = text[pos:]
        if not self._text:
            self._retry_at = 0


def _valid_unicode(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def batch_command(documents: DocumentStore, raw: dict[str, Any], index: int) -> BatchCommand:
    """One command of the stream as a storage command, checked whole (id, document, counters) before any write."""
    where = f"Bulk insert stream, command #{index}"
    kind = raw.get("Type")
    if kind == "PUT":
        doc_id = document_id(raw.get("Id"))
        if doc_id.endswith("|"):
            raise BulkInsertProtocolError(f"{where}: a bulk insert names its ids; '{doc_id[:60]}' ends with '|'.")
        if not isinstance(raw.get("Document"), dict):
            raise BulkInsertProtocolError(f"{where}: a PUT needs a Document, a JSON object.")
        return documents.put_command(doc_id, raw["Document"], None)
    if kind == "Counters":
        counters = raw.get("Counters")
        if not isinstance(counters, dict):
            raise BulkInsertProtocolError(f"{where}: a Counters command needs Counters, a JSON object.")
        raw_id = raw.get("Id") if raw.get("Id") is not None else counters.get("DocumentId")
        return counters_command(raw_id, counters.get("Operations"), where)
    if kind in _NOT_YET:
        raise BulkInsertProtocolError(f"{where}: Type '{kind}' is not supported by Roost yet; store attachments "
                                          "and time series outside the bulk insert.")
    raise BulkInsertProtocolError(f"{where}: Type '{str(kind)[:60]}' is not a bulk insert command; use PUT or "
                                      "Counters.")
