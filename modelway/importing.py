"""Resolve "module:attr" strings lazily, as uvicorn does for its swappable parts."""

from __future__ import annotations

import importlib
from typing import Any


class ImportFromStringError(Exception):
    pass


def import_from_string(spec: str) -> Any:
    module_name, _, attrs = spec.partition(":")
    if not module_name or not attrs:
        raise ImportFromStringError(f"{spec!r} must look like 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportFromStringError(f"could not import module {module_name!r}: {exc}") from exc
    try:
        for attr in attrs.split("."):
            obj = getattr(obj, attr)
    except AttributeError:
        raise ImportFromStringError(f"module {module_name!r} has no attribute {attrs!r}") from None
    return obj


def resolve(registry: dict[str, str], name: str, what: str) -> Any:
    """Look `name` up in a registry of built-ins; a "module:attr" string is a user's own class."""
    spec = registry.get(name)
    if spec is None:
        if ":" not in name:
            known = ", ".join(sorted(registry))
            raise ImportFromStringError(f"unknown {what} {name!r} (known: {known})")
        spec = name
    return import_from_string(spec)
