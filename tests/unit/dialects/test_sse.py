from __future__ import annotations

import time

import pytest

from modelway.dialects.sse import SSEError, SSEParser

STREAM = (b"event: message_start\ndata: {\"a\": 1}\n\n"
          b": a comment\n\n"
          b"data:no-space\n\n"
          b"id: 7\nretry: 100\ndata: first\ndata: second\n\n"
          b"event: ping\r\ndata: {}\r\n\r\n"
          b"data: [DONE]\n\n")
EVENTS = [(b"message_start", b'{"a": 1}'), (b"", b"no-space"), (b"", b"first\nsecond"), (b"ping", b"{}"),
          (b"", b"[DONE]")]


def parse(chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
    parser = SSEParser()
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


def test_events_names_comments_multiline_data_and_crlf() -> None:
    assert parse([STREAM]) == EVENTS


def test_the_same_events_however_the_bytes_are_split() -> None:
    assert parse([STREAM[i:i + 1] for i in range(len(STREAM))]) == EVENTS
    for cut in range(1, len(STREAM)):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EVENTS, cut


def test_a_last_event_without_its_blank_line_is_read_at_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: [DONE]") == [(b"", b"a")]
    assert parser.close() == [(b"", b"[DONE]")]


def test_a_line_longer_than_the_bound_is_refused() -> None:
    parser = SSEParser(max_line=1000)
    parser.feed(b"data: " + b"x" * 500)
    with pytest.raises(SSEError, match="longer than 1000 bytes"):
        parser.feed(b"x" * 600)


def test_an_event_with_more_data_than_the_bound_is_refused() -> None:
    parser = SSEParser(max_line=1000)
    with pytest.raises(SSEError, match="more than 1000 bytes"):
        parser.feed(b"data: " + b"x" * 600 + b"\n" + b"data: " + b"x" * 600 + b"\n")


def test_a_long_line_in_small_chunks_costs_linear_time() -> None:
    """Joining the pending line on every chunk would copy hundreds of GB here (15 s and more)."""
    line = b"data: " + b"x" * (1 << 23)
    chunks = [line[i:i + 64] for i in range(0, len(line), 64)] + [b"\n\n"]
    parser = SSEParser()
    started = time.perf_counter()
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    assert time.perf_counter() - started < 3
    assert events == [(b"", line[6:])]
