"""roost.json_codec: orjson's speed with the standard library's values (big integers, lone surrogates, NaN)."""

from __future__ import annotations

import json

import pytest

from roost import json_codec


def test_values_are_the_standard_librarys() -> None:
    for text in ('{"a":1e16,"b":-0.0,"c":[1.5,2e-7,9223372036854775807],"d":"\\u00e9\\ud83d\\ude00"}',
                 '{"big":123456789012345678901234567890,"neg":-98765432109876543210}', "[]", '"x"'):
        assert repr(json_codec.loads(text)) == repr(json.loads(text))
        value = json.loads(text)
        assert json.loads(json_codec.dumps_bytes(value)) == value


def test_big_integers_are_not_turned_into_floats() -> None:
    value = json_codec.loads('{"n": 123456789012345678901234567890}')
    assert value["n"] == 123456789012345678901234567890 and isinstance(value["n"], int)
    assert json_codec.dumps_bytes({"n": 2**70}) == b'{"n":1180591620717411303424}'


def test_what_orjson_refuses_is_refused_as_json_refuses_it() -> None:
    with pytest.raises(json.JSONDecodeError) as raised:
        json_codec.loads('{"a": [1,]}')
    assert (raised.value.lineno, raised.value.colno) == (1, 10)  # the standard library's position, not orjson's
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        json_codec.loads("[NaN]", parse_constant=lambda name: (_ for _ in ()).throw(ValueError(f"{name} is not valid JSON")))
    assert json_codec.loads('"\\ud800"') == "\ud800"  # kept for the caller's own check (body.py answers 400)
    with pytest.raises(UnicodeEncodeError):
        json_codec.dumps_bytes({"s": "\ud800"})
