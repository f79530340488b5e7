"""Logging: level and format (text or JSON lines) from a flag or the environment, the access
log on stdout, everything else on stderr, and every configured secret redacted from all of
it as a last line of defence.

The code never logs a secret on purpose; the redaction is there for what it did not mean
to log (an upstream's error text echoing a key, a URL with a password in a traceback).
Each process — the main one and every worker — sets this up for itself, from the
environment that `modelway serve` exports (MODELWAY_LOG_LEVEL, MODELWAY_LOG_FORMAT).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

from modelway.config.secrets import redact_text, sorted_secrets

ACCESS_LOGGER = "modelway.access"
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


class RedactSecrets(logging.Filter):
    """Replaces every secret in a record's message (and its traceback) before any handler
    formats it. Records without a secret pass with one substring test per secret."""

    def __init__(self, secrets: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.secret_bytes: list[bytes] = []  # the same, for writers of bytes (the access log)
        self.set(secrets)

    def set(self, secrets: frozenset[str]) -> None:
        self.secrets = sorted_secrets(secrets)
        self.secret_bytes = [s.encode() for s in self.secrets]
        # as they appear in JSON: a secret with a quote or backslash is escaped there
        self.secret_bytes += [e for s in self.secrets if (e := orjson.dumps(s)[1:-1]) not in self.secret_bytes]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = redact_text(message, self.secrets)
        if redacted is not message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line).decode()


class AccessFormatter(logging.Formatter):
    """Access lines are JSON already: written as they are, in either format."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


REDACTION = RedactSecrets()


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger (stderr) and the access logger (stdout) of this process."""
    level = (level or os.environ.get("MODELWAY_LOG_LEVEL") or "info").lower()
    fmt = (fmt or os.environ.get("MODELWAY_LOG_FORMAT") or "text").lower()
    if level not in LEVELS:
        raise SystemExit(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise SystemExit(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    os.environ["MODELWAY_LOG_LEVEL"], os.environ["MODELWAY_LOG_FORMAT"] = level, fmt  # for the workers

    errors = logging.StreamHandler(sys.stderr)
    errors.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    errors.addFilter(REDACTION)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(errors)
    root.setLevel(level.upper())

    access_out = logging.StreamHandler(sys.stdout)
    access_out.setFormatter(AccessFormatter())
    access_out.addFilter(REDACTION)
    access = logging.getLogger(ACCESS_LOGGER)
    for handler in list(access.handlers):
        access.removeHandler(handler)
    access.addHandler(access_out)
    access.setLevel(logging.INFO)
    access.propagate = False


def redact_secrets(secrets: frozenset[str]) -> None:
    """Set the secrets every handler of this process redacts (after each config load)."""
    REDACTION.set(secrets)


def add_secrets(secrets: frozenset[str]) -> None:
    """After a reload: the new config's secrets are redacted too, and the old ones still are
    (requests in flight on the old config may log them)."""
    REDACTION.set(frozenset(REDACTION.secrets) | secrets)
