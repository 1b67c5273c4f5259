"""Database names and document ids: what is refused, said in words a person reads as written."""

from __future__ import annotations

import pytest

from roost.errors import BadRequestError
from roost.names import database_name, document_id


def test_the_path_separator_message_shows_one_backslash() -> None:
    with pytest.raises(BadRequestError) as refused:
        database_name("shop\\orders")
    assert refused.value.message.endswith("contains a path separator ('/' or '\\').")
    assert "\\\\" not in refused.value.message


def test_names_and_ids_that_are_fine_pass() -> None:
    assert database_name("shop.eu-1") == "shop.eu-1"
    assert document_id("users/1-A") == "users/1-A"
    with pytest.raises(BadRequestError):
        document_id("users\\1")
