"""Config errors from router constructors, made to read like the rest of the config's.

A router that validates its `config` with pydantic (the shipped ones do, through
`parse_settings`) needs nothing more: the chain reports a ValidationError as
`rules[0].when.headr: unknown key`, after the router's own YAML path
(`routing.routers[i].config`). Any other exception is reported by its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelway.config.yamlpath import describe, yaml_path

M = TypeVar("M", bound=BaseModel)


def parse_settings(model: type[M], config: Mapping[str, Any]) -> M:
    return model.model_validate(dict(config))


def explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{yaml_path(e['loc']) or '(config)'}: {describe(e)}" for e in exc.errors())
    return str(exc) or type(exc).__name__
