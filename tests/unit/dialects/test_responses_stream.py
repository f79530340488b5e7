"""chat/completions stream → Responses events: golden cases, each event validated with the SDK's
own types and replayed through the SDK's stream accumulator, the same events whatever the byte
splits, and how a stream ends (completed, incomplete, failed)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from modelway.dialects.responses_to_openai import StreamTranslator, answer_context

from .responses_golden import TOKEN, cases, check, load, steady

EVENT = TypeAdapter(ResponseStreamEvent)
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
STREAMS = cases("stream")


def run(case: dict[str, Any], pieces: list[bytes]) -> tuple[bytes, StreamTranslator]:
    translator = StreamTranslator(model=case["model"], context=answer_context(case["request"]), token=TOKEN)
    out = b"".join(translator.feed(piece) for piece in pieces)
    end = case["end"]
    out += translator.finish() if end == "finish" else translator.fail(end["fail"])
    assert translator.finished
    assert translator.feed(b'data: {"choices":[{"delta":{"content":"late"}}]}\n\n') == b""  # nothing after the end
    assert translator.finish() == b"" and translator.fail("again") == b""
    return out, translator


def frames(raw: bytes) -> list[dict[str, Any]]:
    """The payloads of the translator's SSE output, checking OpenAI's framing of each."""
    assert raw.endswith(b"\n\n")
    payloads = []
    for block in raw[:-2].split(b"\n\n"):
        event, data = block.split(b"\n")
        assert event.startswith(b"event: ") and data.startswith(b"data: ")
        payload = orjson.loads(data[6:])
        assert payload["type"] == event[7:].decode()
        payloads.append(payload)
    return payloads


def upstream(case: dict[str, Any]) -> bytes:
    return "".join(case["upstream"]).encode()


def check_order(events: list[dict[str, Any]]) -> None:
    """What clients wait for: created and in_progress first, an item added before anything about
    it and done after, one terminal event last carrying every item as it was done."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in TERMINAL and not any(e["type"] in TERMINAL for e in events[:-1])
    final = events[-1]["response"]
    added: list[str] = []
    done: dict[str, dict[str, Any]] = {}
    for event in events[2:-1]:
        if event["type"] == "response.output_item.added":
            assert event["output_index"] == len(added)
            added.append(event["item"]["id"])
        elif event["type"] == "response.output_item.done":
            assert added[event["output_index"]] == event["item"]["id"] not in done
            done[event["item"]["id"]] = event["item"]
        else:
            assert event["item_id"] in added and event["item_id"] not in done
    assert [item["id"] for item in final["output"]] == added
    if final["status"] != "failed":
        assert final["output"] == [done[ident] for ident in added]
        assert final["usage"] is None or final["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    case = load(path)
    raw, _ = run(case, [piece.encode() for piece in case["upstream"]])
    events = frames(raw)
    for event in events:
        EVENT.validate_python(event)
    check_order(events)
    check(path, case, steady(events))


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_the_sdk_accumulates_the_events_into_the_final_response(path: Path) -> None:
    """`client.responses.stream()` folds events with this state, which refuses an item it was not
    told about, a delta before its part, a changed identity or an unfinished item at the end."""
    case = load(path)
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    handled: list[Any] = []
    for payload in frames(run(case, [upstream(case)])[0]):
        handled = state.handle_event(EVENT.validate_python(payload))
    last = handled[-1]
    if last.type == "response.completed":
        ours = payload["response"]["output"]
        assert [(item.type, item.id) for item in last.response.output] == [(i["type"], i["id"]) for i in ours]
        texts = [p["text"] for i in ours if i["type"] == "message" for p in i["content"] if p["type"] == "output_text"]
        assert last.response.output_text == "".join(texts)


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_any_split_of_the_upstream_bytes_gives_the_same_events(path: Path) -> None:
    case = load(path)
    data = upstream(case)
    expected = steady(frames(run(case, [data])[0]))
    for cut in range(1, len(data)):
        assert steady(frames(run(case, [data[:cut], data[cut:]])[0])) == expected, f"split at byte {cut}"
    assert steady(frames(run(case, [data[i : i + 1] for i in range(len(data))])[0])) == expected
    rng = random.Random(3)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(data)), 8))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert steady(frames(run(case, pieces)[0])) == expected


def test_how_each_golden_stream_ends() -> None:
    ends = {}
    for path in STREAMS:
        case = load(path)
        _, translator = run(case, [upstream(case)])
        ends[path.stem] = translator.failed
    assert ends == {
        "stream_broken": True,
        "stream_interleaved_calls": False,
        "stream_length": False,
        "stream_reasoning_tools": False,
        "stream_refusal": False,
        "stream_text": False,
        "stream_unfinished": True,
        "stream_upstream_error": True,
        "stream_vllm_no_done": False,
    }


def events_of(*chunks: bytes, fail: str | None = None) -> list[dict[str, Any]]:
    translator = StreamTranslator(model="m")
    raw = b"".join(translator.feed(chunk) for chunk in chunks)
    raw += translator.fail(fail) if fail is not None else translator.finish()
    return frames(raw)


def test_a_break_before_any_upstream_event_still_opens_and_fails_the_response() -> None:
    events = events_of(fail="connect timeout")
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "connect timeout"}


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b"data: {not json\n\n", "not JSON"),
        (b"data: [1]\n\n", "not a JSON object"),
        (b'data: {"object":"error","message":"bad"}\n\n', "reported an error: bad"),
    ],
)
def test_a_malformed_or_error_event_fails_the_response(line: bytes, words: str) -> None:
    events = events_of(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', line)
    assert events[-1]["type"] == "response.failed"
    assert words in events[-1]["response"]["error"]["message"]


def test_an_endless_sse_line_fails_the_response() -> None:
    translator = StreamTranslator(model="m")
    translator.feed(b"data: " + b"x" * (16 * 1024 * 1024))
    assert translator.failed
    assert translator.feed(b"x") == b""


def test_usage_is_null_when_the_upstream_gives_none() -> None:
    events = events_of(b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["usage"] is None


class CountingJSON:
    """orjson, counting its calls."""

    def __init__(self) -> None:
        self.loads_calls = 0
        self.dumps_calls = 0
        self.JSONDecodeError = orjson.JSONDecodeError

    def loads(self, data: bytes) -> Any:
        self.loads_calls += 1
        return orjson.loads(data)

    def dumps(self, value: Any) -> bytes:
        self.dumps_calls += 1
        return orjson.dumps(value)


def test_a_delta_costs_one_parse_and_one_dump_and_its_output_does_not_grow(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingJSON()
    monkeypatch.setattr("modelway.dialects.responses_stream.orjson", counting)
    translator = StreamTranslator(model="m")
    translator.feed(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n')  # opens the response, item and part
    chunk = b'data: {"choices":[{"delta":{"content":"ab"}}]}\n\n'
    before = (counting.loads_calls, counting.dumps_calls)
    sizes = [len(translator.feed(chunk)) for _ in range(2000)]
    assert (counting.loads_calls - before[0], counting.dumps_calls - before[1]) == (2000, 2000)
    assert max(sizes) - min(sizes) <= 3  # only the sequence_number's digits grow, not the text so far
    end = translator.feed(b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    text_done = next(e for e in frames(end) if e["type"] == "response.output_text.done")
    assert text_done["text"] == "a" + "ab" * 2000
