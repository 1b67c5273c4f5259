"""Document paths, walked one way for includes and for RQL (``Address.City``, ``Lines[].Product``).

A path is dotted; a segment may end in ``[]`` (``Lines[].Product``), and a list met anywhere along the way is
walked element by element whether or not the segment says ``[]``, as RavenDB does (users write both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def walk(document: object, segments: Iterable[str]) -> list[object]:
    """The values ``segments`` reach in ``document``, in document order; [] when the path reaches nothing.

    A value that is itself a list at the end is returned as one value: callers flatten it as they need.
    """
    current: list[object] = [document]
    for segment in segments:
        key = segment.removesuffix("[]")
        following: list[object] = []
        for item in current:
            for node in item if isinstance(item, list) else [item]:
                if isinstance(node, Mapping) and key in node:
                    following.append(node[key])
        if not following:
            return []
        current = following
    return current


def flatten(values: Iterable[object]) -> list[object]:
    """Lists at the end of a path count as their elements (a multi-valued field)."""
    flat: list[object] = []
    for value in values:
        if isinstance(value, list):
            flat.extend(value)
        else:
            flat.append(value)
    return flat
