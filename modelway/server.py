"""Running the gateway under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import logging
import os

import uvicorn

from modelway.config import load_config
from modelway.config.pending import not_yet_enforced

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
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* are forwarded upstream as they are, not trusted here
        log_level="info",
        timeout_graceful_shutdown=5,
    )
