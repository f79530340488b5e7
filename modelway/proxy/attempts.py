"""The attempt loop: choose a deployment, send, and decide what a failure means.

Layers, outermost first (as httpx layers its send path):
  attempt()          retry/fallback across deployments until one answers or the budget ends
  RouteChain.next()  the next deployment: highest priority first, untried, then fallbacks
  try_deployment()   one upstream exchange, up to the first body byte

Nothing reaches the client until an answer is returned from here, so every failure inside
is still retryable.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson

from modelway.deployment import Deployment
from modelway.errors import AllAttemptsFailed, GatewayTimeout, NoHealthyDeployment, UpstreamError
from modelway.providers.base import UpstreamRequest, UpstreamResponse
from modelway.proxy.body import set_model
from modelway.proxy.context import RequestContext
from modelway.runtime import ModelRoute
from modelway.strategies.base import Outcome


@dataclass(slots=True)
class AttemptRecord:
    deployment: Deployment
    status: int | None = None
    error: str | None = None

    def describe(self) -> str:
        return f"{self.deployment.name} -> {self.status if self.status is not None else self.error}"


@dataclass(slots=True)
class Answer:
    """An upstream response ready to relay: the body read, or a stream's first chunk pulled."""

    route: ModelRoute
    deployment: Deployment
    upstream: UpstreamResponse
    attempts: int
    started_at: float
    body: bytes | None = None
    first_chunk: bytes = b""
    rest: AsyncIterator[bytes] | None = None
    ttft_s: float | None = None
    finished: bool = field(default=False)

    def finish(self, ok: bool, error: str | None = None) -> None:
        """Record the outcome once the relay ends (successful, broken or cancelled)."""
        if self.finished:
            return
        self.finished = True
        self.upstream.close()
        self.deployment.stats.inflight -= 1
        self.route.strategy.observe(
            Outcome(
                self.deployment,
                ok,
                self.upstream.status,
                error,
                time.monotonic() - self.started_at,
                self.ttft_s,
                self.rest is not None,
            )
        )


class RouteChain:
    """The model's deployments by priority, then each fallback model's, in order."""

    def __init__(self, ctx: RequestContext, route: ModelRoute) -> None:
        self.routes = [route]
        models = ctx.runtime.models
        for name in route.config.fallbacks:
            fallback = models.get(name)
            if fallback is not None:
                self.routes.append(fallback)

    def next(self, ctx: RequestContext, tried: set[int]) -> tuple[ModelRoute, Deployment] | None:
        for route in self.routes:
            for group in route.groups:
                candidates = [d for d in group if d.index not in tried and usable(d)]
                if candidates:
                    return route, route.strategy.choose(ctx, candidates)
        return None

    def has_next(self, tried: set[int]) -> bool:
        return any(
            d.index not in tried and usable(d) for route in self.routes for group in route.groups for d in group
        )


def usable(deployment: Deployment) -> bool:
    cap = deployment.max_concurrency
    return cap is None or deployment.stats.inflight < cap


async def attempt(ctx: RequestContext, route: ModelRoute) -> Answer:
    runtime = ctx.runtime
    max_attempts = 1 + runtime.config.routing.retries
    retry_on = runtime.retry_on
    chain = RouteChain(ctx, route)
    tried: set[int] = set()
    history: list[AttemptRecord] = []
    while len(history) < max_attempts:
        picked = chain.next(ctx, tried)
        if picked is None:
            break
        chosen_route, deployment = picked
        tried.add(deployment.index)
        record = AttemptRecord(deployment)
        history.append(record)
        try:
            answer = await try_deployment(ctx, chosen_route, deployment, len(history))
        except UpstreamError as exc:
            record.error = exc.kind
            if exc.kind not in retry_on:
                break
            continue
        status = answer.upstream.status
        record.status = status
        if status in retry_on and len(history) < max_attempts and chain.has_next(tried):
            answer.finish(ok=False, error=str(status))
            continue
        if status in retry_on and len(history) > 1:
            answer.finish(ok=False, error=str(status))
            break
        return answer
    raise attempts_failed(route, history)


def attempts_failed(route: ModelRoute, history: list[AttemptRecord]) -> Exception:
    count = {"x-modelway-attempts": str(len(history))}
    if not history:
        return NoHealthyDeployment(f"model {route.name!r} has no usable deployment right now", headers=count)
    summary = "; ".join(f"#{i} {record.describe()}" for i, record in enumerate(history, 1))
    n = len(history)
    if history[-1].error == "timeout":
        return GatewayTimeout(f"upstream timed out ({n} attempt{'s' * (n > 1)}: {summary})", headers=count)
    return AllAttemptsFailed(f"every attempt failed ({n} attempt{'s' * (n > 1)}: {summary})", headers=count)


def upstream_body(ctx: RequestContext, deployment: Deployment) -> bytes:
    target = deployment.upstream_model or ctx.requested_model
    options = deployment.options
    if not options and target == ctx.original_model:
        return ctx.raw_body  # nothing to change: the client's bytes go out as they came
    payload = {**ctx.payload, **options} if options else ctx.payload
    return orjson.dumps(set_model(payload, ctx.runtime.mapper.key_path, target))


async def try_deployment(ctx: RequestContext, route: ModelRoute, deployment: Deployment, n: int) -> Answer:
    runtime = ctx.runtime
    headers = ctx.forward_headers
    if runtime.selected_provider_header:
        headers = {**headers, runtime.selected_provider_header: deployment.provider.name}
    request = UpstreamRequest(
        path=ctx.upstream_path,
        client_path=ctx.path,
        query=ctx.query_string,
        headers=headers,
        body=upstream_body(ctx, deployment),
        stream=ctx.stream,
    )
    started = time.monotonic()
    deployment.stats.inflight += 1
    try:
        upstream = await deployment.provider.send(request)
    except BaseException as exc:
        deployment.stats.inflight -= 1
        if isinstance(exc, UpstreamError):
            route.strategy.observe(
                Outcome(deployment, False, None, exc.kind, time.monotonic() - started, None, ctx.stream)
            )
        raise
    answer = Answer(route, deployment, upstream, n, started)
    try:
        if upstream.is_event_stream and upstream.status < 300:
            rest = upstream.chunks().__aiter__()
            answer.rest = rest
            answer.first_chunk = await anext(rest, b"")
            answer.ttft_s = time.monotonic() - started
        else:
            answer.body = await upstream.read()
    except BaseException as exc:
        answer.finish(ok=False, error=exc.kind if isinstance(exc, UpstreamError) else "cancelled")
        raise
    return answer
