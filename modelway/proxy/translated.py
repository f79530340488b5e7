"""The relay of an answer that came through a translation (modelway/translation/): what
`relay.relay` does for the others, with the answer, the stream and the errors put into the
client's dialect on their way.

- A 2xx JSON answer is translated whole; one that cannot be read is a 502 in the client's
  dialect. An error answer keeps its status and message, in the client's error shape.
- A stream is fed chunk by chunk to the translation's StreamTranslator, and whatever frames
  each chunk completes are sent at once: nothing waits for more. While the client has heard
  nothing for `server.stream_ping_s`, it gets the dialect's keep-alive frame (`Pinger`).
- An upstream that breaks or times out after the first byte, or sends an error event,
  ends the stream with the dialect's error frame (`event: error`, `response.failed`, an
  OpenAI error event), counted as a broken stream of that deployment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from modelway.errors import AllAttemptsFailed, UpstreamError, UpstreamTimeout
from modelway.failover.policy import BROKEN_STREAM
from modelway.providers.redact import redact_answer
from modelway.proxy.relay import BROKEN, CLIENT_CLOSED, record, route_headers, send_answer
from modelway.proxy.responses import JSON_TYPE, error_body
from modelway.proxy.unexpected import internal_error, log_unexpected
from modelway.proxy.usage import usage_from_body

if TYPE_CHECKING:
    from modelway.asgi import Send
    from modelway.proxy.admission import Ticket
    from modelway.proxy.exchange import Answer
    from modelway.proxy.incoming import Incoming
    from modelway.proxy.settings import ProxySettings
    from modelway.translation import Translation

log = logging.getLogger("modelway")
CONTENT_TYPE = b"content-type"


async def relay_translated(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    extra_headers: Sequence[tuple[bytes, bytes]],
    answer: Answer,
    send: Send,
    ticket: Ticket | None = None,
) -> None:
    """Send `answer`, which came through `answer.translation`, in the client's dialect; a
    limited key's `ticket` is settled with the answer's usage before its last byte."""
    translation = answer.translation
    assert translation is not None
    if answer.body is not None:
        await send_whole(settings, request, model, extra_headers, answer, translation, send, ticket)
    else:
        await send_stream(settings, request, model, extra_headers, answer, translation, send, ticket)


async def send_whole(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    extra_headers: Sequence[tuple[bytes, bytes]],
    answer: Answer,
    translation: Translation,
    send: Send,
    ticket: Ticket | None = None,
) -> None:
    status = answer.upstream.status
    raw = answer.body
    assert raw is not None
    body = raw
    if 200 <= status < 300:
        try:
            body = translation.answer(raw)
        except Exception as exc:  # an upstream's 200 that is no answer of its dialect
            log.warning("%s: the answer of %s could not be translated: %s: %s", translation.name,
                        answer.deployment.name, type(exc).__name__, str(exc)[:200])
            error = AllAttemptsFailed(f"the answer of {answer.deployment.name} could not be translated"
                                      f" ({translation.name})", code="untranslatable_answer")
            status, body = error.status, orjson.dumps(error_body(error, request.dialect))
    elif status >= 400:
        body = translation.error(status, raw)
    answer.finish(ok=status < 400)
    tokens = usage_from_body(raw) if status < 300 else None
    if ticket is not None:
        ticket.settle(tokens, status < 400)
    headers = [JSON_TYPE, *(h for h in route_headers(model, answer, extra_headers) if h[0].lower() != CONTENT_TYPE)]
    if status >= 400:  # passed on in the client's shape, but without the provider's own credentials
        body, headers = redact_answer(body, headers, answer.deployment.provider.secrets)
    await send_answer(settings, request, model, answer, status, tokens, body, headers, send)


async def send_stream(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    extra_headers: Sequence[tuple[bytes, bytes]],
    answer: Answer,
    translation: Translation,
    send: Send,
    ticket: Ticket | None = None,
) -> None:
    status = answer.upstream.status
    rest = answer.rest
    assert rest is not None
    translator = translation.stream()
    await send({"type": "http.response.start", "status": status,
                "headers": route_headers(model, answer, extra_headers)})
    pinger = Pinger(settings.stream_ping_s, translator.ping, send) if settings.stream_ping_s else None
    chunk = answer.first_chunk
    relayed = False
    try:
        while True:
            out = translator.feed(chunk)
            if out:
                if pinger is not None:
                    pinger.heard()
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if translator.failure is not None:
                break  # the upstream sent an error event: its error frame is out, nothing follows
            try:
                chunk = await anext(rest)
            except StopAsyncIteration:
                break
        tail = translator.finish() if translator.failure is None else b""
        if translator.failure is not None:  # an error event, or a stream that ended unfinished
            broken(settings, request, model, answer, "upstream_error_event", translator.usage)
        if pinger is not None:
            await pinger.close()
        relayed = True
        if ticket is not None:
            ticket.settle(translator.usage, True)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    except UpstreamError as exc:
        # Bytes already reached the client, so no retry: the dialect's error frame ends it.
        if pinger is not None:
            await pinger.close()
        message = f"upstream stream from {answer.deployment.name} broke off: {exc.message}"
        tail = translator.fail(message, 504 if isinstance(exc, UpstreamTimeout) else 502)
        broken(settings, request, model, answer, exc.kind, None)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return
    except Exception as exc:  # a bug: the stream ends as a broken one does, counted as a 500
        log_unexpected(exc)
        if pinger is not None:
            await pinger.close()
        answer.finish(ok=False, error="internal_error")
        tail = translator.fail(internal_error(exc).message, 500)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        record(settings, request, model, answer, 500, None)
        return
    finally:
        if pinger is not None:
            pinger.stop()
        if not answer.finished:
            # Not relayed to the end only when the client left: no verdict on the deployment.
            answer.finish(ok=True, observe=relayed)
            if not relayed:
                record(settings, request, model, answer, CLIENT_CLOSED, None)
    if translator.failure is None:
        record(settings, request, model, answer, status, translator.usage)


def broken(
    settings: ProxySettings, request: Incoming, model: str, answer: Answer, error: str,
    usage: tuple[int, int] | None,
) -> None:
    """A stream that ended in an error frame after bytes reached the client: a failure of its deployment."""
    answer.finish(ok=False, error=error)
    settings.failover.error(answer.deployment, BROKEN_STREAM)
    record(settings, request, model, answer, BROKEN, usage)


class Pinger:
    """Keep-alive frames for a client that has heard nothing for `interval` seconds.

    A timer checks when the client last got a frame; once `interval` has passed, it sends
    `ping()` in a task of its own and waits another interval. No task and no timer per
    chunk: the relay only notes the time it sent something (`heard`). `close` waits for a
    ping being sent, so that the stream's last frame always comes last."""

    __slots__ = ("interval", "last", "loop", "ping", "send", "sending", "timer")

    def __init__(self, interval: float, ping: Callable[[], bytes], send: Send) -> None:
        self.interval = interval
        self.ping = ping
        self.send = send
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.sending: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = self.loop.call_at(self.last + interval, self.tick)

    def heard(self) -> None:
        self.last = self.loop.time()

    def tick(self) -> None:
        now = self.loop.time()
        due = self.last + self.interval
        if now >= due:
            if self.sending is None or self.sending.done():
                self.sending = self.loop.create_task(self.send_ping())
            self.last = now
            due = now + self.interval
        self.timer = self.loop.call_at(due, self.tick)

    async def send_ping(self) -> None:
        frame = self.ping()
        if frame:
            await self.send({"type": "http.response.body", "body": frame, "more_body": True})

    async def close(self) -> None:
        """No more pings; one being sent is sent first."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        sending = self.sending
        if sending is not None and not sending.done():
            await sending

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sending is not None:
            self.sending.cancel()
