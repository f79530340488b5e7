"""Read a config file: YAML → `${env:...}` substitution → schema → cross-references.

Every stage reports all its errors at once as (yaml path, message) pairs, so
`modelway check` can print them together.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelway.config.crossref import check_references
from modelway.config.schema import Config
from modelway.config.yamlpath import describe, join_path, yaml_path
from modelway.errors import ConfigError

ENV_PATTERN = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEMO_CONFIG = "demo.yaml"


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file; `None` loads the embedded demo config."""
    if path is None:
        text = resources.files("modelway.config").joinpath(DEMO_CONFIG).read_text()
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError([("", f"cannot read config file {os.fspath(path)!r}: {exc.strerror}")]) from None
    return parse_config(text, env)


def parse_config(text: str, env: Mapping[str, str] | None = None) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([("", f"invalid YAML{where}: {problem}")]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([("", f"the config must be a mapping at the top level, not {type(raw).__name__}")])

    errors: list[tuple[str, str]] = []
    raw = substitute_env(raw, os.environ if env is None else env, "", errors)
    if errors:
        raise ConfigError(errors)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        errors = [(yaml_path(e["loc"]), describe(e)) for e in exc.errors()]
    else:
        errors = []
    errors += [e for e in check_references(raw) if e not in errors]
    if errors:
        raise ConfigError(errors)
    return config


def substitute_env(node: Any, env: Mapping[str, str], path: str, errors: list[tuple[str, str]]) -> Any:
    if isinstance(node, str):
        if "${" not in node:
            return node

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value is None:
                if default is not None:
                    return default
                errors.append((path, f"environment variable {name} is not set (use ${{env:{name}:-default}})"))
                return ""
            return value

        return ENV_PATTERN.sub(replace, node)
    if isinstance(node, dict):
        return {k: substitute_env(v, env, join_path(path, k), errors) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, env, f"{path}[{i}]", errors) for i, v in enumerate(node)]
    return node
