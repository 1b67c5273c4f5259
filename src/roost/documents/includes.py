"""RavenDB includes: the ids a document refers to at a path, so that they travel with the answer.

A path is dotted (``Address.Manager``); a segment ending in ``[]`` (``Lines[].Product``) walks every
element of a list, and a list anywhere along the way is walked too, as RavenDB does. The value at the
end may be one id or a list of ids; anything else refers to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from roost.documents.paths import flatten, walk


def referenced_ids(document: Mapping[str, object], path: str) -> list[str]:
    """The document ids ``document`` holds at ``path``, in document order, without duplicates."""
    ids: list[str] = []
    for candidate in flatten(walk(document, path.split("."))):
        if isinstance(candidate, str) and candidate and candidate not in ids:
            ids.append(candidate)
    return ids


def referenced_by_all(documents: Iterable[Mapping[str, object]], paths: Iterable[str]) -> list[str]:
    """Every id any of ``documents`` refers to at any of ``paths``, first occurrence first."""
    seen: dict[str, None] = {}
    paths = list(paths)
    for document in documents:
        for path in paths:
            for doc_id in referenced_ids(document, path):
                seen.setdefault(doc_id)
    return list(seen)
