"""The translation layer as functions: which crossing an attempt takes, the request it makes,
the composed Responses → Anthropic stream, the output limit, and the keep-alive pinger."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from modelway.config.schema import ProviderConfig
from modelway.deployment import Deployment
from modelway.errors import BadRequest
from modelway.importing import resolve
from modelway.providers import PROVIDER_KINDS
from modelway.providers.base import Provider
from modelway.proxy.exchange import clamped
from modelway.proxy.incoming import Incoming
from modelway.proxy.translated import Pinger
from modelway.translation import choose
from modelway.translation.chat import ChatToMessages
from modelway.translation.messages import CountTokensEstimate, MessagesToChat
from modelway.translation.responses import ResponsesToChat, ResponsesToMessages


def provider(kind: str, **extra: Any) -> Provider:
    config = ProviderConfig.model_validate({"name": kind, "kind": kind, "base_url": "http://127.0.0.1:9/v1",
                                            **extra})
    built: Provider = resolve(PROVIDER_KINDS, kind, "provider kind")(config)
    return built


def incoming(path: str, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> Incoming:
    from modelway.proxy.dialect import dialect_of

    raw = orjson.dumps(body)
    return Incoming(path, path.removeprefix("/v1/"), dialect_of(path), b"", body, raw, dict(headers or []),
                    headers or [], body.get("stream") is True, body.get("model"), None, None)


MESSAGES = {"model": "m", "max_tokens": 5000, "messages": [{"role": "user", "content": "hi"}]}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "m", "input": "hi"}


@pytest.mark.parametrize(("path", "body", "kind", "extra", "expected"), [
    ("/v1/messages", MESSAGES, "vllm", {}, MessagesToChat),
    ("/v1/messages/count_tokens", MESSAGES, "openai", {}, CountTokensEstimate),
    ("/v1/messages/batches", MESSAGES, "vllm", {}, None),  # another Anthropic API: forwarded as it is
    ("/v1/chat/completions", CHAT, "anthropic", {}, ChatToMessages),
    ("/chat/completions", CHAT, "anthropic", {}, ChatToMessages),
    ("/v1/embeddings", {"model": "m", "input": "x"}, "anthropic", {}, None),
    ("/v1/responses", RESPONSES, "gpustack", {}, ResponsesToChat),
    ("/v1/responses", RESPONSES, "openai", {}, None),  # native by default for kind openai
    ("/v1/responses", RESPONSES, "openai", {"responses_api": "translate"}, ResponsesToChat),
    ("/v1/responses", RESPONSES, "vllm", {"responses_api": "native"}, None),
    ("/v1/responses", RESPONSES, "anthropic", {}, ResponsesToMessages),
])
def test_the_crossing_follows_both_dialects_and_the_path(
    path: str, body: dict[str, Any], kind: str, extra: dict[str, Any], expected: type | None
) -> None:
    assert choose(incoming(path, body), provider(kind, **extra)) is expected


def deployment_on(kind: str, **fields: Any) -> Deployment:
    return Deployment(index=0, model_name="public", provider=provider(kind), upstream_model="upstream", **fields)


def test_a_translated_request_carries_options_model_limit_and_fit_headers() -> None:
    headers = [(b"anthropic-beta", b"x"), (b"anthropic-version", b"2023-06-01"), (b"x-trace", b"t")]
    request = incoming("/v1/messages", MESSAGES, headers)
    translation = MessagesToChat(request, deployment_on("openai", max_output_tokens=1000,
                                                        options={"temperature": 0.2}), None)
    outgoing = translation.outgoing("public", request.forward_headers, fresh=False)
    body = orjson.loads(outgoing.body)
    assert outgoing.path == "chat/completions" and outgoing.client_path == "/v1/chat/completions"
    assert body["model"] == "upstream" and body["temperature"] == 0.2
    assert body["max_completion_tokens"] == 1000 and "max_tokens" not in body  # kind openai's name for it
    assert outgoing.headers == [(b"x-trace", b"t")]  # anthropic-* mean nothing to a chat backend
    assert translation.shown_model() == "upstream"


def test_a_body_the_translation_cannot_read_is_a_400_naming_the_place() -> None:
    request = incoming("/v1/messages", {"model": "m", "max_tokens": 5, "messages": {"role": "user"}})
    with pytest.raises(BadRequest, match="messages: must be an array"):
        MessagesToChat(request, deployment_on("vllm"), None).outgoing("public", [], fresh=False)


def test_count_tokens_is_answered_locally() -> None:
    translation = CountTokensEstimate(incoming("/v1/messages/count_tokens", MESSAGES), deployment_on("vllm"), None)
    assert translation.local
    assert orjson.loads(translation.local_body())["input_tokens"] > 0


def anthropic_stream() -> bytes:
    def event(kind: str, payload: dict[str, Any]) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"

    return b"".join([
        event("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                                            "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "hello"}}),
        event("content_block_stop", {"index": 0}),
        event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
        event("message_stop", {}),
    ])


def test_responses_over_anthropic_composes_two_stream_translations_byte_by_byte() -> None:
    translation = ResponsesToMessages(incoming("/v1/responses", {**RESPONSES, "stream": True}),
                                      deployment_on("anthropic"), "m")
    stream = translation.stream()
    data = anthropic_stream()
    out = b"".join(stream.feed(data[i : i + 1]) for i in range(len(data))) + stream.finish()
    frames = [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert frames[0]["type"] == "response.created" and frames[-1]["type"] == "response.completed"
    completed = frames[-1]["response"]
    assert completed["output"][0]["content"][0]["text"] == "hello"
    assert completed["usage"]["input_tokens"] == 9 and completed["usage"]["output_tokens"] == 4
    assert stream.usage == (9, 4) and stream.failure is None
    assert stream.fail("late") == b""  # nothing follows the terminal event


def test_clamped_lowers_only_what_is_above_the_limit() -> None:
    payload = {"max_tokens": 5000, "max_completion_tokens": 50, "max_output_tokens": True}
    assert clamped(payload, {}, 100) == {"max_tokens": 100}
    assert clamped(payload, {"max_tokens": 7}, 100) == {"max_tokens": 7}  # the deployment's own value wins
    options = {"temperature": 0}
    assert clamped({"max_tokens": 10}, options, 100) is options  # nothing to lower: no copy


async def test_the_pinger_speaks_only_into_silence() -> None:
    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["body"])

    pinger = Pinger(0.2, lambda: b": ping\n\n", send)
    for _ in range(20):  # the relay sends something every 20 ms: no ping is due
        await asyncio.sleep(0.02)
        pinger.heard()
    assert sent == []
    await asyncio.sleep(0.5)  # silent for over two intervals
    await pinger.close()
    assert 1 <= len(sent) <= 3 and set(sent) == {b": ping\n\n"}
    pinged = len(sent)
    await asyncio.sleep(0.3)
    assert len(sent) == pinged  # closed: no more
    pinger.stop()
