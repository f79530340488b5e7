"""One upstream exchange: send the request to one deployment with one credential, and
wait for the answer up to its first body byte (a stream's first chunk, or a whole
non-stream body). Nothing has reached the client yet, so any failure here is retryable.

When the provider speaks another dialect than the client, the attempt goes through a
`Translation` (modelway/translation/), chosen here per attempt: it makes the request sent,
and rides on the Answer for the relay to translate what comes back. When both speak the
same, nothing of it runs: the client's bytes go out as they came."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from modelway.errors import UpstreamBrokenStream, UpstreamConnectError, UpstreamError, UpstreamStaleConnection
from modelway.failover.quota import low_until
from modelway.providers.base import UpstreamRequest
from modelway.proxy.splice import Unspliceable, nested, with_model
from modelway.proxy.usage import injects_stream_usage, with_usage_requested
from modelway.strategies.base import Outcome
from modelway.translation import LocalResponse, Translation, choose

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.providers.base import UpstreamResponse
    from modelway.providers.credentials import Credential
    from modelway.proxy.incoming import Incoming
    from modelway.proxy.settings import ProxySettings
    from modelway.routes import ModelRoute

Headers = Sequence[tuple[bytes, bytes]]

log = logging.getLogger("modelway")
NATIVE = "native"
OUTPUT_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(slots=True)
class AttemptRecord:
    route: ModelRoute  # the model (the requested one, or a fallback) this deployment serves
    deployment: Deployment
    credential: Credential
    hedge: bool = False
    fresh: bool = False  # sent on a new connection: a re-send after a stale keep-alive one
    status: int | None = None
    error: str | None = None
    stale: bool = False  # failed on a reused keep-alive connection the upstream had closed
    headers_at: float | None = None  # when the upstream's response headers arrived
    since: float | None = None  # when the request began waiting at the gateway for this slot: its times count from then

    def describe(self) -> str:
        key = f" key#{self.credential.index}" if self.deployment.provider.credentials.pooled else ""
        result = self.status if self.status is not None else self.error
        why = " (a reused connection the upstream had closed)" if self.stale else ""
        return f"{self.deployment.name}{key}{' (hedge)' if self.hedge else ''} -> {result}{why}"


@dataclass(slots=True)
class Answer:
    """An upstream response ready to relay: the body read, or a stream's first chunk pulled."""

    route: ModelRoute
    deployment: Deployment
    upstream: UpstreamResponse
    started_at: float
    held_s: float = 0.0  # of started_at..now, the wait at the gateway (late binding): the client's, not the engine's
    attempts: int = 1
    body: bytes | None = None
    first_chunk: bytes = b""
    rest: AsyncIterator[bytes] | None = None
    ttft_s: float | None = None
    finished: bool = field(default=False)
    translation: Translation | None = None  # the crossing this answer came through; None: the same dialect

    @property
    def crossing(self) -> str:
        """The dialects the request crossed, for the logs: "native", "anthropic→openai", ..."""
        translation = self.translation
        return translation.name if translation is not None else NATIVE

    def finish(self, ok: bool, error: str | None = None, observe: bool = True) -> None:
        """Release the upstream and account for the outcome, once (the relay ended, broke,
        was cancelled, or the answer was discarded for a retry or a faster hedge)."""
        if self.finished:
            return
        self.finished = True
        self.upstream.close()
        self.deployment.stats.inflight -= 1
        gate = self.route.gate
        if gate is not None:
            gate.freed(self.deployment)
        if observe and self.route.observes:
            # The strategy learns the engine's times: from when the request was sent.
            now = time.monotonic()
            held = self.held_s
            self.route.strategy.observe(
                Outcome(
                    self.deployment,
                    ok,
                    self.upstream.status,
                    error,
                    now - self.started_at - held,
                    None if self.ttft_s is None else self.ttft_s - held,
                    self.rest is not None,
                    now,
                )
            )


def upstream_body(request: Incoming, model: str, deployment: Deployment, model_key: tuple[str, ...]) -> bytes:
    """The client's bytes, with the deployment's model and options set in place (proxy/splice.py):
    numbers and everything else reach the provider as the client wrote them."""
    target = deployment.upstream_model or model
    options = deployment.options
    if deployment.max_output_tokens is not None:
        options = clamped(request.payload, options, deployment.max_output_tokens)
    if request.stream and injects_stream_usage(request.path, True, request.payload, deployment.provider.kind):
        options = with_usage_requested(request.payload, options)  # for the tokens and cost of streams
    if not options and target == request.original_model:
        return request.raw_body  # nothing to change: the client's bytes go out as they came
    try:
        return with_model(request.raw_body, request.payload, model_key, target, options)
    except Unspliceable as exc:  # not expected of a body orjson has read: re-encoding is right, if not exact
        log.warning("request body re-encoded, as it could not be edited in place: %s", exc)
        return orjson.dumps(nested({**request.payload, **options} if options else request.payload, model_key, target))


