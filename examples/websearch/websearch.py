"""A web-search executor, as a router plugin.

A chat completion that asks for web search — OpenAI's `web_search_options` field — is
answered here: search first, then ask the model with the results in a system message.
The model is asked through the gateway again (`req.gateway.execute`), so the request keeps
its model, routing, client key and failover; that call skips this router, so it cannot
loop. Other requests are declined and routed as usual.

Search backends are tried healthiest first: one that fails (error status, refused,
timeout, unreadable answer) is penalised for `penalty_s` and tried after the others
until then. When every backend fails, the model is asked without results, and told so.

    routing:
      routers:
        - id: websearch
          use: websearch:WebSearchRouter        # with examples/websearch on PYTHONPATH
          config:
            backends:
              - {name: alpha, url: "http://127.0.0.1:7701/search"}
              - {name: beta, url: "http://127.0.0.1:7702/search"}
            timeout_ms: 2000
            penalty_s: 30
            results: 3
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from modelway.plugins import Executor, Response, RouteDecision, Router, RouteRequest, StreamResponse

log = logging.getLogger("websearch")


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backends: list[Backend] = Field(min_length=1)
    timeout_ms: int = Field(2000, ge=1)
    penalty_s: float = Field(30.0, ge=0)
    results: int = Field(3, ge=1, le=10)


class SearchFailed(Exception):
    pass


class WebSearchRouter(Router, Executor):
    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = Settings.model_validate(self.config)  # `modelway check` reports a ValidationError
        self.penalised_until: dict[str, float] = {}  # backend name → monotonic time its penalty ends
        self.session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def route(self, req: RouteRequest) -> RouteDecision | None:
        if not req.path.endswith("/chat/completions") or "web_search_options" not in req.body:
            return None
        return RouteDecision(kind="executor", reason="web_search_options")

    async def execute(self, req: RouteRequest) -> Response | StreamResponse:
        body = req.body  # this request's own copy: changing it is how we re-send it
        body.pop("web_search_options", None)
        query = last_user_text(body.get("messages"))
        results, backend = await self.search(query) if query else ([], None)
        body["messages"] = [{"role": "system", "content": context_message(query, results)}, *body["messages"]]
        answer = await req.gateway.execute(req) if req.gateway is not None else Response(status=503)
        headers = {"x-websearch-backend": backend or "none"}
        if req.stream and answer.status == 200:
            return StreamResponse(replay(answer.events()), headers=headers)
        content_type = (answer.headers or {}).get("content-type", "application/json")
        return Response(status=answer.status, body=answer.body, headers={**headers, "content-type": content_type})

    def ordered_backends(self) -> list[Backend]:
        """Backends not under penalty first, each group in configured order."""
        now = time.monotonic()
        return sorted(self.settings.backends, key=lambda b: self.penalised_until.get(b.name, 0.0) > now)

    async def search(self, query: str) -> tuple[list[dict[str, Any]], str | None]:
        for backend in self.ordered_backends():
            try:
                results = await self.ask(backend, query)
            except (TimeoutError, aiohttp.ClientError, SearchFailed) as exc:
                self.penalised_until[backend.name] = time.monotonic() + self.settings.penalty_s
                log.warning("search backend %s failed (%s), penalised", backend.name, exc)
                continue
            self.penalised_until.pop(backend.name, None)
            return results, backend.name
        return [], None

    async def ask(self, backend: Backend, query: str) -> list[dict[str, Any]]:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_ms / 1000)
        params = {"q": query, "n": str(self.settings.results)}
        async with self.session.get(backend.url, params=params, timeout=timeout) as response:
            if response.status != 200:
                raise SearchFailed(f"status {response.status}")
            try:
                data = await response.json(content_type=None)
            except ValueError as exc:
                raise SearchFailed("answer is not JSON") from exc
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise SearchFailed("answer has no 'results' list")
        return [r for r in results if isinstance(r, dict)][: self.settings.results]


def last_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def context_message(query: str, results: list[dict[str, Any]]) -> str:
    if not results:
        return f"Web search for {query!r} returned nothing (search unavailable). Answer from what you know."
    lines = [f"Web search results for {query!r}:"]
    for i, result in enumerate(results, 1):
        lines.append(f"[{i}] {result.get('title', '')} ({result.get('url', '')}): {result.get('snippet', '')}")
    lines.append("Cite results by their [number].")
    return "\n".join(lines)


async def replay(events: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for event in events:
        yield event
