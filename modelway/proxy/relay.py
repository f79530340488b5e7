"""The last stage: relaying the answer the attempt loop returned to the client — status,
headers, then the body as it arrives — and recording it in the metrics. Bytes are copied
untouched unless `response_model: requested` asks for a rewrite."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.errors import AllAttemptsFailed, GatewayTimeout, UpstreamError, UpstreamTimeout
from modelway.failover.policy import BROKEN_STREAM
from modelway.proxy.dialect import OPENAI
from modelway.proxy.responses import send_bytes, sse_error_event
from modelway.proxy.rewrite import SSEModelRewriter, rewrite_json_model
from modelway.proxy.unexpected import internal_error, log_unexpected
from modelway.proxy.usage import StreamUsage, usage_from_body, wants_stream_usage

if TYPE_CHECKING:
    from modelway.asgi import Send
    from modelway.proxy.exchange import Answer
    from modelway.proxy.incoming import Incoming
    from modelway.proxy.settings import ProxySettings

ATTEMPTS = [(b"x-modelway-attempts", b"%d" % n) for n in range(16)]


def route_headers(model: str, answer: Answer, extra: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    deployment = answer.deployment
    headers = [*answer.upstream.headers, *deployment.route_head]
    if deployment.upstream_model is None:
        headers.append((b"x-modelway-model", model.encode()))
    n = answer.attempts
    headers.append(ATTEMPTS[n] if n < len(ATTEMPTS) else (b"x-modelway-attempts", b"%d" % n))
    if extra:
        headers += extra
    return headers


CLIENT_CLOSED = 499  # nginx's status for a client that closed the request


def record(
    settings: ProxySettings, model: str, answer: Answer, status: int | str, usage: tuple[int, int] | None
) -> None:
    """The answer in the metrics and in the recent decisions (the status page's)."""
    deployment = answer.deployment
    provider = deployment.provider.name
    settings.metrics.request(model, provider, status, time.monotonic() - answer.started_at, answer.ttft_s)
    settings.decisions.add(model, deployment.model_name, provider, status, answer.attempts)
    if usage is not None:
        settings.metrics.usage(model, deployment, *usage)


async def relay(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    extra_headers: Sequence[tuple[bytes, bytes]],
    answer: Answer,
    send: Send,
) -> None:
    """Send `answer`, the answer to `request` as the public model `model`, with `extra_headers`."""
    upstream = answer.upstream
    status = upstream.status
    rewrite_to = request.original_model if settings.rewrite_response_model and status < 300 else None
    headers = route_headers(model, answer, extra_headers)
    if answer.body is not None:
        body = answer.body
        if rewrite_to and "json" in upstream.content_type:
            body = rewrite_json_model(body, rewrite_to)
        answer.finish(ok=status < 400)
        record(settings, model, answer, status, usage_from_body(body) if status < 300 else None)
        await send_bytes(send, status, body, headers)
        return
    assert answer.rest is not None
    await send({"type": "http.response.start", "status": status, "headers": headers})
    rewriter = SSEModelRewriter(rewrite_to) if rewrite_to else None
    usage = StreamUsage() if request.dialect != OPENAI or wants_stream_usage(request.payload) else None
    chunk = answer.first_chunk
    rest = answer.rest
    relayed = False
    try:
        while True:
            if usage is not None:
                usage.feed(chunk)
            if rewriter is not None:
                chunk = rewriter.feed(chunk)
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            try:
                chunk = await anext(rest)
            except StopAsyncIteration:
                break
        tail = rewriter.flush() if rewriter is not None else b""
        if tail:
            await send({"type": "http.response.body", "body": tail, "more_body": True})
        relayed = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})  # the end before the books
    except UpstreamError as exc:
        # Bytes already reached the client, so no retry: end with an error event, no [DONE].
        answer.finish(ok=False, error=exc.kind)
        settings.failover.error(answer.deployment, BROKEN_STREAM)
        cls = GatewayTimeout if isinstance(exc, UpstreamTimeout) else AllAttemptsFailed
        error = cls(f"upstream stream from {answer.deployment.name} broke off: {exc.message}",
                    code="stream_broken")
        await send({"type": "http.response.body", "body": sse_error_event(error, request.dialect), "more_body": False})
        record(settings, model, answer, "stream_broken", None)
        return
    except Exception as exc:  # a bug: the stream ends as a broken one does, counted as a 500
        log_unexpected(exc)
        answer.finish(ok=False, error="internal_error")
        await send({"type": "http.response.body", "body": sse_error_event(internal_error(exc), request.dialect),
                    "more_body": False})
        record(settings, model, answer, 500, None)
        return
    finally:
        if not answer.finished:
            # Not relayed to the end only when the client left: no verdict on the deployment.
            answer.finish(ok=True, observe=relayed)
            if not relayed:
                record(settings, model, answer, CLIENT_CLOSED, None)
    record(settings, model, answer, status, usage.found if usage is not None else None)
