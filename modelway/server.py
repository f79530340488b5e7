"""Running the gateway under uvicorn (uvloop), with modelway's own HTTP/1.1 protocol
(`http1/server.py`) in place of uvicorn's. MODELWAY_HTTP=uvicorn puts uvicorn's httptools
protocol back: a fallback, and the baseline the benchmark compares against."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import tempfile
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from modelway.config import load_config
from modelway.config.pending import not_yet_enforced
from modelway.config.schema import ServerConfig
from modelway.config.secrets import config_secrets
from modelway.http1.limits import Limits
from modelway.http1.server import ServerProtocol
from modelway.logs import redact_secrets
from modelway.workermetrics import DIR_ENV

log = logging.getLogger("modelway")

STARTUP_FAILURE = 3  # uvicorn's exit status for a server that could not start


def run(config_path: str | None, host: str | None, port: int | None, workers: int) -> None:
    config = load_config(config_path)  # fail here, once, before any worker starts
    redact_secrets(config_secrets(config))
    for warning in not_yet_enforced(config):
        log.warning("config: %s", warning)
    if workers > 1 and config.state.backend == "memory":
        log.warning("--workers %d with state.backend memory: each worker keeps its own cooldowns, in-flight "
                    "counts and rpm/tpm buckets (a key may send its limit to each worker); state.backend: redis "
                    "shares them (docs/scaling.md)", workers)
    if config_path:
        os.environ["MODELWAY_CONFIG"] = os.path.abspath(config_path)
    else:
        os.environ.pop("MODELWAY_CONFIG", None)
        log.info("no --config given: serving the embedded demo config")
    settings = uvicorn.Config(
        "modelway.app:app_from_env",
        factory=True,
        host=host or config.server.host,
        port=port or config.server.port,
        workers=workers,
        loop="uvloop",
        http=http_protocol(config.server),
        lifespan="on",
        access_log=False,
        log_config=None,  # uvicorn's loggers propagate to modelway's handlers: one format, secrets redacted
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* are forwarded upstream as they are, not trusted here
        log_level=os.environ.get("MODELWAY_LOG_LEVEL", "info"),
        timeout_graceful_shutdown=config.server.drain_s,
    )
    exit_quietly_after_drain()
    if workers > 1:
        with tempfile.TemporaryDirectory(prefix="modelway-metrics-") as shared:
            os.environ[DIR_ENV] = shared  # each worker's counters, for a scrape to sum (workermetrics.py)
            DrainingSupervisor(settings, sockets=[settings.bind_socket()]).run()
        return
    os.environ.pop(DIR_ENV, None)
    server = uvicorn.Server(settings)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run does


class DrainingSupervisor(Multiprocess):
    """uvicorn's supervisor of `--workers N`, which on SIGTERM/SIGINT has each worker drain
    (as one process does) but keeps its own copy of the listening socket open meanwhile, so
    new connections would queue unanswered until the end; closing it first refuses them."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def exit_quietly_after_drain() -> None:
    """uvicorn drains on SIGTERM/SIGINT (stops accepting, lets requests in flight finish for
    `server.drain_s`, cancels the rest), then restores the handlers it found and raises the
    signal again. Found handlers that ignore it make that last step a return: exit 0."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, drained)


def drained(sig: int, frame: FrameType | None) -> None:
    log.info("drained after %s: exiting", signal.Signals(sig).name)


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
