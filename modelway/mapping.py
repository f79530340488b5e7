"""Model-name patterns and the model mapping (Higress model-mapper rules).

A pattern is an exact name, a prefix ending in `*` ("gpt-4-*"), or `*` alone.
Lookup order: exact, then the longest matching prefix, then `*`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from modelway.config.schema import ModelMappingConfig

T = TypeVar("T")


class PatternTable(Generic[T]):
    __slots__ = ("_exact", "_prefixes", "_star")

    def __init__(self, rules: Mapping[str, T]) -> None:
        self._exact: dict[str, T] = {}
        prefixes: list[tuple[str, T]] = []
        self._star: T | None = None
        for pattern, value in rules.items():
            if pattern == "*":
                self._star = value
            elif pattern.endswith("*"):
                prefixes.append((pattern[:-1], value))
            else:
                self._exact[pattern] = value
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self._prefixes = tuple(prefixes)

    def lookup(self, name: str) -> T | None:
        found = self._exact.get(name)
        if found is not None:
            return found
        for prefix, value in self._prefixes:
            if name.startswith(prefix):
                return value
        return self._star


def pattern_set(patterns: Iterable[str]) -> PatternTable[bool]:
    return PatternTable(dict.fromkeys(patterns, True))


class ModelMapper:
    """Rewrites the requested model name before routing, on the configured path suffixes."""

    __slots__ = ("_rules", "_suffixes", "key_path")

    def __init__(self, config: ModelMappingConfig) -> None:
        self.key_path: tuple[str, ...] = tuple(config.key.split("."))
        self._rules: PatternTable[str] = PatternTable(config.rules)
        self._suffixes = tuple(p.rstrip("/") for p in config.paths)

    def applies_to(self, path: str) -> bool:
        return bool(self._suffixes) and path.rstrip("/").endswith(self._suffixes)

    def map(self, name: str) -> str:
        target = self._rules.lookup(name)
        return target if target else name
