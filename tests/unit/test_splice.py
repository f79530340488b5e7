"""Setting members of a JSON body in place (modelway/proxy/splice.py), for any valid JSON:
documents of random values written in random ways (whitespace, escapes in keys and
strings, number spellings, repeated keys), edited, then read back by a parser that keeps
every number's text (json with parse_int/parse_float=str): the edit is exactly what was
asked, and every other byte's meaning, numbers' spelling included, is untouched."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelway.proxy.splice import encode, find_plain, set_members, top_level, with_model

KEYS = st.sampled_from(["model", "models", "mode", "Model", "meta", "messages", "x", "model\n", "mo/del"]) | st.text(
    max_size=4
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(['say "model": 1', "model", '"model"', "\\u006d", "{[", "]}"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.lists(st.tuples(KEYS, inner), max_size=4),
    max_leaves=20,
)
SPACE = st.sampled_from(["", " ", "\n", "\t", "\r\n  "])
SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def u_escape(char: str, upper: bool) -> str:
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        units = [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
    else:
        units = [code]
    return "".join(("\\u%04X" if upper else "\\u%04x") % unit for unit in units)


def render_string(data: st.DataObject, text: str) -> str:
    out = ['"']
    mixed = data.draw(st.integers(0, 3)) == 0  # most strings are written plainly, some escaped at random
    for char in text:
        how = data.draw(st.sampled_from(["plain", "plain", "u", "U", "short"])) if mixed else "plain"
        if how == "u" or how == "U":
            out.append(u_escape(char, how == "U"))
        elif char in SHORT and (how == "short" or char in '"\\' or ord(char) < 0x20):
            out.append(SHORT[char])
        elif ord(char) < 0x20:
            out.append(u_escape(char, False))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def render(data: st.DataObject, value: Any) -> str:
    """`value` as JSON text, written one of many ways. Lists of (key, value) tuples are
    objects (so keys may repeat); plain lists are arrays."""
    ws = lambda: data.draw(SPACE)  # noqa: E731
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return data.draw(st.sampled_from([repr(value), format(value, ".17g"), repr(value).replace("e", "E")]))
    if isinstance(value, str):
        return render_string(data, value)
    if value and all(isinstance(item, tuple) for item in value):
        pairs = [item for item in value if item]
        inner = ",".join(f"{ws()}{render_string(data, k)}{ws()}:{ws()}{render(data, v)}{ws()}" for k, v in pairs)
        return "{" + (inner or ws()) + "}"
    return "[" + (",".join(f"{ws()}{render(data, item)}{ws()}" for item in value) or ws()) + "]"


def exact(text: bytes) -> Any:
    """The document as a parser keeping every number's spelling reads it."""
    return json.loads(text, parse_int=str, parse_float=str)


@st.composite
def documents(draw: st.DrawFn, with_model_key: bool | None = None) -> bytes:
    """A JSON object, maybe with one or more top-level "model" members (the last a string)."""
    members = draw(st.lists(st.tuples(KEYS, VALUES), max_size=6))
    has_model = draw(st.booleans()) if with_model_key is None else with_model_key
    members = [m for m in members if m[0] != "model"]
    if has_model:
        earlier = draw(st.lists(VALUES, max_size=2))  # repeated keys: every one is replaced
        for value in earlier:
            members.insert(draw(st.integers(0, len(members))), ("model", value))
        members.insert(draw(st.integers(0, len(members))), ("model", draw(st.text(max_size=6))))
        # the last "model" must be a string: move any later ones before it
        last = max(i for i, m in enumerate(members) if m[0] == "model")
        if not isinstance(members[last][1], str):
            members.append(("model", draw(st.text(max_size=6))))
    data = draw(st.data())
    doc = draw(SPACE) + render(data, members or [()]) + draw(SPACE)
    return doc.encode()


OPTIONS = st.dictionaries(st.sampled_from(["max_tokens", "temperature", "x", "mode", "meta"]), SCALARS, max_size=3)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(documents(), st.text(max_size=10), OPTIONS)
def test_the_model_and_options_are_set_and_nothing_else_changes(doc: bytes, model: str, options: dict) -> None:
    payload = orjson.loads(doc)
    out = with_model(doc, payload, ("model",), model, options)
    want = exact(doc)
    for key, value in options.items():
        want[key] = exact(encode(value))  # config values: encoded, not the client's to keep
    want["model"] = model
    assert exact(out) == want
    top = json.loads(out, object_pairs_hook=list)
    assert [v for k, v in top if k == "model"] == [model] * sum(k == "model" for k, _ in top)  # every repeat
    assert orjson.loads(out)["model"] == model


@FUZZ
@given(documents(), st.text(max_size=10))
def test_a_nested_key_path_is_set_in_place(doc: bytes, model: str) -> None:
    payload = orjson.loads(doc)
    out = with_model(doc, payload, ("meta", "model"), model)
    want = exact(doc)
    meta = want.get("meta")
    want["meta"] = {**meta, "model": model} if isinstance(meta, dict) else {"model": model}
    assert exact(out) == want


@FUZZ
@given(documents(with_model_key=True))
def test_the_scan_finds_what_a_parser_reads(doc: bytes) -> None:
    payload = orjson.loads(doc)
    members = top_level(doc)
    assert set(members) == set(payload)
    for key, spans in members.items():
        start, end = spans[-1]
        assert orjson.loads(doc[start:end]) == payload[key]
    plain = find_plain(doc, "model")
    if plain is not None:
        assert plain == members["model"]


def test_the_plain_search_is_used_when_it_can_tell() -> None:
    doc = b'{"messages": [{"role": "user", "content": "say \\"model\\" \\u00e9"}], "model" :  "a", "n": 1}'
    assert find_plain(doc, "model") is not None
    assert set_members(doc, orjson.loads(doc), {"model": b'"b"'}) == doc.replace(b'"a"', b'"b"')


@pytest.mark.parametrize(
    "doc",
    [
        b'{"meta": {"model": "x"}, "model": "a"}',  # a nested member of the name
        b'{"mod\\u0065l": "a"}',  # the key itself escaped
        b'{"model": "z", "x": "\\u006d", "model": "a"}',  # repeated, and an escape elsewhere
        b'{"x": ["model"], "model": "a"}',  # the name as a string value
    ],
)
def test_the_scan_is_used_when_the_search_cannot_tell(doc: bytes) -> None:
    assert find_plain(doc, "model") is None
    out = set_members(doc, orjson.loads(doc), {"model": b'"b"'})
    assert [v for k, v in json.loads(out, object_pairs_hook=list) if k == "model"][-1] == "b"
    assert all(v == "b" for k, v in json.loads(out, object_pairs_hook=list) if k == "model")


def test_members_absent_are_inserted_first() -> None:
    assert set_members(b' {} ', {}, {"model": b'"m"'}) == b' {"model":"m"} '
    assert set_members(b'{"a": 1}', {"a": 1}, {"model": b'"m"', "k": b"2"}) == b'{"model":"m","k":2,"a": 1}'
