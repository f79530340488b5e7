"""A failure nobody planned for (a bug, in modelway or in a plugin it loaded): logged with its
traceback, counted as a 500 in `modelway_requests_total`, and answered with an error JSON
that names only the exception's class, since its message may carry anything."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from modelway.errors import InternalError
from modelway.proxy.responses import Headers, Send, send_error

if TYPE_CHECKING:
    from modelway.runtime import Runtime

log = logging.getLogger("modelway")


def internal_error(exc: BaseException) -> InternalError:
    return InternalError(f"internal error ({type(exc).__name__}): the gateway's log has the details")


def log_unexpected(exc: BaseException) -> None:
    log.error("unexpected error while serving a request", exc_info=exc)


async def answer_unexpected(
    runtime: Runtime, model: str, exc: Exception, send: Send, anthropic: bool, headers: Headers = ()
) -> None:
    log_unexpected(exc)
    runtime.metrics.rejected(runtime.metric_model(model), 500)
    await send_error(send, internal_error(exc), anthropic, headers)
