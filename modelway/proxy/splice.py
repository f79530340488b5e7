"""Setting members of a JSON object in place, byte for byte.

When a deployment runs another model name than the client asked for, or merges `options`,
the provider gets the client's bytes with only those members' values replaced (or, where
absent, inserted after the opening brace): numbers, escapes, whitespace and key order reach
it exactly as the client wrote them (SPEC section 5). Re-encoding the parsed body would
not: orjson reads an integer above 64 bits as a float, and writes floats its own way.

The document has been parsed by orjson already: it is valid JSON, and `payload` is what it
holds. Finding a top-level member usually takes three substring searches in C: when the
key, written plainly (`"model"`), occurs once in the whole document and none of its
characters is written as a `\\u` escape anywhere (`\\u006…` for "model"), that occurrence
is the top-level key, as the key must be spelled somehow and there is no other way to spell
it. Otherwise (the name also occurs nested, inside a string or escaped, or the key is
repeated) the top level is scanned token by token, and every member of that name is
replaced: a parser taking the first of repeated keys then reads what one taking the last
does. Anything unexpected raises Unspliceable, and the caller re-encodes instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
SCALAR = re.compile(rb"[^,}\] \t\r\n]+")  # a number, true, false or null
SPACE = re.compile(rb"[ \t\r\n]*")
# Printable ASCII but the characters JSON may also escape by name ('"', '\\', '/'): a key of
# these has one spelling without \u escapes.
PLAIN_KEY = re.compile(r"[ !#-.0-\[\]-~]+")

OPEN_BRACE, CLOSE_BRACE, COLON, COMMA = b"{", b"}", b":", b","
QUOTE_BYTE = ord('"')
OPENING = frozenset(b"[{")
WHITESPACE = frozenset((b" ", b"\t", b"\r", b"\n"))

Span = tuple[int, int]  # a member value's [start, end) in the document


class Unspliceable(ValueError):
    """The document is not shaped as this module expects."""


def set_members(doc: bytes, payload: Mapping[str, Any], changes: Mapping[str, bytes]) -> bytes:
    """`doc` (a JSON object, parsed into `payload`) with each top-level member in `changes`
    set to the given encoded JSON value: every member of that name replaced, or one
    inserted first when there is none."""
    if len(changes) == 1:  # the common case: only the model changes, and is found by search
        ((key, value),) = changes.items()
        found = find_plain(doc, key) if key in payload else None
        if found is not None:
            ((start, end),) = found
            return b"".join((doc[:start], value, doc[end:]))
    spans: list[tuple[int, int, bytes]] = []
    inserted: list[bytes] = []
    scanned: dict[str, list[Span]] | None = None
    for key, value in changes.items():
        if key not in payload:
            inserted.append(orjson.dumps(key) + b":" + value)
            continue
        found = find_plain(doc, key)
        if found is None:
            if scanned is None:
                scanned = top_level(doc)
            found = scanned.get(key)
            if not found:
                raise Unspliceable(f"no top-level member {key!r}")
        spans += [(start, end, value) for start, end in found]
    spans.sort()
    parts: list[bytes] = []
    pos = 0
    if inserted:
        pos = object_start(doc) + 1
        parts += (doc[:pos], b",".join(inserted), COMMA if payload else b"")
    for start, end, value in spans:
        if start < pos:
            raise Unspliceable("overlapping members")
        parts += (doc[pos:start], value)
        pos = end
    parts.append(doc[pos:])
    return b"".join(parts)


def member_value(doc: bytes, key: str) -> bytes:
    """The bytes of the top-level member `key` (the last one, as orjson reads repeated keys)."""
    found = find_plain(doc, key) or top_level(doc).get(key)
    if not found:
        raise Unspliceable(f"no top-level member {key!r}")
    start, end = found[-1]
    return doc[start:end]


@lru_cache(maxsize=64)
def plain_spelling(key: str) -> tuple[bytes, tuple[bytes, ...]] | None:
    """`key` written plainly as a JSON string, and the `\\u00X` prefixes that would spell a
    character of it otherwise; None for a key with more than one escape-free spelling."""
    if PLAIN_KEY.fullmatch(key) is None:
        return None
    escapes = tuple(sorted({b"\\u00%d" % (ord(char) >> 4) for char in key}))
    return b'"' + key.encode("ascii") + b'"', escapes


def find_plain(doc: bytes, key: str) -> list[Span] | None:
    """The value span of `key` found by substring searches alone, or None when they cannot
    tell (see the module's docstring)."""
    spelling = plain_spelling(key)
    if spelling is None:
        return None
    needle, escapes = spelling
    at = doc.find(needle)
    if at < 0 or doc.find(needle, at + 1) >= 0:
        return None
    if b"\\" in doc:  # one byte: found at memchr speed, while most bodies have no escape of a letter
        for escape in escapes:
            if escape in doc:
                return None
    pos = at + len(needle)
    if doc[pos : pos + 1] != COLON:
        pos = SPACE.match(doc, pos).end()  # type: ignore[union-attr]
        if doc[pos : pos + 1] != COLON:
            return None
    start = pos + 1
    if doc[start : start + 1] in WHITESPACE:
        start = SPACE.match(doc, start).end()  # type: ignore[union-attr]
    return [(start, value_end(doc, start))]


def top_level(doc: bytes) -> dict[str, list[Span]]:
    """Every top-level member's value span, by key (repeated keys: each span, in order)."""
    members: dict[str, list[Span]] = {}
    pos = object_start(doc) + 1
    pos = SPACE.match(doc, pos).end()  # type: ignore[union-attr]
    if doc[pos : pos + 1] == CLOSE_BRACE:
        return members
    while True:
        key = STRING.match(doc, pos)
        if key is None:
            raise Unspliceable(f"expected a key at byte {pos}")
        pos = SPACE.match(doc, key.end()).end()  # type: ignore[union-attr]
        if doc[pos : pos + 1] != COLON:
            raise Unspliceable(f"expected ':' at byte {pos}")
        start = SPACE.match(doc, pos + 1).end()  # type: ignore[union-attr]
        end = value_end(doc, start)
        members.setdefault(orjson.loads(key.group()), []).append((start, end))
        pos = SPACE.match(doc, end).end()  # type: ignore[union-attr]
        separator = doc[pos : pos + 1]
        if separator == CLOSE_BRACE:
            return members
        if separator != COMMA:
            raise Unspliceable(f"expected ',' or '}}' at byte {pos}")
        pos = SPACE.match(doc, pos + 1).end()  # type: ignore[union-attr]


def value_end(doc: bytes, start: int) -> int:
    """Where the JSON value starting at `start` ends."""
    first = doc[start] if start < len(doc) else 0
    if first == QUOTE_BYTE:
        string = STRING.match(doc, start)
        if string is None:
            raise Unspliceable(f"unterminated string at byte {start}")
        return string.end()
    if first in OPENING:
        depth = 0
        for token in STRING_OR_BRACKET.finditer(doc, start):
            char = doc[token.start()]
            if char in OPENING:
                depth += 1
            elif char != QUOTE_BYTE:
                depth -= 1
                if depth == 0:
                    return token.end()
        raise Unspliceable(f"unclosed array or object at byte {start}")
    scalar = SCALAR.match(doc, start)
    if scalar is None:
        raise Unspliceable(f"expected a value at byte {start}")
    return scalar.end()


def object_start(doc: bytes) -> int:
    pos = SPACE.match(doc).end()  # type: ignore[union-attr]
    if doc[pos : pos + 1] != OPEN_BRACE:
        raise Unspliceable("not a JSON object")
    return pos


def with_model(
    doc: bytes,
    payload: Mapping[str, Any],
    key_path: tuple[str, ...],
    model: str,
    options: Mapping[str, Any] | None = None,
) -> bytes:
    """The request body with `model` at `key_path` (dots of model_mapping.key) and the
    deployment's `options` merged over the client's members (the model wins)."""
    head = key_path[0]
    if not options and len(key_path) == 1 and head in payload:  # the common case, kept short
        found = find_plain(doc, head)
        if found is not None:
            ((start, end),) = found
            return b"".join((doc[:start], orjson.dumps(model), doc[end:]))
    changes = {key: encode(value) for key, value in (options or {}).items()}
    if len(key_path) == 1:
        changes[head] = orjson.dumps(model)
    elif options and head in options:  # the deployment's object replaces the client's: set it there
        changes[head] = encode(nested({head: options[head]}, key_path, model)[head])
    elif isinstance(payload.get(head), dict):
        changes[head] = with_model(member_value(doc, head), payload[head], key_path[1:], model)
    else:
        changes[head] = orjson.dumps(nested({}, key_path, model)[head])
    return set_members(doc, payload, changes)


def encode(value: Any) -> bytes:
    """A config value as JSON: orjson, or the standard library for what orjson refuses
    (an integer above 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def nested(payload: dict[str, Any], key_path: tuple[str, ...], model: str) -> dict[str, Any]:
    """A shallow copy of `payload` with `model` at `key_path`; objects on the path are copied,
    anything else on it is replaced by an object."""
    out = dict(payload)
    node = out
    for part in key_path[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, dict) else {}
        node[part] = child
        node = child
    node[key_path[-1]] = model
    return out
