"""The OpenAI Responses API through modelway, over real sockets (issue 14): the official
`openai` SDK's responses.create and responses.stream, and the OpenAI Agents SDK, against a
chat/completions-only backend of ours (`responses_api: translate`), against an Anthropic one
(two translations composed), and forwarded natively. docs/dialects-responses.md has the tables."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from support.gateway import Gateway
from support.http import post_json
from support.llm_upstream import ARGUMENTS, AnthropicUpstream, ChatUpstream
from support.upstream import Behaviour

CLIENT_KEY = "sk-team-responses"
TOOLS: list[Any] = [{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
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
    config = {
        "server": {"stream_ping_s": 0.3},
        "auth": {"keys": [{"name": "team", "key": CLIENT_KEY}]},
        "providers": [
            {"name": "gpustack", "kind": "gpustack", "base_url": f"{chat_upstream.url}/v1",
             "auth": {"header": {"Authorization": "Bearer chat-provider-key"}}},
            {"name": "openai", "kind": "openai", "base_url": f"{chat_upstream.url}/v1",
             "auth": {"header": {"Authorization": "Bearer openai-provider-key"}}},
            {"name": "compatible-native", "kind": "openai-compatible", "base_url": f"{chat_upstream.url}/v1",
             "responses_api": "native"},
            {"name": "claude", "kind": "anthropic", "base_url": f"{claude_upstream.url}/v1",
             "auth": {"header": {"x-api-key": "claude-provider-key"}}},
        ],
        "models": [
            {"name": "agent-model",
             "deployments": [{"provider": "gpustack", "model": "qwen3", "max_output_tokens": 1000}]},
            {"name": "gpt-native", "deployments": [{"provider": "openai", "model": "gpt-5"}]},
            {"name": "forced-native", "deployments": [{"provider": "compatible-native", "model": "qwen3"}]},
            {"name": "on-claude", "deployments": [{"provider": "claude", "model": "claude-real"}]},
        ],
    }
    with Gateway(config) as gw:
        yield gw


def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0)


def events(body: bytes) -> list[tuple[str | None, Any]]:
    out: list[tuple[str | None, Any]] = []
    for frame in body.decode().split("\n\n"):
        name, data = None, None
        for line in frame.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None:
            out.append((name, json.loads(data)))
    return out


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()))


def test_responses_create_on_a_chat_backend(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    raw = client(gateway).responses.with_raw_response.create(
        model="agent-model", instructions="Be brief.", input="hi", max_output_tokens=5000, store=False,
    )
    response = raw.parse()
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "hello from chat-backend"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert raw.headers["x-modelway-provider"] == "gpustack"
    (seen,) = chat_upstream.received
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer chat-provider-key"
    assert seen.body["model"] == "qwen3"
    assert seen.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert seen.body["max_tokens"] == 1000  # the client's 5000, clamped to max_output_tokens
    assert "store" not in seen.body
    deadline = time.monotonic() + 3
    while '"dialect":"responses→openai"' not in gateway.logs() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert '"dialect":"responses→openai"' in gateway.logs()  # the access log names the crossing


def test_responses_stream_text(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    with client(gateway).responses.stream(model="agent-model", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    assert final.output_text == "hello from chat-backend"
    assert final.usage is not None and final.usage.output_tokens == 7
    sent = chat_upstream.received[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_a_function_call_round_trip(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    sdk = client(gateway)
    first = sdk.responses.create(model="agent-model", input="weather in Paris?", tools=TOOLS)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == json.loads(ARGUMENTS)
    assert chat_upstream.received[-1].body["tools"][0]["function"]["name"] == "get_weather"
    second = sdk.responses.create(
        model="agent-model", tools=TOOLS,
        input=[{"role": "user", "content": "weather in Paris?"}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees"}],
    )
    assert second.output_text == "the tool said: 22 degrees"
    assistant, tool = chat_upstream.received[-1].body["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == call.call_id
    assert tool == {"role": "tool", "tool_call_id": call.call_id, "content": "22 degrees"}


def test_a_streamed_function_call(gateway: Gateway) -> None:
    with client(gateway).responses.stream(model="agent-model", input="weather?", tools=TOOLS) as stream:
        deltas = [event.delta for event in stream if event.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 1 and "".join(deltas) == ARGUMENTS  # split over chunks upstream, relayed as they came
    (call,) = final.output
    assert call.type == "function_call" and call.arguments == ARGUMENTS


def test_the_agents_sdk_runs_a_tool_through_modelway(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str, unit: str = "celsius") -> str:
        """The weather in a city."""
        calls.append(city)
        return f"22 degrees {unit} in {city}"

    async def run() -> Any:
        sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=CLIENT_KEY, max_retries=0)
        agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather],
                      model=OpenAIResponsesModel(model="agent-model", openai_client=sdk))
        try:
            return await Runner.run(agent, "weather in Paris?")
        finally:
            await sdk.close()

    result = asyncio.run(run())
    assert calls == ["Paris"]
    assert result.final_output == "the tool said: 22 degrees celsius in Paris"
    paths = [r.path for r in chat_upstream.received]
    assert paths == ["/v1/chat/completions", "/v1/chat/completions"]


def test_stateless_requests_are_refused_with_a_reason(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).responses.create(model="agent-model", input="and then?", previous_response_id="resp_123")
    assert refused.value.status_code == 400
    assert "modelway keeps no conversations" in refused.value.message
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert chat_upstream.received == []


def test_upstream_errors_pass_through_openai_shaped(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    chat_upstream.reset(Behaviour(status=400, error_body={"error": {"message": "bad schema", "type": "x",
                                                                    "param": None, "code": None}}))
    with pytest.raises(openai.BadRequestError) as bad:
        client(gateway).responses.create(model="agent-model", input="hi")
    assert bad.value.message.endswith("bad schema")


def test_a_stream_broken_midway_ends_with_response_failed(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    before = metric(gateway, "modelway_requests_total", model="agent-model", status="stream_broken")
    chat_upstream.reset(Behaviour(break_after=3))
    reply = post_json(gateway.url, "/v1/responses", {"model": "agent-model", "input": "hi", "stream": True},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert reply.status == 200
    frames = events(reply.body)
    assert frames[0][0] == "response.created"
    assert any(name == "response.output_text.delta" for name, _ in frames)
    name, data = frames[-1]
    assert name == "response.failed" and data["response"]["status"] == "failed"
    assert "broke off" in data["response"]["error"]["message"]
    assert [d["sequence_number"] for _, d in frames] == list(range(len(frames)))
    assert metric(gateway, "modelway_requests_total", model="agent-model", status="stream_broken") == before + 1


def test_native_responses_are_forwarded(gateway: Gateway, chat_upstream: ChatUpstream) -> None:
    body = {"model": "gpt-native", "input": "hi", "store": True, "previous_response_id": "resp_1"}
    reply = post_json(gateway.url, "/v1/responses", body, headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert reply.status == 200
    seen = chat_upstream.received[-1]
    assert seen.path == "/v1/responses"  # kind openai: native by default
    assert seen.body == {**body, "model": "gpt-5"}  # everything as sent, the model rewritten
    assert seen.headers["Authorization"] == "Bearer openai-provider-key"
    reply = post_json(gateway.url, "/v1/responses", {"model": "forced-native", "input": "hi"},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert reply.status == 200 and chat_upstream.received[-1].path == "/v1/responses"


def test_a_native_responses_stream_broken_midway_ends_with_response_failed(
    gateway: Gateway, chat_upstream: ChatUpstream
) -> None:
    chat_upstream.reset(Behaviour(break_after=2))
    reply = post_json(gateway.url, "/v1/responses", {"model": "gpt-native", "input": "hi", "stream": True},
                      headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    name, data = events(reply.body)[-1]
    assert name == "response.failed" and data["type"] == "response.failed"
    assert data["response"]["status"] == "failed" and "broke off" in data["response"]["error"]["message"]


def test_responses_on_an_anthropic_backend(gateway: Gateway, claude_upstream: AnthropicUpstream) -> None:
    sdk = client(gateway)
    response = sdk.responses.create(model="on-claude", instructions="Be brief.", input="hi")
    assert response.output_text == "hello from claude-backend"
    assert response.usage is not None and response.usage.input_tokens == 12  # 9 + 3 cache reads
    seen = claude_upstream.received[-1]
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == "claude-provider-key"
    assert seen.body["system"] == "Be brief." and seen.body["max_tokens"] == 4096
    with sdk.responses.stream(model="on-claude", input="weather?", tools=TOOLS) as stream:
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == json.loads(ARGUMENTS)
    assert final.usage is not None and final.usage.output_tokens == 6
