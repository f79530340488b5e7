"""Validating a shipped router's `config` with pydantic, so its errors read like the rest
of the config's: `rules[0].when.headr: unknown key`. The chain prefixes the router's own
YAML path (`routing.routers[i].config`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelway.config.loader import describe, yaml_path

M = TypeVar("M", bound=BaseModel)


def parse_settings(model: type[M], config: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        problems = [f"{yaml_path(e['loc']) or '(config)'}: {describe(e)}" for e in exc.errors()]
        raise ValueError("; ".join(problems)) from None
