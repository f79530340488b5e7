"""State changes of deployments, one log line each: a cooldown entered (and why), and its
end — by a probe's success, or by its time running out. Cooldowns are rare, so a timer per
cooldown costs nothing on the request path."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelway.deployment import Deployment

log = logging.getLogger("modelway.health")


def cooled(deployment: Deployment, until: float, why: str) -> None:
    """`deployment` has just entered (or extended) a cooldown lasting until `until` (monotonic)."""
    seconds = max(0.0, until - time.monotonic())
    log.warning("deployment %s (model %s) cooling down for %.1f s: %s", deployment.name, deployment.model_name,
                seconds, why)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.call_later(seconds + 0.01, ended_in_time, deployment, until)


def ended_in_time(deployment: Deployment, until: float) -> None:
    record = deployment.health
    if record.cooled_until == until:  # not extended meanwhile, nor ended by a probe
        log.info("deployment %s (model %s) cooldown ended", deployment.name, deployment.model_name)


def recovered(deployment: Deployment) -> None:
    log.info("deployment %s (model %s) cooldown ended: a probe succeeded", deployment.name, deployment.model_name)
