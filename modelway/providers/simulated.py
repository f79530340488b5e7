"""An in-process fake backend for the demo, tests and benchmarks.

It speaks OpenAI chat completions (SSE included), completions, embeddings and models,
with configurable time to first token, decode speed and failure rate — no sockets.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from modelway.config.schema import ProviderConfig, SimulationConfig
from modelway.providers.base import Provider, UpstreamRequest, UpstreamResponse
from modelway.providers.credentials import Credential

WORDS = (
    "modelway", "routes", "this", "request", "to", "a", "simulated", "backend", "that", "streams",
    "tokens", "at", "a", "steady", "pace", "so", "you", "can", "watch", "failover", "latency",
    "and", "load", "balancing", "without", "a", "GPU",
)
MAX_TOKENS = 4096


class SimulatedResponse(UpstreamResponse):
    def __init__(self, status: int, content_type: str, body: bytes = b"", stream: AsyncIterator[bytes] | None = None):
        self.status = status
        self.content_type = content_type
        self.headers = [(b"content-type", content_type.encode())]
        self._body = body
        self._stream = stream

    async def read(self) -> bytes:
        if self._stream is None:
            return self._body
        return b"".join([chunk async for chunk in self._stream])

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._stream is None:
            yield self._body
            return
        async for chunk in self._stream:
            yield chunk

    def close(self) -> None:
        return None


def json_response(status: int, payload: Any) -> SimulatedResponse:
    return SimulatedResponse(status, "application/json", orjson.dumps(payload))


def error_response(status: int, message: str, kind: str) -> SimulatedResponse:
    return json_response(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


def estimate_tokens(value: Any) -> int:
    return max(1, len(orjson.dumps(value)) // 4)


class SimulatedProvider(Provider):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.sim: SimulationConfig = config.simulate or SimulationConfig()
        self._random = random.Random(self.sim.seed)

    async def list_models(self) -> list[dict[str, Any]]:
        return [{"id": m, "object": "model", "created": 0, "owned_by": self.name} for m in self.sim.models]

    async def send(self, request: UpstreamRequest, credential: Credential) -> UpstreamResponse:
        if self.sim.latency_ms:
            await asyncio.sleep(self.sim.latency_ms / 1000)
        if self.sim.failure_rate and self._random.random() < self.sim.failure_rate:
            return error_response(500, "simulated failure", "server_error")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return error_response(400, "body is not JSON", "invalid_request_error")
        path = request.path
        if path.endswith("chat/completions"):
            return await self._complete(body, chat=True)
        if path.endswith("completions"):
            return await self._complete(body, chat=False)
        if path.endswith("embeddings"):
            return self._embed(body)
        return error_response(404, f"the simulated backend does not serve /{path}", "not_found_error")

    def _output_tokens(self, body: dict[str, Any]) -> int:
        asked = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(asked, int) and asked > 0:
            return min(asked, MAX_TOKENS)
        return self.sim.output_tokens

    async def _complete(self, body: dict[str, Any], *, chat: bool) -> UpstreamResponse:
        model = str(body.get("model", "simulated"))
        prompt_tokens = estimate_tokens(body.get("messages") if chat else body.get("prompt"))
        n = self._output_tokens(body)
        words = [WORDS[i % len(WORDS)] for i in range(n)]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            stream = self._stream(ident, created, model, words, usage if include_usage else None, chat)
            return SimulatedResponse(200, "text/event-stream", stream=stream)
        await asyncio.sleep(n / self.sim.tokens_per_s)
        text = " ".join(words)
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length" if n < self.sim.output_tokens else "stop",
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            obj = "text_completion"
        return json_response(
            200, {"id": ident, "object": obj, "created": created, "model": model, "choices": [choice], "usage": usage}
        )

    async def _stream(
        self,
        ident: str,
        created: int,
        model: str,
        words: list[str],
        usage: dict[str, int] | None,
        chat: bool,
    ) -> AsyncIterator[bytes]:
        obj = "chat.completion.chunk" if chat else "text_completion"
        gap = 1 / self.sim.tokens_per_s

        def event(choice: dict[str, Any], extra: dict[str, Any] | None = None) -> bytes:
            payload = {"id": ident, "object": obj, "created": created, "model": model, "choices": [choice]}
            if extra:
                payload.update(extra)
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        if chat:
            yield event({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        for i, word in enumerate(words):
            await asyncio.sleep(gap)
            piece = word if i == 0 else " " + word
            if chat:
                yield event({"index": 0, "delta": {"content": piece}, "finish_reason": None})
            else:
                yield event({"index": 0, "text": piece, "finish_reason": None, "logprobs": None})
        final = {"index": 0, "delta": {}, "finish_reason": "stop"} if chat else {
            "index": 0, "text": "", "finish_reason": "stop", "logprobs": None}
        yield event(final)
        if usage is not None:
            payload = {"id": ident, "object": obj, "created": created, "model": model, "choices": [], "usage": usage}
            yield b"data: " + orjson.dumps(payload) + b"\n\n"
        yield b"data: [DONE]\n\n"

    def _embed(self, body: dict[str, Any]) -> UpstreamResponse:
        inputs = body.get("input")
        if isinstance(inputs, str | int):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return error_response(400, "input must be a string or a non-empty array", "invalid_request_error")
        data = [
            {"object": "embedding", "index": i, "embedding": self._vector(str(text))}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(estimate_tokens(t) for t in inputs)
        return json_response(
            200,
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model", "simulated")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _vector(self, text: str) -> list[float]:
        # Deterministic per text, so equal inputs embed equally across runs.
        dims = self.sim.embedding_dims
        seed = hashlib.sha256(text.encode()).digest()
        out: list[float] = []
        counter = 0
        while len(out) < dims:
            block = hashlib.sha256(seed + struct.pack(">I", counter)).digest()
            out.extend((b - 127.5) / 127.5 for b in block)
            counter += 1
        return out[:dims]
