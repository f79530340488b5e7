"""A router that logs what it should not: the value of the request's x-leak header. It stands
for any code path that might one day log a secret, to prove the last line of defence."""

from __future__ import annotations

import logging
from typing import Any

from modelway.plugins import RouteDecision, Router, RouteRequest

log = logging.getLogger("tests.leaky")


class LeakyRouter(Router):
    def __init__(self, config: dict[str, Any]) -> None:
        pass

    async def route(self, req: RouteRequest) -> RouteDecision | None:
        leak = req.headers.get("x-leak")
        if leak:
            log.warning("leaking %s on purpose", leak)
            try:
                raise ValueError(f"an exception that carries {leak}")
            except ValueError:
                log.exception("and a traceback")
        return None
