"""A router written exactly as SPEC section 6 shows an executor: a Router subclass that
simply defines `async def execute`, with no other base class."""

from __future__ import annotations

from typing import Any

from modelway.plugins import Response, RouteDecision, Router, RouteRequest


class SpecExecutor(Router):
    def __init__(self, config: dict[str, Any]) -> None:
        self.answer = config.get("answer", "from the executor")

    async def route(self, req: RouteRequest) -> RouteDecision | None:
        return RouteDecision(kind="executor", reason="answers itself")

    async def execute(self, req: RouteRequest) -> Response:
        return Response(json={"object": "chat.completion", "model": req.requested_model, "answer": self.answer})
