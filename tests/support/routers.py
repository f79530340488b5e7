"""Router plugins for the tests, scripted per request by a header: `x-script-<router id>`.

    (absent)                   decline
    raise                      raise RuntimeError
    sleep <ms> [then ...]      sleep, then do the rest (e.g. "sleep 100 model chat-b")
    garbage                    return a string instead of a decision
    model <name>               RouteDecision(kind="model")
    deployment <provider> [m]  RouteDecision(kind="deployment", target_model=m)
    executor [<id>]            RouteDecision(kind="executor", target=id)
    mutate                     change everything it can in its RouteRequest, then decline
    echo                       executor: answer with what the RouteRequest held
    reenter                    executor: add a system message and re-enter the gateway
    fail / fail-stream         executor: raise before answering / after the first event
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from modelway.plugins import Executor, Response, RouteDecision, Router, RouteRequest, StreamResponse


class ScriptedRouter(Router, Executor):
    def script(self, req: RouteRequest) -> list[str]:
        return (req.headers.get(f"x-script-{self.id}") or "").split()

    async def route(self, req: RouteRequest) -> RouteDecision | None:
        words = self.script(req)
        while words[:1] == ["sleep"]:
            await asyncio.sleep(int(words[1]) / 1000)
            words = words[2:]
        if not words:
            return None
        verb, args = words[0], words[1:]
        if verb == "raise":
            raise RuntimeError(f"{self.id} was told to fail")
        if verb == "garbage":
            return "chat-b"  # type: ignore[return-value]
        if verb == "model":
            return RouteDecision(kind="model", target=args[0], reason=f"{self.id} picked a model")
        if verb == "deployment":
            return RouteDecision(kind="deployment", target=args[0], target_model=args[1] if len(args) > 1 else None)
        if verb == "executor":
            return RouteDecision(kind="executor", target=args[0] if args else None)
        if verb in ("echo", "reenter", "fail", "fail-stream"):
            return RouteDecision(kind="executor", reason=verb)
        if verb == "mutate":
            mutate(req)
            return None
        raise ValueError(f"unknown script {words}")

    async def execute(self, req: RouteRequest) -> Response | StreamResponse:
        verb = (self.script(req) or ["echo"])[0]
        if verb == "fail":
            raise RuntimeError("the executor broke")
        if verb == "reenter":
            req.body["messages"] = [{"role": "system", "content": f"added by {self.id}"}, *req.body["messages"]]
            assert req.gateway is not None
            answer = await req.gateway.execute(req)
            content_type = (answer.headers or {}).get("content-type", "")
            return Response(answer.status, body=answer.body, headers={"x-reentered-by": self.id,
                                                                       "content-type": content_type})
        if req.stream:
            return StreamResponse(self.events(req, broken=verb == "fail-stream"), headers={"x-executor": self.id})
        return Response(json=completion(self.id, req), headers={"x-executor": self.id})

    async def events(self, req: RouteRequest, broken: bool) -> AsyncIterator[dict[str, Any]]:
        for i in range(3):
            if broken and i == 1:
                raise RuntimeError("stream broke")
            yield {
                "id": "exec-stream",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": req.requested_model,
                "choices": [{"index": 0, "delta": {"content": f"{self.id}-{i} "}, "finish_reason": None}],
            }
            await asyncio.sleep(0)


def mutate(req: RouteRequest) -> None:
    req.body["model"] = "evil"
    req.body["messages"].clear()
    req.body["injected"] = True
    req.requested_model = "evil"
    req.stream = not req.stream
    for target in (req.headers, req.query):
        with contextlib.suppress(TypeError):  # read-only: the router cannot
            target["x-injected"] = "yes"  # type: ignore[index]


def completion(router_id: str, req: RouteRequest) -> dict[str, Any]:
    available = req.available
    return {
        "id": "exec-1",
        "object": "chat.completion",
        "created": 1,
        "model": req.requested_model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answered by {router_id}"},
                "finish_reason": "stop",
            }
        ],
        "seen": {
            "source_format": req.source_format,
            "path": req.path,
            "requested_model": req.requested_model,
            "original_model": req.original_model,
            "stream": req.stream,
            "body": req.body,
            "headers": dict(req.headers),
            "query": dict(req.query),
            "client": req.client.key,
            "prompt_tokens": req.prompt_tokens,
            "providers": sorted(available.providers),
            "models": sorted(available.models),
        },
    }


class NotARouter:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config


class Refuses(Router):
    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        if "url" not in self.config:
            raise ValueError("config needs 'url'")

    async def route(self, req: RouteRequest) -> RouteDecision | None:
        return None


class Incomplete(Router):  # no route(): abstract
    pass
