"""Client speaks OpenAI chat, provider is kind anthropic: beyond the golden cases, the outputs
are checked against the SDKs' own types and stream accumulation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from modelway.dialects import openai_to_anthropic as o2a
from modelway.errors import BadRequest

from . import golden, sdk, streams

DIRECTION = "openai_to_anthropic"
REQUESTS = golden.files("anthropic", "request", DIRECTION)
ANSWERS = golden.files("anthropic", "answer", DIRECTION)
STREAMS = golden.files("anthropic", "stream", DIRECTION)


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_requests_are_valid_messages_requests(path: Path) -> None:
    sdk.validate_anthropic_request(golden.actual(golden.load(path)))


@pytest.mark.parametrize("path", ANSWERS, ids=lambda p: p.stem)
def test_answers_are_valid_chat_completions(path: Path) -> None:
    ChatCompletion.model_validate(golden.actual(golden.load(path)))


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_stream_chunks_are_valid_and_end_right(path: Path) -> None:
    frames = golden.actual(golden.load(path))
    assert all("event" not in f for f in frames)
    if "error" in frames[-1]["data"]:
        assert not any(f["data"] == "[DONE]" for f in frames)
        body = frames.pop()["data"]
        assert set(body["error"]) == {"message", "type", "param", "code"}
    else:
        assert frames.pop()["data"] == "[DONE]"
    for frame in frames:
        ChatCompletionChunk.model_validate(frame["data"])
    finishes = [f for f in frames if f["data"]["choices"] and f["data"]["choices"][0]["finish_reason"]]
    assert len(finishes) <= 1


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_streams_do_not_depend_on_where_upstream_bytes_split(path: Path) -> None:
    streams.assert_split_anywhere(golden.load(path))


def test_the_openai_sdk_assembles_the_stream() -> None:
    case = golden.load(golden.ROOT / "anthropic" / "o2a_stream_tools.json")
    completion = sdk.openai_final_completion(golden.stream_bytes(case))
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Okay, let's check."
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name) == ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")
    assert orjson.loads(call.function.arguments) == {"location": "San Francisco, CA"}
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (472 + 2048, 89)


def test_the_openai_sdk_raises_the_error_event() -> None:
    case = golden.load(golden.ROOT / "anthropic" / "o2a_stream_error.json")
    with pytest.raises(openai.APIError, match="upstream error: Overloaded"):
        sdk.openai_final_completion(golden.stream_bytes(case))


def events(*items: dict[str, Any]) -> bytes:
    return b"".join(b"event: " + item["type"].encode() + b"\ndata: " + orjson.dumps(item) + b"\n\n"
                    for item in items)


START = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                                              "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}}


def test_parallel_tool_uses_are_numbered_by_call() -> None:
    translator = o2a.StreamTranslator(created=1)
    out = translator.feed(events(
        START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "a", "name": "f",
                                                                      "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "b", "name": "g",
                                                                      "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"x\""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ":1}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ))
    calls = [c for f in golden.frames(out)[:-1] for c in f["data"]["choices"][0]["delta"].get("tool_calls", [])]
    assert [(c["index"], c.get("id"), c["function"].get("arguments")) for c in calls] == [
        (0, "a", ""), (0, None, "{}"), (1, "b", ""), (1, None, '{"x"'), (1, None, ":1}")]
    assert translator.usage == (5, 9)


def test_a_stream_cut_before_message_stop_is_ended_at_finish() -> None:
    translator = o2a.StreamTranslator(include_usage=True, created=1)
    translator.feed(events(START, {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "tool_use", "id": "a", "name": "f", "input": {}}}))
    frames = golden.frames(translator.finish())
    assert frames[0]["data"]["choices"][0]["finish_reason"] == "tool_calls"
    assert frames[1]["data"]["choices"] == [] and frames[1]["data"]["usage"]["prompt_tokens"] == 5
    assert frames[2]["data"] == "[DONE]"


def test_fail_is_an_openai_error_event_and_ping_a_comment() -> None:
    translator = o2a.StreamTranslator()
    assert translator.ping() == b": ping\n\n"
    frame = golden.frames(translator.fail("upstream timed out", status=504))[0]
    assert frame["data"] == {"error": {"message": "upstream timed out", "type": "timeout_error", "param": None,
                                       "code": "stream_broken"}}
    assert translator.failure == "upstream timed out"
    assert translator.ping() == b"" and translator.finish() == b""


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("pause_turn", "stop"), ("refusal", "content_filter"), ("model_context_window_exceeded", "length"),
    (None, "stop"), ("something_new", "stop"),
])
def test_stop_reasons(stop_reason: str | None, finish: str) -> None:
    body = o2a.answer({"content": [], "stop_reason": stop_reason}, created=1)
    assert body["choices"][0]["finish_reason"] == finish


def test_an_answer_that_is_not_a_message_is_still_a_valid_completion() -> None:
    for junk in ({}, [], {"content": "x"}, {"content": [None, {"type": "tool_use"}], "usage": "x"}):
        ChatCompletion.model_validate(o2a.answer(junk, model="m"))


def test_errors_keep_status_type_and_message() -> None:
    assert orjson.loads(o2a.error(429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}')) \
        == {"error": {"message": "slow", "type": "rate_limit_error", "param": None, "code": None}}
    assert orjson.loads(o2a.error(500, b"oops"))["error"] == {"message": "oops", "type": "api_error", "param": None,
                                                               "code": None}


def test_max_tokens_default_and_clamp() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert o2a.request(body, stream=False)["max_tokens"] == 4096
    assert o2a.request(body, stream=False, default_max_tokens=512)["max_tokens"] == 512
    assert o2a.request({**body, "max_tokens": 9000}, stream=False, max_output_tokens=8000)["max_tokens"] == 8000
    assert o2a.request({**body, "max_tokens": 100}, stream=False, max_output_tokens=8000)["max_tokens"] == 100
    both = {**body, "max_completion_tokens": 200, "max_tokens": 100}
    assert o2a.request(both, stream=False)["max_tokens"] == 200
    assert o2a.request({**both, "max_completion_tokens": None}, stream=False)["max_tokens"] == 100


def test_top_p_goes_alone_or_not_at_all() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_p": 0.5}
    assert o2a.request(body, stream=False)["top_p"] == 0.5
    both = o2a.request({**body, "temperature": 0.2}, stream=False)
    assert both["temperature"] == 0.2 and "top_p" not in both


def test_a_tool_message_after_user_text_still_comes_first_in_its_turn() -> None:
    body = o2a.request({"model": "m", "messages": [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "note"},
        {"role": "tool", "tool_call_id": "a", "content": "done"},
    ]}, stream=False)
    assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_result", "text"]


BAD_REQUESTS = [
    ({"messages": {}}, "messages: must be an array"),
    ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role: must be system, developer"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type: a 'input_audio' part cannot be sent to an anthropic provider"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}]}]},
     "messages[0].content[0].image_url.url: a data: URL must be data:<media type>;base64,<data>"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
     "messages[0].content[0].file.file_data: a file must be sent inline"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{x"}}]}]},
     "messages[0].tool_calls[0].function.arguments: must be a JSON object"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]},
     "messages[0].tool_calls[0].id: must be a non-empty string"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id: must be a non-empty string"),
    ({"messages": [], "max_tokens": 0}, "max_tokens: must be a positive integer"),
    ({"messages": [], "max_completion_tokens": "5"}, "max_completion_tokens: must be a positive integer"),
    ({"messages": [], "n": 2}, "n: only 1 choice"),
    ({"messages": [], "stop": 5}, "stop: must be a string or an array of strings"),
    ({"messages": [], "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name: must be"),
    ({"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "any"},
     "tool_choice: must be auto, required, none or a named function"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
def test_bad_requests_are_400s_naming_where(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        o2a.request({"model": "m", **body}, stream=False)
    assert caught.value.status == 400
    assert caught.value.message.startswith(message)
    assert caught.value.param == message.split(":")[0]
