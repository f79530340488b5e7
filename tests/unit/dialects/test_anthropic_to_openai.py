"""Client speaks Anthropic Messages, provider speaks OpenAI chat: beyond the golden cases,
the outputs are checked against the SDKs' own types and stream accumulation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.types import Message
from anthropic.types.shared import ErrorResponse

from modelway.dialects import anthropic_to_openai as a2o
from modelway.errors import BadRequest

from . import golden, sdk, streams

DIRECTION = "anthropic_to_openai"
REQUESTS = golden.files("anthropic", "request", DIRECTION)
ANSWERS = golden.files("anthropic", "answer", DIRECTION)
STREAMS = golden.files("anthropic", "stream", DIRECTION)


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_requests_are_valid_chat_completions_requests(path: Path) -> None:
    case = golden.load(path)
    sdk.validate_openai_request(golden.actual(case))


@pytest.mark.parametrize("path", ANSWERS, ids=lambda p: p.stem)
def test_answers_are_valid_messages(path: Path) -> None:
    Message.model_validate(golden.actual(golden.load(path)))


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_stream_frames_are_valid_events_in_order(path: Path) -> None:
    frames = golden.actual(golden.load(path))
    assert all(f["event"] == f["data"]["type"] for f in frames)
    kinds = [f["event"] for f in frames]
    assert kinds[0] == "message_start" and kinds.count("message_start") == 1
    assert kinds[-1] in ("message_stop", "error")
    if kinds[-1] == "error":
        assert "message_stop" not in kinds and "message_delta" not in kinds
        ErrorResponse.model_validate(frames[-1]["data"])
    else:
        assert kinds[-2] == "message_delta" and kinds.count("message_stop") == 1
    opened: list[int] = []
    is_open = False
    for frame in frames[:-1] if kinds[-1] == "error" else frames:
        if frame["event"] != "error":
            sdk.ANTHROPIC_EVENT.validate_python(frame["data"])
        if frame["event"] == "content_block_start":
            assert not is_open and frame["data"]["index"] == len(opened)
            opened.append(frame["data"]["index"])
            is_open = True
        elif frame["event"] == "content_block_delta":
            assert is_open and frame["data"]["index"] == opened[-1]
        elif frame["event"] == "content_block_stop":
            assert is_open and frame["data"]["index"] == opened[-1]
            is_open = False
        elif frame["event"] in ("message_delta", "message_stop"):
            assert not is_open


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_streams_do_not_depend_on_where_upstream_bytes_split(path: Path) -> None:
    streams.assert_split_anywhere(golden.load(path))


FINAL_MESSAGES: dict[str, dict[str, Any]] = {
    "a2o_stream_text": {
        "content": [{"type": "thinking", "thinking": "The user greets me.", "signature": ""},
                    {"type": "text", "text": "Héllo, 世界!"}],
        "stop_reason": "end_turn", "input_tokens": 476, "output_tokens": 12, "cache_read_input_tokens": 1024,
    },
    "a2o_stream_tools": {
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_b", "name": "weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "input_tokens": 80, "output_tokens": 40, "cache_read_input_tokens": 0,
    },
    "a2o_stream_late_name": {
        "content": [{"type": "tool_use", "id": "call_7_2446b15b", "name": "search", "input": {"q": 1}}],
        "stop_reason": "tool_use", "input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
    },
    "a2o_stream_stop_sequence": {
        "content": [{"type": "text", "text": "1, 2, 3"}],
        "stop_reason": "stop_sequence", "input_tokens": 4, "output_tokens": 6, "cache_read_input_tokens": 0,
    },
}
FAILING = {"a2o_stream_upstream_error": "upstream error: CUDA out of memory",
           "a2o_stream_broken": "upstream stream from vllm-a broke off: connection reset"}


def test_every_stream_case_is_checked_through_the_sdk() -> None:
    assert {p.stem for p in STREAMS} == set(FINAL_MESSAGES) | set(FAILING)


@pytest.mark.parametrize("name", sorted(FINAL_MESSAGES))
def test_the_anthropic_sdk_assembles_the_stream(name: str) -> None:
    case = golden.load(golden.ROOT / "anthropic" / f"{name}.json")
    message = sdk.anthropic_final_message(golden.stream_bytes(case))
    want = FINAL_MESSAGES[name]
    content = [block.model_dump(exclude_none=True, exclude={"parsed_output"}) for block in message.content]
    assert content == want["content"]
    assert message.stop_reason == want["stop_reason"]
    assert message.usage.input_tokens == want["input_tokens"]
    assert message.usage.output_tokens == want["output_tokens"]
    assert message.usage.cache_read_input_tokens == want["cache_read_input_tokens"]


@pytest.mark.parametrize("name", sorted(FAILING))
def test_the_anthropic_sdk_raises_the_error_frame(name: str) -> None:
    case = golden.load(golden.ROOT / "anthropic" / f"{name}.json")
    with pytest.raises(anthropic.APIStatusError, match=FAILING[name]):
        sdk.anthropic_final_message(golden.stream_bytes(case))


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    body = {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def test_each_feed_returns_the_frames_it_completed_at_once() -> None:
    translator = a2o.StreamTranslator(model="m")
    first = translator.feed(chunk({"content": "Hi"}))
    assert first.count(b"event: ") == 3  # message_start, content_block_start, the delta: nothing held back
    assert translator.feed(b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"!"') == b""
    assert b'"text":"!"' in translator.feed(b"}}]}\n\n")


def test_ping_starts_the_message_if_nothing_came_yet_and_stops_once_ended() -> None:
    translator = a2o.StreamTranslator(model="m")
    first = golden.frames(translator.ping())
    assert [f["event"] for f in first] == ["message_start", "ping"]
    assert golden.frames(translator.ping()) == [{"event": "ping", "data": {"type": "ping"}}]
    rest = translator.feed(chunk({"content": "Hi"}))
    assert b"message_start" not in rest
    translator.finish()
    assert translator.ping() == b"" and translator.finish() == b"" and translator.fail("late") == b""


def test_an_upstream_that_sends_nothing_still_ends_as_a_message() -> None:
    translator = a2o.StreamTranslator(model="m")
    frames = golden.frames(translator.finish())
    assert [f["event"] for f in frames] == ["message_start", "message_delta", "message_stop"]
    assert translator.usage is None


def test_usage_is_told_for_the_books() -> None:
    translator = a2o.StreamTranslator()
    translator.feed(chunk({"content": "x"}, "stop"))
    translator.feed(chunk({}, usage={"prompt_tokens": 30, "completion_tokens": 2,
                                     "prompt_tokens_details": {"cached_tokens": 10}}))
    translator.feed(b"data: [DONE]\n\n")
    assert translator.usage == (30, 2)  # every prompt token, cached ones included
    assert translator.failure is None


@pytest.mark.parametrize("bad", [b"data: {not json\n\n", b"data: [1, 2]\n\n"])
def test_an_unreadable_upstream_event_ends_the_stream_in_an_error_frame(bad: bytes) -> None:
    translator = a2o.StreamTranslator(model="m")
    out = golden.frames(translator.feed(chunk({"content": "Hi"}) + bad))
    assert [f["event"] for f in out] == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert out[-1]["data"]["error"]["type"] == "api_error"
    assert translator.failure is not None and "unreadable" in translator.failure
    assert translator.feed(chunk({"content": "more"})) == b"" and translator.finish() == b""


def test_an_endless_upstream_line_ends_the_stream_in_an_error_frame() -> None:
    translator = a2o.StreamTranslator(model="m")
    translator._parser = type(translator._parser)(max_line=100)
    out = golden.frames(translator.feed(b"data: " + b"x" * 200))
    assert out[-1]["event"] == "error"
    assert translator.failure is not None and "longer than 100 bytes" in translator.failure


def test_a_timeout_fails_with_the_status_the_relay_names() -> None:
    frame = golden.frames(a2o.StreamTranslator().fail("no chunk within 60 s", status=504))[0]
    assert frame == {"event": "error", "data": {"type": "error", "error": {"type": "api_error",
                                                                           "message": "no chunk within 60 s"}}}


def test_only_the_first_choice_is_translated() -> None:
    translator = a2o.StreamTranslator(model="m")
    body = {"id": "c", "choices": [{"index": 1, "delta": {"content": "other"}},
                                   {"index": 0, "delta": {"content": "mine"}}]}
    out = translator.feed(b"data: " + orjson.dumps(body) + b"\n\n")
    assert b"mine" in out and b"other" not in out


@pytest.mark.parametrize(("status", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"),
    (502, "api_error"), (503, "overloaded_error"), (529, "overloaded_error"), (504, "api_error"),
    (422, "invalid_request_error"), (501, "api_error"),
])
def test_error_types_by_status(status: int, kind: str) -> None:
    body = orjson.loads(a2o.error(status, b'{"error": {"message": "boom"}}'))
    assert body == {"type": "error", "error": {"type": kind, "message": "boom"}}


def test_an_empty_error_body_says_the_status() -> None:
    assert orjson.loads(a2o.error(500, b""))["error"]["message"] == "upstream answered 500"


def test_an_answer_that_is_not_a_completion_is_still_a_valid_message() -> None:
    for junk in ({}, [], {"choices": "x"}, {"choices": [{"message": {"tool_calls": [{"function": 3}]}}]}):
        Message.model_validate(a2o.answer(junk, model="m"))


BAD_REQUESTS = [
    ({"messages": "hi"}, "messages: must be an array"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role: must be 'user', 'assistant' or 'system'"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content: must be a string or an array"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content[0]: must be a content block"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "messages[0].content[0].source.type: an image source of type 'file' cannot be translated"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
     "messages[0].content[0].tool_use_id: must be a string"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]},
     "messages[0].content[0]: a tool_use block needs a string `id` and `name`"),
    ({"messages": [], "max_tokens": "100"}, "max_tokens: must be a positive integer"),
    ({"messages": [], "system": 3}, "system: must be a string or an array of text blocks"),
    ({"messages": [], "system": [{"type": "text"}]}, "system[0]: must be a text block"),
    ({"messages": [], "stop_sequences": "END"}, "stop_sequences: must be an array of strings"),
    ({"messages": [], "tools": [{"name": "f"}]}, "tools[0].input_schema: must be a JSON Schema object"),
    ({"messages": [], "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "some"}},
     "tool_choice: must be an object of type auto, any, tool or none"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
def test_bad_requests_are_400s_naming_where(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        a2o.request({"model": "m", **body}, stream=False)
    assert caught.value.status == 400
    assert caught.value.message.startswith(message)
    assert caught.value.param == message.split(":")[0]


def test_tool_choice_and_parallel_calls_are_not_sent_without_tools() -> None:
    body = a2o.request({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                        "tool_choice": {"type": "any", "disable_parallel_tool_use": True}}, stream=False)
    assert "tools" not in body and "tool_choice" not in body and "parallel_tool_calls" not in body


def test_effort_is_sent_only_to_a_provider_that_takes_it() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "output_config": {"effort": "low"}}
    assert "reasoning_effort" not in a2o.request(body, stream=False)
    assert a2o.request(body, stream=False, reasoning_effort=True)["reasoning_effort"] == "low"
