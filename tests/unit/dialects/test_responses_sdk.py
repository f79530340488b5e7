"""The real OpenAI SDK against the translators, as the pipeline will use them: the SDK's own
Responses request is translated to chat/completions, a canned chat answer or stream is translated
back, and the SDK parses what it gets (its SSE decoder, its types, `responses.stream()`'s
accumulator). The transport is httpx2's MockTransport: no sockets, no gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pytest

from modelway.dialects.responses_to_openai import StreamTranslator, answer, answer_context, request
from modelway.errors import BadRequest
from modelway.proxy.responses import error_body

CHAT_ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1760000000,
    "model": "up",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "Looking it up.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "mcp__kb__find", "arguments": '{"q":"x"}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
}


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


CHAT_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello"}),
    chunk({"content": ", world"}),
    chunk({"tool_calls": [{"index": 0, "id": "call_2", "function": {"name": "mcp__kb__find", "arguments": '{"q"'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": ':"y"}'}}]}),
    chunk({}, "tool_calls"),
    b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":4,"total_tokens":11}}\n\n',
    b"data: [DONE]\n\n",
]
TOOLS: list[Any] = [
    {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}, "strict": False},
    {
        "type": "namespace",
        "name": "mcp__kb__",
        "description": "Knowledge base.",
        "tools": [{"type": "function", "name": "find", "parameters": {"type": "object", "properties": {}}}],
    },
    {"type": "web_search"},
]


class Gateway:
    """The translation layer of one attempt, behind the SDK's HTTP transport."""

    def __init__(self) -> None:
        self.chat_bodies: list[dict[str, Any]] = []

    def __call__(self, http_request: httpx2.Request) -> httpx2.Response:
        assert http_request.url.path == "/v1/responses"
        body = orjson.loads(http_request.content)
        try:
            chat = request(body, provider_kind="vllm")
        except BadRequest as error:
            return httpx2.Response(error.status, json=error_body(error, "openai"))
        self.chat_bodies.append(chat)
        context = answer_context(body)
        if not chat.get("stream"):
            return httpx2.Response(200, json=answer(CHAT_ANSWER, model=body["model"], context=context))
        translator = StreamTranslator(model=body["model"], context=context)
        out = b"".join(translator.feed(piece) for piece in CHAT_STREAM) + translator.finish()
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=out)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    http = httpx2.Client(transport=httpx2.MockTransport(gateway))
    with openai.OpenAI(api_key="k", base_url="http://gateway.test/v1", http_client=http, max_retries=0) as sdk:
        yield sdk


def test_a_non_stream_response(client: openai.OpenAI, gateway: Gateway) -> None:
    response = client.responses.create(model="m", instructions="Be brief.", input="Find x.", tools=TOOLS)
    assert [t["function"]["name"] for t in gateway.chat_bodies[0]["tools"]] == ["shell", "mcp__kb__find"]
    assert gateway.chat_bodies[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert response.status == "completed" and response.output_text == "Looking it up."
    call = response.output[-1]
    assert call.type == "function_call"
    assert (call.namespace, call.name, call.call_id, call.arguments) == ("mcp__kb__", "find", "call_1", '{"q":"x"}')
    assert response.usage is not None and response.usage.total_tokens == 25


def test_a_stream_read_event_by_event(client: openai.OpenAI, gateway: Gateway) -> None:
    events = list(client.responses.create(model="m", input="Hi", tools=TOOLS, stream=True))
    assert gateway.chat_bodies[0]["stream_options"] == {"include_usage": True}
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello, world"
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.type for item in done] == ["message", "function_call"]
    assert events[-1].response.usage.output_tokens == 4  # type: ignore[union-attr]


def test_the_stream_helper_builds_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="m", input="Hi", tools=TOOLS) as stream:
        snapshots = [e.snapshot for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert snapshots == ["Hello", "Hello, world"]
    assert final.output_text == "Hello, world"
    call = final.output[-1]
    assert call.type == "function_call" and (call.namespace, call.name, call.arguments) == (
        "mcp__kb__",
        "find",
        '{"q":"y"}',
    )


def test_previous_response_id_reaches_the_sdk_as_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="m", input="Hi", previous_response_id="resp_1")
    assert caught.value.status_code == 400
    assert "keeps no conversations" in caught.value.message
    assert caught.value.param == "previous_response_id"
