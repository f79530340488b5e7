"""A failure nobody planned for (a bug, in modelway or in a plugin it loaded): logged with its
traceback, counted as a 500 in `modelway_requests_total`, and answered with an error JSON
that names only the exception's class, since its message may carry anything."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from modelway.errors import InternalError
from modelway.proxy.responses import Headers, send_error

if TYPE_CHECKING:
    from modelway.asgi import Send
    from modelway.proxy.dialect import Dialect
    from modelway.proxy.settings import ProxySettings

log = logging.getLogger("modelway")


def internal_error(exc: BaseException) -> InternalError:
    return InternalError(f"internal error ({type(exc).__name__}): the gateway's log has the details")


def log_unexpected(exc: BaseException) -> None:
    log.error("unexpected error while serving a request", exc_info=exc)


async def answer_unexpected(
    settings: ProxySettings, model: str, exc: Exception, send: Send, dialect: Dialect, headers: Headers = ()
) -> None:
    log_unexpected(exc)
    settings.metrics.rejected(settings.metric_model(model), 500)
    await send_error(send, internal_error(exc), dialect, headers)
