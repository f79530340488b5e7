"""Helpers for tests of several gateway instances sharing a state backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from support.gateway import Gateway
from support.http import request

ADMIN_KEY = "admin-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
T = TypeVar("T")


def admin_state(gateway: Gateway) -> dict[str, Any]:
    reply = request(gateway.url, "GET", "/admin/state", headers=ADMIN)
    assert reply.status == 200, reply.body
    return dict(reply.json())


def deployment(state: dict[str, Any], provider: str, model: str | None = None) -> dict[str, Any]:
    found = [d for d in state["deployments"] if d["provider"] == provider and model in (None, d["model"])]
    assert len(found) == 1, state["deployments"]
    return dict(found[0])


def wait_for(check: Callable[[], T | None], timeout_s: float, step_s: float = 0.02, what: str = "") -> T:
    """The first truthy value of `check()`, polled until `timeout_s`; the test fails after."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(step_s)


def sharing(*gateways: Gateway, timeout_s: float = 10) -> None:
    """Wait until every instance sees all the others through Redis."""
    for gateway in gateways:
        wait_for(
            lambda gw=gateway: admin_state(gw)["state_backend"].get("other_instances") == len(gateways) - 1,  # type: ignore[misc]
            timeout_s,
            what="the instances see each other",
        )


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")
