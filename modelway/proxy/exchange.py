"""One upstream exchange: send the request to one deployment with one credential, and
wait for the answer up to its first body byte (a stream's first chunk, or a whole
non-stream body). Nothing has reached the client yet, so any failure here is retryable."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson

from modelway.deployment import Deployment
from modelway.errors import UpstreamBrokenStream, UpstreamConnectError, UpstreamError
from modelway.failover.quota import low_until
from modelway.providers.base import UpstreamRequest, UpstreamResponse
from modelway.providers.credentials import Credential
from modelway.proxy.context import RequestContext
from modelway.proxy.splice import Unspliceable, nested, with_model
from modelway.runtime import ModelRoute
from modelway.strategies.base import Outcome

log = logging.getLogger("modelway")


@dataclass(slots=True)
class AttemptRecord:
    deployment: Deployment
    credential: Credential
    hedge: bool = False
    status: int | None = None
    error: str | None = None
    headers_at: float | None = None  # when the upstream's response headers arrived

    def describe(self) -> str:
        key = f" key#{self.credential.index}" if self.deployment.provider.credentials.pooled else ""
        result = self.status if self.status is not None else self.error
        return f"{self.deployment.name}{key}{' (hedge)' if self.hedge else ''} -> {result}"


@dataclass(slots=True)
class Answer:
    """An upstream response ready to relay: the body read, or a stream's first chunk pulled."""

    route: ModelRoute
    deployment: Deployment
    upstream: UpstreamResponse
    started_at: float
    attempts: int = 1
    body: bytes | None = None
    first_chunk: bytes = b""
    rest: AsyncIterator[bytes] | None = None
    ttft_s: float | None = None
    finished: bool = field(default=False)

    def finish(self, ok: bool, error: str | None = None, observe: bool = True) -> None:
        """Release the upstream and account for the outcome, once (the relay ended, broke,
        was cancelled, or the answer was discarded for a retry or a faster hedge)."""
        if self.finished:
            return
        self.finished = True
        self.upstream.close()
        self.deployment.stats.inflight -= 1
        if observe and self.route.observes:
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


def upstream_body(ctx: RequestContext, deployment: Deployment) -> bytes:
    """The client's bytes, with the deployment's model and options set in place (proxy/splice.py):
    numbers and everything else reach the provider as the client wrote them."""
    target = deployment.upstream_model or ctx.requested_model
    options = deployment.options
    if not options and target == ctx.original_model:
        return ctx.raw_body  # nothing to change: the client's bytes go out as they came
    key_path = ctx.runtime.mapper.key_path
    try:
        return with_model(ctx.raw_body, ctx.payload, key_path, target, options)
    except Unspliceable as exc:  # not expected of a body orjson has read: re-encoding is right, if not exact
        log.warning("request body re-encoded, as it could not be edited in place: %s", exc)
        return orjson.dumps(nested({**ctx.payload, **options} if options else ctx.payload, key_path, target))


async def exchange(ctx: RequestContext, route: ModelRoute, record: AttemptRecord) -> Answer:
    runtime = ctx.runtime
    deployment = record.deployment
    headers = ctx.forward_headers
    if runtime.selected_provider_header:
        selected = (runtime.selected_provider_header, deployment.provider.name.encode())
        headers = [*(h for h in headers if h[0] != selected[0]), selected]
    request = UpstreamRequest(
        path=ctx.upstream_path,
        client_path=ctx.path,
        headers=headers,
        body=upstream_body(ctx, deployment),
        stream=ctx.stream,
    )
    started = time.monotonic()
    deployment.stats.inflight += 1
    try:
        upstream = await deployment.provider.send(request, record.credential)
    except BaseException as exc:
        deployment.stats.inflight -= 1
        if isinstance(exc, UpstreamError) and route.observes:
            route.strategy.observe(
                Outcome(deployment, False, None, exc.kind, time.monotonic() - started, None, ctx.stream)
            )
        raise
    record.headers_at = now = time.monotonic()
    if upstream.reports_quota:
        low = low_until(upstream.headers, now)
        if low is not None:
            deployment.stats.quota_low_until = low
    answer = Answer(route, deployment, upstream, started)
    try:
        if upstream.is_event_stream and upstream.status < 300:
            rest = upstream.chunks().__aiter__()
            answer.rest = rest
            answer.first_chunk = await anext(rest, b"")
            answer.ttft_s = time.monotonic() - started
        else:
            answer.body = await upstream.read()
    except UpstreamBrokenStream as exc:
        # Broken after the head but before a byte was relayed: as retryable as a refused
        # connection (a broken_stream is never retried, as bytes reached the client then).
        answer.finish(ok=False, error=UpstreamConnectError.kind)
        raise UpstreamConnectError(f"{exc.message} (before the first byte)") from None
    except BaseException as exc:
        answer.finish(ok=False, error=exc.kind if isinstance(exc, UpstreamError) else "cancelled")
        raise
    return answer
