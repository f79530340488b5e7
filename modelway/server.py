"""Running the gateway under uvicorn (uvloop), with modelway's own HTTP/1.1 protocol
(`http1/server.py`) in place of uvicorn's. MODELWAY_HTTP=uvicorn puts uvicorn's httptools
protocol back: a fallback, and the baseline the benchmark compares against."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import uvicorn

from modelway.config import load_config
from modelway.config.pending import not_yet_enforced
from modelway.config.schema import ServerConfig
from modelway.http1.limits import Limits
from modelway.http1.server import ServerProtocol

log = logging.getLogger("modelway")


def run(config_path: str | None, host: str | None, port: int | None, workers: int) -> None:
    config = load_config(config_path)  # fail here, once, before any worker starts
    for warning in not_yet_enforced(config):
        log.warning("config: %s", warning)
    if config_path:
        os.environ["MODELWAY_CONFIG"] = os.path.abspath(config_path)
    else:
        os.environ.pop("MODELWAY_CONFIG", None)
        log.info("no --config given: serving the embedded demo config")
    uvicorn.run(
        "modelway.app:app_from_env",
        factory=True,
        host=host or config.server.host,
        port=port or config.server.port,
        workers=workers,
        loop="uvloop",
        http=http_protocol(config.server),
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* are forwarded upstream as they are, not trusted here
        log_level="info",
        timeout_graceful_shutdown=5,
    )


def http_protocol(server: ServerConfig) -> Any:
    """The protocol class uvicorn builds for each connection; modelway's gets the `server:`
    limits bound to it (a partial: uvicorn's workers receive it pickled, with the config)."""
    choice = os.environ.get("MODELWAY_HTTP", "modelway")
    if choice == "uvicorn":
        return "httptools"
    if choice != "modelway":
        raise SystemExit(f"MODELWAY_HTTP must be 'modelway' or 'uvicorn', not {choice!r}")
    limits = Limits(
        max_header_bytes=server.max_header_bytes,
        max_headers=server.max_headers,
        body_timeout_s=server.body_timeout_s,
    )
    return functools.partial(ServerProtocol, limits=limits)
