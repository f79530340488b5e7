"""The Anthropic Messages API through modelway, over real sockets (issue 11): the official
`anthropic` SDK against an OpenAI chat backend of ours (translated both ways), native
passthrough to an Anthropic backend of ours, and the reverse, the `openai` SDK against the
Anthropic backend. docs/dialects.md has the tables these check."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from support.gateway import Gateway, free_port
from support.http import post_json, request
from support.llm_upstream import ARGUMENTS, AnthropicUpstream, ChatUpstream
from support.upstream import Behaviour

CLIENT_KEY = "sk-team-anthropic"
TOOLS = [{
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                     "required": ["city"]},
}]


@pytest.fixture(scope="module")
def chat_upstream() -> Iterator[ChatUpstream]:
    server = ChatUpstream("chat-backend").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def claude_upstream() -> Iterator[AnthropicUpstream]:
    server = AnthropicUpstream("claude-backend").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh(chat_upstream: ChatUpstream, claude_upstream: AnthropicUpstream) -> None:
    chat_upstream.reset()
    claude_upstream.reset()


@pytest.fixture(scope="module")
def gateway(chat_upstream: ChatUpstream, claude_upstream: AnthropicUpstream) -> Iterator[Gateway]:
    dead = free_port()
    config = {
        "server": {"stream_ping_s": 0.3},
        "auth": {"keys": [{"name": "team", "key": CLIENT_KEY}]},
        "providers": [
            {"name": "chat", "kind": "openai-compatible", "base_url": f"{chat_upstream.url}/v1",
             "auth": {"header": {"Authorization": "Bearer chat-provider-key"}}, "timeout_ms": 3000},
            {"name": "claude", "kind": "anthropic", "base_url": f"{claude_upstream.url}/v1",
             "auth": {"header": {"x-api-key": "claude-provider-key"}}},
            {"name": "claude-dead", "kind": "anthropic", "base_url": f"http://127.0.0.1:{dead}/v1",
             "connect_timeout_ms": 300},
            {"name": "chat-dead", "kind": "vllm", "base_url": f"http://127.0.0.1:{dead}/v1",
             "connect_timeout_ms": 300},
        ],
        "models": [
            {"name": "claude-on-chat",
             "deployments": [{"provider": "chat", "model": "qwen-coder", "max_output_tokens": 1000}]},
            {"name": "claude-native", "deployments": [{"provider": "claude", "model": "claude-real"}]},
            {"name": "gpt-on-claude",
             "deployments": [{"provider": "claude", "model": "claude-real", "max_output_tokens": 2000}]},
            {"name": "claude-anywhere", "deployments": [
                {"provider": "claude-dead", "model": "claude-real", "priority": 1},
                {"provider": "chat", "model": "qwen-coder"},
            ]},
            {"name": "gpt-anywhere", "deployments": [
                {"provider": "chat-dead", "model": "qwen", "priority": 1},
                {"provider": "claude", "model": "claude-real"},
            ]},
        ],
        "model_mapping": {"rules": {"claude-sonnet-*": "claude-on-chat", "*": ""}},
    }
    with Gateway(config) as gw:
        yield gw


def client(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def logged(gateway: Gateway, text: str, within_s: float = 3.0) -> bool:
    """Whether the gateway's output has `text` (the access log is written in batches)."""
    deadline = time.monotonic() + within_s
    while text not in gateway.logs():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def events(body: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each SSE frame; comments are skipped."""
    out: list[tuple[str | None, Any]] = []
    for frame in body.decode().split("\n\n"):
        name, data = None, None
        for line in frame.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None:
            out.append((name, json.loads(data) if data != "[DONE]" else data))
    return out


# -- the anthropic SDK on an OpenAI chat backend


def test_messages_create_is_translated_to_chat_and_back(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    raw = client(gateway).messages.with_raw_response.create(
        model="claude-on-chat",
        max_tokens=20000,  # clamped to the deployment's max_output_tokens
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "hello from chat-backend"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 9 and message.usage.cache_read_input_tokens == 2  # 11 prompt, 2 cached
    assert message.usage.output_tokens == 7
    assert raw.headers["x-modelway-provider"] == "chat"
    assert raw.headers["content-type"] == "application/json"
    (seen,) = chat_upstream.received
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "qwen-coder"
    assert seen.body["max_tokens"] == 1000
    assert seen.body["messages"] == [{"role": "system", "content": "You are terse."},
                                     {"role": "user", "content": "hi"}]
    assert "stream" not in seen.body
    assert seen.headers["Authorization"] == "Bearer chat-provider-key"  # the provider's key, not the client's
    assert CLIENT_KEY not in json.dumps(seen.headers)
    assert not any(name.lower().startswith("anthropic-") for name in seen.headers)
    assert logged(gateway, '"path":"/v1/messages","status":200')
    assert logged(gateway, '"dialect":"anthropic→openai"')  # the access log says which dialects it crossed


def test_messages_stream_with_a_tool_round_trip(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    sdk = client(gateway)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    with sdk.messages.stream(model="claude-on-chat", max_tokens=512, tools=TOOLS, messages=messages) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == json.loads(ARGUMENTS)  # put together from several input_json_delta pieces
    assert first.usage.output_tokens == 7
    sent = chat_upstream.received[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "22 degrees"}]},
    ]
    with sdk.messages.stream(model="claude-on-chat", max_tokens=512, tools=TOOLS, messages=messages) as stream:
        text = "".join(stream.text_stream)
        second = stream.get_final_message()
    assert text == "the tool said: 22 degrees"
    assert second.stop_reason == "end_turn"
    sent = chat_upstream.received[-1].body
    assistant, tool = sent["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["id"] == call.id
    assert tool == {"role": "tool", "tool_call_id": call.id, "content": "22 degrees"}


def test_count_tokens_is_an_estimate_when_the_backend_speaks_openai(
    gateway: Gateway, chat_upstream: ChatUpstream
) -> None:
    counted = client(gateway).messages.count_tokens(
        model="claude-on-chat", system="Be brief.", tools=TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "How many tokens is this sentence, roughly?"}],
    )
    assert counted.input_tokens > 346  # the tool prompt alone is 346
    assert chat_upstream.received == []  # a chat backend cannot count Anthropic tokens: nothing is asked


def test_model_mapping_and_client_keys_apply(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    message = client(gateway).messages.create(model="claude-sonnet-4-5", max_tokens=10,
                                              messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "hello from chat-backend"  # type: ignore[union-attr]
    assert chat_upstream.received[-1].body["model"] == "qwen-coder"
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0).messages.create(
            model="claude-on-chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    # Bearer works too, and Claude Code may send both.
    reply = post_json(gateway.url, "/v1/messages", {"model": "claude-on-chat", "max_tokens": 5,
                                                    "messages": [{"role": "user", "content": "hi"}]},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY})
    assert reply.status == 200 and reply.json()["type"] == "message"


CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-on-chat",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.14; cc_entrypoint=sdk-cli; cch=ab12"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Work in /tmp.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": "Reminder: be careful."},
    ],
    "tools": [{**TOOLS[0], "cache_control": {"type": "ephemeral"}},
              {"name": "Bash", "description": "Run a command",
               "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
    "thinking": {"type": "enabled", "budget_tokens": 10000},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "metadata": {"user_id": "user_" + "a" * 64 + "_account__session_" + "b" * 36},
}


def test_a_request_shaped_like_claude_code(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    reply = post_json(gateway.url, "/v1/messages?beta=true", CLAUDE_CODE_BODY, headers={
        "x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "anthropic-dangerous-direct-browser-access": "true",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
    })
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/event-stream")
    frames = [(name, data) for name, data in events(reply.body) if name != "ping"]
    assert all(name == data["type"] for name, data in frames)  # every event line names its data's type
    names = [name for name, _ in frames]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_start") == 1
    starts = [data for name, data in frames if name == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["tool_use"]
    pieces = [d["delta"]["partial_json"] for name, d in frames if name == "content_block_delta"]
    assert len(pieces) > 1 and json.loads("".join(pieces)) == json.loads(ARGUMENTS)
    assert frames[-2][1]["delta"]["stop_reason"] == "tool_use"
    sent = chat_upstream.received[-1]
    assert sent.query == {}  # ?beta=true is the client's query: never forwarded
    body = sent.body
    assert body["messages"][0] == {"role": "system", "content": "You are Claude Code.\n\nWork in /tmp."}
    assert body["messages"][1] == {"role": "user", "content": "list files\n\nReminder: be careful."}
    assert body["max_tokens"] == 1000
    assert body["stream_options"] == {"include_usage": True}
    assert body["user"] == hashlib.sha256(CLAUDE_CODE_BODY["metadata"]["user_id"].encode()).hexdigest()
    for dropped in ("thinking", "context_management", "output_config", "metadata", "system"):
        assert dropped not in body
    assert "cache_control" not in json.dumps(body)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "Bash"]
    assert not any(name.lower().startswith("anthropic-") for name in sent.headers)


def test_errors_on_messages_are_anthropic_shaped(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    sdk = client(gateway)
    chat_upstream.reset(Behaviour(status=400, error_body={"error": {"message": "context too long", "type": "x"}}))
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk.messages.create(model="claude-on-chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert bad.value.status_code == 400
    assert bad.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                          "message": "context too long"}}
    chat_upstream.reset(Behaviour(status=503))
    reply = post_json(gateway.url, "/v1/messages", {"model": "claude-on-chat", "max_tokens": 5,
                                                    "messages": [{"role": "user", "content": "hi"}]},
                      headers={"x-api-key": CLIENT_KEY})
    assert reply.status == 503  # the only attempt's own answer, re-shaped, status and message kept
    assert reply.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "chat-backend says 503"}}
    chat_upstream.reset()
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    reply = post_json(gateway.url, "/v1/messages", {"model": "claude-on-chat", "max_tokens": 5, "messages": "hi"},
                      headers={"x-api-key": CLIENT_KEY})
    assert reply.status == 400
    assert reply.json()["error"] == {"type": "invalid_request_error",
                                     "message": "messages: must be an array of messages"}
    reply = post_json(gateway.url, "/v1/messages", {"model": "claude-on-chat", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}, headers={"x-api-key": CLIENT_KEY})
    assert reply.status == 400 and "messages[0].content[0].tool_use_id" in reply.json()["error"]["message"]


def test_gateway_errors_take_their_type_from_the_status(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/messages", {"model": "claude-anywhere", "max_tokens": 5,
                                                    "messages": [{"role": "user", "content": "hi"}]},
                      headers={"x-api-key": CLIENT_KEY, "x-modelway-debug": "0"})
    assert reply.status == 200  # the dead Anthropic provider first, then the chat one: translated there
    assert reply.headers["x-modelway-attempts"] == "2" and reply.headers["x-modelway-provider"] == "chat"
    assert reply.json()["content"][0]["text"] == "hello from chat-backend"
    reply = request(gateway.url, "POST", "/v1/messages", b"{", {"x-api-key": CLIENT_KEY})
    assert reply.status == 400 and reply.json()["error"]["type"] == "invalid_request_error"


def test_a_stream_broken_midway_ends_with_an_error_event(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    before = metric(gateway, "modelway_requests_total", model="claude-on-chat", status="stream_broken")
    chat_upstream.reset(Behaviour(break_after=3))
    reply = post_json(gateway.url, "/v1/messages", {"model": "claude-on-chat", "max_tokens": 50, "stream": True,
                                                    "messages": [{"role": "user", "content": "hi"}]},
                      headers={"x-api-key": CLIENT_KEY})
    assert reply.status == 200
    frames = events(reply.body)
    assert frames[0][0] == "message_start"
    assert any(name == "content_block_delta" for name, _ in frames)
    name, data = frames[-1]
    assert name == "error" and data["type"] == "error" and data["error"]["type"] == "api_error"
    assert "broke off" in data["error"]["message"]
    assert "message_stop" not in [name for name, _ in frames]
    assert metric(gateway, "modelway_requests_total", model="claude-on-chat", status="stream_broken") == before + 1
    # The SDK sees the error event as an error, not as a message that ended.
    with pytest.raises(anthropic.APIStatusError), client(gateway).messages.stream(
        model="claude-on-chat", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for _ in stream:
            pass


def test_pings_while_the_upstream_is_silent(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    chat_upstream.reset(Behaviour(chunk_gap_s=0.8))
    reply = post_json(gateway.url, "/v1/messages", {"model": "claude-on-chat", "max_tokens": 50, "stream": True,
                                                    "messages": [{"role": "user", "content": "hi"}]},
                      headers={"x-api-key": CLIENT_KEY})
    frames = events(reply.body)
    names = [name for name, _ in frames]
    assert "ping" in names and frames[names.index("ping")][1] == {"type": "ping"}
    assert names.index("ping") > names.index("message_start")
    assert names[-1] == "message_stop"


def test_usage_of_translated_streams_is_counted(gateway: Gateway) -> None:
    labels = {"model": "claude-on-chat", "provider": "chat"}
    before = (metric(gateway, "modelway_tokens_total", direction="input", **labels),
              metric(gateway, "modelway_tokens_total", direction="output", **labels))
    with client(gateway).messages.stream(model="claude-on-chat", max_tokens=50,
                                         messages=[{"role": "user", "content": "hi"}]) as stream:
        stream.until_done()
    after = (metric(gateway, "modelway_tokens_total", direction="input", **labels),
             metric(gateway, "modelway_tokens_total", direction="output", **labels))
    assert after == (before[0] + 11, before[1] + 7)


# -- native: the anthropic SDK on an Anthropic backend


def test_native_passthrough(gateway: Gateway, claude_upstream: AnthropicUpstream) -> None:
    sdk = client(gateway)
    message = sdk.messages.create(
        model="claude-native", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "context-1m-2025-08-07,interleaved-thinking-2025-05-14"},
        extra_body={"context_management": {"edits": []}, "some_future_field": {"x": 1}},
    )
    assert message.content[0].text == "hello from claude-backend"  # type: ignore[union-attr]
    (seen,) = claude_upstream.received
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "claude-provider-key"  # the provider's credential replaces the client's
    assert "Authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == sdk.default_headers["anthropic-version"]  # the SDK's own
    assert seen.headers["anthropic-beta"] == "context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    assert seen.body["model"] == "claude-real"
    assert seen.body["context_management"] == {"edits": []} and seen.body["some_future_field"] == {"x": 1}
    assert logged(gateway, '"model":"claude-native","provider":"claude"')
    line = next(json.loads(line) for line in gateway.logs().splitlines() if '"model":"claude-native"' in line)
    assert line["dialect"] == "anthropic"  # no translation crossed


def test_native_version_default_stream_and_errors(gateway: Gateway, claude_upstream: AnthropicUpstream) -> None:
    body = {"model": "claude-native", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    reply = post_json(gateway.url, "/v1/messages?beta=true", body, headers={"x-api-key": CLIENT_KEY})
    assert reply.status == 200
    seen = claude_upstream.received[-1]
    assert seen.headers["anthropic-version"] == "2023-06-01"  # sent for a client that sent none
    expected = claude_upstream.expected_stream("claude-real")
    assert reply.body == expected  # relayed frame for frame, byte for byte
    labels = {"model": "claude-native", "provider": "claude"}
    assert metric(gateway, "modelway_tokens_total", direction="input", **labels) >= 9  # from message_start
    assert metric(gateway, "modelway_tokens_total", direction="output", **labels) >= 6  # from message_delta
    error = b'{"type":"error","error":{"type":"overloaded_error","message":"busy, retry later"}}'
    claude_upstream.reset(Behaviour(status=529, error_body=json.loads(error)))
    reply = post_json(gateway.url, "/v1/messages", {**body, "stream": False}, headers={"x-api-key": CLIENT_KEY})
    assert reply.status == 529 and json.loads(reply.body) == json.loads(error)
    assert reply.body == json.dumps(json.loads(error)).encode()  # aiohttp's own bytes, passed through
    claude_upstream.reset()
    counted = client(gateway).messages.count_tokens(model="claude-native",
                                                    messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens == 42  # the backend's own count
    assert claude_upstream.received[-1].path == "/v1/messages/count_tokens"
    assert claude_upstream.received[-1].body["model"] == "claude-real"


# -- the openai SDK on an Anthropic backend


def openai_client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0)


OPENAI_TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city", "parameters": TOOLS[0]["input_schema"]}}]


def test_openai_sdk_on_an_anthropic_backend(gateway: Gateway, claude_upstream: AnthropicUpstream) -> None:
    completion = openai_client(gateway).chat.completions.create(
        model="gpt-on-claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        temperature=1.5,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "hello from claude-backend"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 12 and completion.usage.completion_tokens == 6  # 9 + 3 cache reads
    (seen,) = claude_upstream.received
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "claude-provider-key" and "Authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "Be brief." and seen.body["messages"] == [{"role": "user", "content": "hi"}]
    assert seen.body["max_tokens"] == 2000  # 4096 when absent, clamped to the deployment's max_output_tokens
    assert seen.body["temperature"] == 1 and seen.body["model"] == "claude-real"
    assert logged(gateway, '"dialect":"openai→anthropic"')


def test_openai_sdk_streams_tool_calls_from_an_anthropic_backend(
    gateway: Gateway, claude_upstream: AnthropicUpstream
) -> None:
    sdk = openai_client(gateway)
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    stream = sdk.chat.completions.create(model="gpt-on-claude", messages=messages, tools=OPENAI_TOOLS,
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[index,union-attr]
        for c in chunks if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(arguments) == json.loads(ARGUMENTS)
    first_call = next(c.choices[0].delta.tool_calls[0] for c in chunks  # type: ignore[index]
                      if c.choices and c.choices[0].delta.tool_calls)
    assert first_call.id == "toolu_01" and first_call.function.name == "get_weather"  # type: ignore[union-attr]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert claude_upstream.received[-1].body["tools"][0]["input_schema"] == TOOLS[0]["input_schema"]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "22 degrees"},
    ]
    completion = sdk.chat.completions.create(model="gpt-on-claude", messages=messages, tools=OPENAI_TOOLS)
    assert completion.choices[0].message.content == "the tool said: 22 degrees"
    turns = claude_upstream.received[-1].body["messages"]
    assert turns[-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "22 degrees"}]}


def test_openai_errors_and_broken_streams_from_an_anthropic_backend(
    gateway: Gateway, claude_upstream: AnthropicUpstream
) -> None:
    sdk = openai_client(gateway)
    claude_upstream.reset(Behaviour(status=400, error_body={"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens: too large"}}))
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="gpt-on-claude", messages=[{"role": "user", "content": "hi"}])
    assert bad.value.body == {"message": "max_tokens: too large", "type": "invalid_request_error",
                              "param": None, "code": None}
    claude_upstream.reset(Behaviour(break_after=4))
    reply = post_json(gateway.url, "/v1/chat/completions", {
        "model": "gpt-on-claude", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    frames = events(reply.body)
    assert frames[0][1]["choices"][0]["delta"]["role"] == "assistant"
    assert "error" in frames[-1][1] and "broke off" in frames[-1][1]["error"]["message"]
    assert "[DONE]" not in [data for _, data in frames]


def test_a_fallback_to_another_kind_of_provider_translates_that_attempt(
    gateway: Gateway, claude_upstream: AnthropicUpstream
) -> None:
    raw = openai_client(gateway).chat.completions.with_raw_response.create(
        model="gpt-anywhere", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-modelway-attempts"] == "2" and raw.headers["x-modelway-provider"] == "claude"
    assert raw.parse().choices[0].message.content == "hello from claude-backend"
    assert claude_upstream.received[-1].path == "/v1/messages"


def test_a_native_stream_broken_midway_ends_with_an_error_event(
    gateway: Gateway, claude_upstream: AnthropicUpstream
) -> None:
    claude_upstream.reset(Behaviour(break_after=4))
    reply = post_json(gateway.url, "/v1/messages", {"model": "claude-native", "max_tokens": 50, "stream": True,
                                                    "messages": [{"role": "user", "content": "hi"}]},
                      headers={"x-api-key": CLIENT_KEY})
    frames = events(reply.body)
    assert [name for name, _ in frames][:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    name, data = frames[-1]
    assert name == "error" and data == {"type": "error", "error": {"type": "api_error", "message": data["error"][
        "message"]}}
    assert "broke off" in data["error"]["message"] and "message_stop" not in [n for n, _ in frames]
