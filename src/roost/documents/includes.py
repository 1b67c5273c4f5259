"""RavenDB includes: the ids a document refers to at a path, so that they travel with the answer.

A path is dotted (``Address.Manager``); a segment ending in ``[]`` (``Lines[].Product``) walks every
element of a list, and a list anywhere along the way is walked too, as RavenDB does. The value at the
end may be one id or a list of ids; anything else refers to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def referenced_ids(document: Mapping[str, object], path: str) -> list[str]:
    """The document ids ``document`` holds at ``path``, in document order, without duplicates."""
    current: list[object] = [document]
    for segment in path.split("."):
        key = segment.removesuffix("[]")
        following: list[object] = []
        for item in current:
            for node in item if isinstance(item, list) else [item]:
                if isinstance(node, Mapping) and key in node:
                    following.append(node[key])
        current = following
    ids: list[str] = []
    for value in current:
        for candidate in value if isinstance(value, list) else [value]:
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
