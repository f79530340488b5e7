"""The SSE data-line reader: payloads whatever the byte splits, a bound on an unfinished line."""

from __future__ import annotations

import random

import pytest

from modelway.dialects.responses_sse import MAX_LINE, DataLines, SSELineTooLong

STREAM = (
    b": keep-alive\n\n"
    b'data: {"a":1}\n\n'
    b"event: message\r\n"
    b'data:{"b":"x\xc3\xa9"}\r\n\r\n'
    b"id: 7\nretry: 100\n"
    b"data: [DONE]\n\n"
)
PAYLOADS = [b'{"a":1}', b'{"b":"x\xc3\xa9"}', b"[DONE]"]


def read(pieces: list[bytes]) -> list[bytes]:
    lines = DataLines()
    out = []
    for piece in pieces:
        out += lines.feed(piece)
    return out + lines.close()


def test_payloads_of_a_whole_stream_skip_comments_and_other_fields() -> None:
    assert read([STREAM]) == PAYLOADS


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_any_split_point_gives_the_same_payloads(cut: int) -> None:
    assert read([STREAM[:cut], STREAM[cut:]]) == PAYLOADS


def test_byte_at_a_time_and_random_splits() -> None:
    assert read([STREAM[i : i + 1] for i in range(len(STREAM))]) == PAYLOADS
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        assert read(pieces) == PAYLOADS


def test_a_last_line_without_newline_is_read_at_close() -> None:
    lines = DataLines()
    assert lines.feed(b'data: {"a":1}\n\ndata: {"b"') == [b'{"a":1}']
    assert lines.feed(b":2}") == []
    assert lines.close() == [b'{"b":2}']
    assert lines.close() == []


def test_a_long_line_in_small_pieces_is_kept_whole() -> None:
    text = b"x" * 200_000
    lines = DataLines()
    out = lines.feed(b"data: ")
    for i in range(0, len(text), 1000):
        out += lines.feed(text[i : i + 1000])
    out += lines.feed(b"\n\n")
    assert out == [text]


def test_an_unfinished_line_over_the_bound_is_refused() -> None:
    lines = DataLines()
    lines.feed(b"data: " + b"x" * (MAX_LINE - 10))
    with pytest.raises(SSELineTooLong, match="longer than"):
        lines.feed(b"y" * 20)