def clamped(payload: dict[str, Any], options: dict[str, Any], limit: int) -> dict[str, Any]:
    """The deployment's options, plus each output limit the client asked for above `limit`
    lowered to it (max_output_tokens, SPEC section 2)."""
    lowered = {
        key: limit
        for key in OUTPUT_LIMITS
        if type(asked := payload.get(key)) is int and asked > limit and key not in options
    }
    return {**options, **lowered} if lowered else options


def translated(
    request: Incoming, model: str, record: AttemptRecord, settings: ProxySettings, headers: Headers
) -> tuple[Translation, UpstreamRequest] | None:
    """The translation this attempt goes through and the request it makes, or None when the
    request goes as it is. Raises BadRequest when the body cannot be translated."""
    deployment = record.deployment
    kind = choose(request, deployment.provider)
    if kind is None:
        return None
    translation = kind(request, deployment, request.original_model if settings.rewrite_response_model else None)
    outgoing = translation.outgoing(model, headers, record.fresh)
    # The access log's `dialect` says it for every request; this line is there for debugging.
    if translation.local:
        log.debug("%s: %s, estimated here (%s not asked)", request.path, translation.name, deployment.name)
    else:
        log.debug("%s: %s, to %s", request.path, translation.name, deployment.name)
    return translation, outgoing


def exchange(
    request: Incoming, model: str, record: AttemptRecord, settings: ProxySettings
) -> Coroutine[Any, Any, Answer]:
    """`request` to `record`'s deployment, as `model` (the public model) or its upstream name.
    Returns the coroutine itself, in a span of its own when tracing: no frame more otherwise."""
    if settings.tracing is None:
        return exchange_once(request, model, record, settings)
    return traced_exchange(request, model, record, settings)


async def traced_exchange(request: Incoming, model: str, record: AttemptRecord, settings: ProxySettings) -> Answer:
    assert settings.tracing is not None
    with settings.tracing.attempt(record.deployment) as span:
        answer = await exchange_once(request, model, record, settings)
        span.set_attribute("http.response.status_code", answer.upstream.status)
        return answer


async def exchange_once(request: Incoming, model: str, record: AttemptRecord, settings: ProxySettings) -> Answer:
    route = record.route
    deployment = record.deployment
    provider = deployment.provider
    headers = request.forward_headers
    if settings.selected_provider_header:
        selected = (settings.selected_provider_header, provider.name.encode())
        headers = [*(h for h in headers if h[0] != selected[0]), selected]
    translation: Translation | None = None
    crossing = None if request.dialect == provider.dialect else translated(request, model, record, settings, headers)
    if crossing is None:
        outgoing = UpstreamRequest(
            path=request.upstream_path,
            client_path=request.path,
            headers=headers,
            body=upstream_body(request, model, deployment, settings.model_key),
            stream=request.stream,
            fresh=record.fresh,
        )
    else:
        translation, outgoing = crossing
    sent = time.monotonic()
    started = record.since or sent
    deployment.stats.inflight += 1
    try:
        if translation is not None and translation.local:
            upstream: UpstreamResponse = LocalResponse(translation.local_body())
        else:
            upstream = await provider.send(outgoing, record.credential)
    except BaseException as exc:
        deployment.stats.inflight -= 1
        if route.gate is not None:
            route.gate.freed(deployment)
        # A stale keep-alive connection says nothing about the deployment: not observed.
        if isinstance(exc, UpstreamError) and route.observes and not isinstance(exc, UpstreamStaleConnection):
            now = time.monotonic()
            route.strategy.observe(Outcome(deployment, False, None, exc.kind, now - sent, None, request.stream, now))
        raise
    record.headers_at = now = time.monotonic()
    if upstream.reports_quota:
        low = low_until(upstream.headers, now)
        if low is not None:
            deployment.stats.quota_low_until = low
    answer = Answer(route, deployment, upstream, started, sent - started)
    if translation is not None:
        answer.translation = translation
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
