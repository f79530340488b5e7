"""Checks that need the whole config: names that refer to each other, kinds and strategies
that must exist, router plugins that must import and build, and fallback cycles. Errors
carry the YAML path of the offending value.

They read the raw document (after env substitution), defensively, so they run even when
the schema found errors elsewhere and `modelway check` can report everything at once.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from modelway.importing import ImportFromStringError, resolve
from modelway.providers import DEFAULT_BASE_URLS, PROVIDER_KINDS
from modelway.routers.chain import check_router
from modelway.strategies import STRATEGIES

Errors = list[tuple[str, str]]
ROUTER_USE = re.compile(r"[\w.]+:[\w.]+")  # as RouterSpec.use; the schema reports other shapes


class Raw:
    """Read-only, forgiving access to the raw YAML: wrong shapes read as absent."""

    def __init__(self, data: Any) -> None:
        self.data = data if isinstance(data, dict) else {}

    def __getattr__(self, key: str) -> Any:
        value = self.data.get(key)
        if isinstance(value, dict):
            return Raw(value)
        if isinstance(value, list):
            return [Raw(v) if isinstance(v, dict) else v for v in value]
        return value

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        return value if isinstance(value, str) else None

    def seq(self, key: str) -> list[Any]:
        value = getattr(self, key)
        return value if isinstance(value, list) else []


def check_references(document: dict[str, Any]) -> Errors:
    config = Raw(document)
    errors: Errors = []
    _check_providers(config, errors)
    _check_models(config, errors)
    _check_routing(config, errors)
    auth = config.auth if isinstance(config.auth, Raw) else Raw({})
    keys = [k for k in auth.seq("keys") if isinstance(k, Raw)]
    dupes = _duplicates([k.text("name") for k in keys])
    for i, key in enumerate(keys):
        if key.text("name") in dupes:
            errors.append((f"auth.keys[{i}].name", f"duplicate client key name {key.text('name')!r}"))
    return errors


def _duplicates(names: list[str | None]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1 and name is not None}


def _items(config: Raw, key: str) -> list[tuple[int, Raw]]:
    return [(i, item) for i, item in enumerate(config.seq(key)) if isinstance(item, Raw)]


def _check_providers(config: Raw, errors: Errors) -> None:
    providers = _items(config, "providers")
    dupes = _duplicates([p.text("name") for _, p in providers])
    for i, provider in providers:
        at = f"providers[{i}]"
        name, kind = provider.text("name"), provider.text("kind")
        if name in dupes:
            errors.append((f"{at}.name", f"duplicate provider name {name!r}"))
        if kind is None:
            continue  # the schema reports a missing or mistyped kind
        if kind not in PROVIDER_KINDS and ":" not in kind:
            known = " | ".join(PROVIDER_KINDS)
            errors.append((f"{at}.kind", f"unknown provider kind {kind!r} (known: {known})"))
            continue
        if ":" in kind:
            try:
                resolve(PROVIDER_KINDS, kind, "provider kind")
            except ImportFromStringError as exc:
                errors.append((f"{at}.kind", str(exc)))
        is_simulated = kind == "simulated"
        if (
            provider.base_url is None
            and provider.endpoint is None
            and not is_simulated
            and kind not in DEFAULT_BASE_URLS
        ):
            errors.append((f"{at}.base_url", f"required for kind {kind!r} (or set endpoint)"))
        if provider.simulate is not None and not is_simulated:
            errors.append((f"{at}.simulate", "only allowed for kind 'simulated'"))


def _check_models(config: Raw, errors: Errors) -> None:
    providers = [name for _, p in _items(config, "providers") if (name := p.text("name")) is not None]
    known_providers = ", ".join(providers) or "none configured"
    models = _items(config, "models")
    names = {name for _, m in models if (name := m.text("name")) is not None}
    dupes = _duplicates([m.text("name") for _, m in models])
    for i, model in models:
        at = f"models[{i}]"
        name = model.text("name")
        if name in dupes:
            errors.append((f"{at}.name", f"duplicate model name {name!r}"))
        strategy = model.text("strategy") or "weighted_round_robin"
        try:
            resolve(STRATEGIES, strategy, "strategy")
        except ImportFromStringError as exc:
            errors.append((f"{at}.strategy", str(exc)))
        if strategy == "consistent_hash" and model.hash_on is None:
            errors.append((f"{at}.hash_on", "required when strategy is consistent_hash"))
        for j, deployment in _items(model, "deployments"):
            provider = deployment.text("provider")
            if provider is not None and provider not in providers:
                errors.append(
                    (
                        f"{at}.deployments[{j}].provider",
                        f"unknown provider {provider!r} (known: {known_providers})",
                    )
                )
        for j, fallback in enumerate(model.seq("fallbacks")):
            if not isinstance(fallback, str):
                continue
            if fallback == name:
                errors.append((f"{at}.fallbacks[{j}]", f"model {name!r} cannot fall back to itself"))
            elif fallback not in names:
                errors.append((f"{at}.fallbacks[{j}]", f"unknown model {fallback!r}"))
    cycle = _fallback_cycle(models)
    if cycle:
        index = next(i for i, m in models if m.text("name") == cycle[0])
        errors.append((f"models[{index}].fallbacks", f"fallback cycle: {' -> '.join(cycle)}"))


def _fallback_cycle(models: list[tuple[int, Raw]]) -> list[str] | None:
    edges = {
        name: [f for f in m.seq("fallbacks") if isinstance(f, str) and f != name]
        for _, m in models
        if (name := m.text("name")) is not None
    }
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> list[str] | None:
        if name in stack:
            return [*stack[stack.index(name) :], name]
        if name in done or name not in edges:
            return None
        stack.append(name)
        for nxt in edges[name]:
            found = visit(nxt, stack)
            if found:
                return found
        stack.pop()
        done.add(name)
        return None

    for name in edges:
        found = visit(name, [])
        if found:
            return found
    return None


def _check_routing(config: Raw, errors: Errors) -> None:
    routing = config.routing if isinstance(config.routing, Raw) else Raw({})
    default_model = routing.text("default_model")
    if default_model is not None and default_model not in {m.text("name") for _, m in _items(config, "models")}:
        errors.append(("routing.default_model", f"unknown model {default_model!r}"))
    routers = _items(routing, "routers")
    dupes = _duplicates([r.text("id") for _, r in routers])
    for i, router in routers:
        if router.text("id") in dupes:
            errors.append((f"routing.routers[{i}].id", f"duplicate router id {router.text('id')!r}"))
    for i, router in routers:
        use, settings = router.text("use"), router.data.get("config")
        if use is not None and ROUTER_USE.fullmatch(use) and (settings is None or isinstance(settings, dict)):
            errors.extend(check_router(i, use, settings))  # imports the class and builds it once
