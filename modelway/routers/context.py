"""ContextWindowRouter: a prompt too long for the requested model goes to the smallest
model whose context window fits it — LiteLLM's context-window fallback, decided before
the request is sent instead of after the upstream refused it.

    routing:
      routers:
        - id: context-window
          use: modelway.routers.context:ContextWindowRouter
          config:
            models: ["qwen-*"]                   # requested models it looks after (globs; default all)
            candidates: [qwen-32k, qwen-128k]    # where it may move them (default: every model with a max_context)
            reserve_output: true                 # the request's max_tokens must fit too (default)

A model's context is the largest `max_context` among its available deployments; a model
with an available deployment that sets none is unknown and left alone. The prompt size is
`RouteRequest.prompt_tokens` (an estimate). Nothing fits: it declines, and the request goes
where it would have gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from pydantic import Field

from modelway.config.schema import Strict
from modelway.plugins import ModelInfo, RouteDecision, Router, RouteRequest
from modelway.routers.settings import parse_settings

OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


class ContextSettings(Strict):
    models: list[str] = Field(default_factory=lambda: ["*"])
    candidates: list[str] | None = None
    reserve_output: bool = True


class ContextWindowRouter(Router):
    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = parse_settings(ContextSettings, self.config)

    async def route(self, req: RouteRequest) -> RouteDecision | None:
        settings = self.settings
        asked = req.requested_model
        if not any(fnmatchcase(asked, glob) for glob in settings.models):
            return None
        models = req.available.models
        current = models.get(asked)
        if current is None or current.max_context is None:
            return None
        need = req.prompt_tokens + (output_tokens(req.body) if settings.reserve_output else 0)
        if need <= current.max_context:
            return None
        names = settings.candidates if settings.candidates is not None else list(models)
        fits = [m for name in names if (m := models.get(name)) is not None and name != asked and fits_in(m, need)]
        if not fits:
            return None
        best = min(fits, key=lambda m: (m.max_context, m.name))
        reason = f"~{need} tokens exceed {asked}'s context of {current.max_context}; {best.name} has {best.max_context}"
        return RouteDecision.to_model(best.name, reason=reason)


def fits_in(model: ModelInfo, need: int) -> bool:
    return model.max_context is not None and model.max_context >= need


def output_tokens(body: Mapping[str, Any]) -> int:
    for name in OUTPUT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0
