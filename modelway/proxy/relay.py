"""The last stage: relaying the answer the attempt loop returned to the client — status,
headers, then the body as it arrives — and recording it in the metrics. Bytes are copied
untouched unless `response_model: requested` asks for a rewrite."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.accesslog import cost_usd
from modelway.errors import AllAttemptsFailed, GatewayError, GatewayTimeout, UpstreamError, UpstreamTimeout
from modelway.failover.policy import BROKEN_STREAM
from modelway.providers.redact import redact_answer
from modelway.proxy.dialect import OPENAI
from modelway.proxy.responses import send_bytes, send_error, sse_error_event
from modelway.proxy.rewrite import SSEModelRewriter, rewrite_json_model
from modelway.proxy.unexpected import internal_error, log_unexpected
from modelway.proxy.usage import StreamUsage, injects_stream_usage, usage_from_body, wants_stream_usage

if TYPE_CHECKING:
    from modelway.asgi import Send
    from modelway.proxy.admission import Ticket
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
    settings: ProxySettings,
    request: Incoming,
    model: str,
    answer: Answer,
    status: int | str,
    usage: tuple[int, int] | None,
) -> None:
    """The answer in the metrics, the recent decisions (the status page's) and the access log.
    `status` is the upstream's, or "stream_broken", or CLIENT_CLOSED."""
    deployment = answer.deployment
    provider = deployment.provider.name
    duration_s = time.monotonic() - answer.started_at
    settings.metrics.request(model, provider, status, duration_s, answer.ttft_s)
    settings.decisions.add(model, deployment.model_name, provider, status, answer.attempts)
    if settings.tracing is not None:
        settings.tracing.answered(model, deployment, status, answer.attempts, usage)
    if usage is not None:
        settings.metrics.usage(model, deployment, *usage)
    access = settings.access
    if access is not None:
        error: str | None
        if status == BROKEN:
            code, error = answer.upstream.status, BROKEN
        elif status == CLIENT_CLOSED:
            code, error = CLIENT_CLOSED, "client_closed"
        else:
            code = status if isinstance(status, int) else 500
            error = None if code < 400 else ("internal_error" if code == 500 and answer.upstream.status != 500
                                            else f"upstream_{code}")
        ttft = answer.ttft_s
        access.write({
            "method": "POST",
            "path": request.path,
            "status": code,
            "client": request.client.name if request.client is not None else None,
            "original_model": request.original_model,
            "model": model,
            "provider": provider,
            "upstream_model": deployment.upstream_model or model,
            "attempts": answer.attempts,
            "duration_ms": round(duration_s * 1000, 2),
            "ttft_ms": round(ttft * 1000, 2) if ttft is not None else None,
            "input_tokens": usage[0] if usage is not None else None,
            "output_tokens": usage[1] if usage is not None else None,
            "cost_usd": cost_usd(deployment, usage),
            "error": error,
            "dialect": request.dialect if answer.translation is None else answer.translation.name,
        })


BROKEN = "stream_broken"


async def send_answer(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    answer: Answer,
    status: int,
    tokens: tuple[int, int] | None,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    send: Send,
) -> None:
    """A whole answer, recorded and sent: through the model's passthrough service when it has one."""
    route = settings.models.get(model)
    passthrough_url = route.config.passthrough_url if route is not None else None
    if passthrough_url is not None and status < 300 and settings.passthrough is not None:
        await pass_through(settings, request, model, answer, tokens, passthrough_url, body, headers, send)
        return
    record(settings, request, model, answer, status, tokens)
    await send_bytes(send, status, body, headers)


async def pass_through(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    answer: Answer,
    usage: tuple[int, int] | None,
    url: str,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    send: Send,
) -> None:
    """The LLM's answer goes to the model's passthrough service; the client gets its answer."""
    assert settings.passthrough is not None
    try:
        status, content_type, data = await settings.passthrough.post(url, body, answer.upstream.content_type)
    except GatewayError as exc:
        record(settings, request, model, answer, exc.status, usage)
        await send_error(send, exc, request.dialect, [h for h in headers if h[0].lower() != b"content-type"])
        return
    record(settings, request, model, answer, status, usage)
    kept = [h for h in headers if h[0].lower() not in (b"content-type", b"content-encoding")]
    await send_bytes(send, status, data, [(b"content-type", content_type), *kept])


async def relay(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    extra_headers: Sequence[tuple[bytes, bytes]],
    answer: Answer,
    send: Send,
    ticket: Ticket | None = None,
) -> None:
    """Send `answer`, the answer to `request` as the public model `model`, with `extra_headers`.
    A limited key's `ticket` is settled with the tokens the answer used before its last byte
    is sent, so the key's next request finds them charged: the usage the answer reports,
    else, for a stream, its events (about a token each) besides the prompt's estimate."""
    upstream = answer.upstream
    status = upstream.status
    rewrite_to = request.original_model if settings.rewrite_response_model and status < 300 else None
    headers = route_headers(model, answer, extra_headers)
    if answer.body is not None:
        body = answer.body
        if status >= 400:  # passed on as the provider made it, but for its own credentials
            body, headers = redact_answer(body, headers, answer.deployment.provider.secrets)
        if rewrite_to and "json" in upstream.content_type:
            body = rewrite_json_model(body, rewrite_to)
        answer.finish(ok=status < 400)
        tokens = usage_from_body(body) if status < 300 else None
        if ticket is not None:
            ticket.settle(tokens, status < 400)
        await send_answer(settings, request, model, answer, status, tokens, body, headers, send)
        return
    assert answer.rest is not None
    await send({"type": "http.response.start", "status": status, "headers": headers})
    rewriter = SSEModelRewriter(rewrite_to) if rewrite_to else None
    if wants_stream_usage(request.payload):
        usage: StreamUsage | None = StreamUsage()
    elif injects_stream_usage(request.path, True, request.payload, answer.deployment.provider.kind):
        usage = StreamUsage(strip=True)  # asked for by the gateway: the client does not get it
    elif request.dialect != OPENAI or ticket is not None:
        usage = StreamUsage()  # Anthropic's and Responses' streams carry usage of their own; a limited key's is read
    else:
        usage = None
    if ticket is not None and usage is not None:
        usage.count = True  # for a stream that reports no usage: a token per event
    chunk = answer.first_chunk
    rest = answer.rest
    relayed = False
    try:
        while True:
            if usage is not None:
                chunk = usage.feed(chunk)
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
        if ticket is not None and usage is not None:
            ticket.settle(usage.found or (0, usage.events), True)
        await send({"type": "http.response.body", "body": b"", "more_body": False})  # the end before the books
    except UpstreamError as exc:
        # Bytes already reached the client, so no retry: end with an error event, no [DONE].
        answer.finish(ok=False, error=exc.kind)
        settings.failover.error(answer.deployment, BROKEN_STREAM)
        cls = GatewayTimeout if isinstance(exc, UpstreamTimeout) else AllAttemptsFailed
        error = cls(f"upstream stream from {answer.deployment.name} broke off: {exc.message}",
                    code="stream_broken")
        await send({"type": "http.response.body", "body": sse_error_event(error, request.dialect), "more_body": False})
        record(settings, request, model, answer, BROKEN, None)
        return
    except Exception as exc:  # a bug: the stream ends as a broken one does, counted as a 500
        log_unexpected(exc)
        answer.finish(ok=False, error="internal_error")
        await send({"type": "http.response.body", "body": sse_error_event(internal_error(exc), request.dialect),
                    "more_body": False})
        record(settings, request, model, answer, 500, None)
        return
    finally:
        if not answer.finished:
            # Not relayed to the end only when the client left: no verdict on the deployment.
            answer.finish(ok=True, observe=relayed)
            if not relayed:
                record(settings, request, model, answer, CLIENT_CLOSED, None)
    record(settings, request, model, answer, status, usage.found if usage is not None else None)
