"""Loading `routing.routers` into a RouterChain: built once per Runtime, so a reload builds
new router instances and requests in flight finish with the old ones.

Loading errors name their YAML path: `routing.routers[i].use` when the class cannot be
imported or is not a Router, `routing.routers[i].config` when its constructor refuses the
config. `modelway check` reports them through `check_router` (config/crossref.py).
"""

from __future__ import annotations

import copy
import inspect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelway.errors import ConfigError
from modelway.importing import ImportFromStringError, import_from_string
from modelway.plugins import Executor, Router
from modelway.routers.settings import explain

if TYPE_CHECKING:
    from modelway.config.schema import RouterSpec


class RouterLoadError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key  # "use" or "config": where in the router's entry the problem is
        self.message = message


def load_router(use: str, config: Mapping[str, Any] | None) -> Router:
    """Import `use` ("package.module:Class") and build it with a copy of `config`."""
    try:
        cls = import_from_string(use)
    except ImportFromStringError as exc:
        raise RouterLoadError("use", str(exc)) from None
    except Exception as exc:  # the plugin's module itself failed while importing
        raise RouterLoadError("use", f"importing {use!r} raised {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise RouterLoadError("use", f"{use!r} is not a subclass of modelway.plugins.Router")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise RouterLoadError("use", f"{use!r} does not implement {missing}")
    try:
        return cls(copy.deepcopy(dict(config or {})))
    except Exception as exc:
        raise RouterLoadError("config", f"{cls.__name__} refused its config: {explain(exc)}") from None


def check_router(index: int, use: str, config: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Config errors of one router entry, as (yaml path, message) pairs."""
    try:
        load_router(use, config)
    except RouterLoadError as exc:
        return [(f"routing.routers[{index}].{exc.key}", exc.message)]
    return []


@dataclass(frozen=True, slots=True)
class LoadedRouter:
    id: str
    priority: int
    timeout_s: float
    router: Router

    @property
    def executor(self) -> Executor | None:
        return self.router if isinstance(self.router, Executor) else None


class RouterChain:
    """The routers in the order they run: descending priority, ties by ascending id.

    `errors` counts, per router id, the requests on which a router failed (raised, timed
    out, decided something unknown or unavailable, or its executor failed): the source of
    `modelway_router_errors_total{router}`.
    """

    def __init__(self, routers: Sequence[LoadedRouter] = ()) -> None:
        self.routers = sorted(routers, key=lambda r: (-r.priority, r.id))
        self.by_id = {r.id: r for r in self.routers}
        self.errors: Counter[str] = Counter()

    @classmethod
    def build(cls, specs: Sequence[RouterSpec]) -> RouterChain:
        loaded: list[LoadedRouter] = []
        errors: list[tuple[str, str]] = []
        for i, spec in enumerate(specs):
            try:
                router = load_router(spec.use, spec.config)
            except RouterLoadError as exc:
                errors.append((f"routing.routers[{i}].{exc.key}", exc.message))
                continue
            router.id = spec.id
            loaded.append(LoadedRouter(spec.id, spec.priority, spec.timeout_ms / 1000, router))
        if errors:
            raise ConfigError(errors)
        return cls(loaded)

    def __bool__(self) -> bool:
        return bool(self.routers)

    async def start(self) -> None:
        for entry in self.routers:
            await entry.router.start()

    async def close(self) -> None:
        for entry in self.routers:
            await entry.router.close()
