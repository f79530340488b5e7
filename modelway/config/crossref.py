"""Checks that need the whole config: names that refer to each other, kinds and strategies
that must exist, and fallback cycles. Errors carry the YAML path of the offending value."""

from __future__ import annotations

from collections import Counter

from modelway.config.schema import Config
from modelway.importing import ImportFromStringError, resolve
from modelway.providers import DEFAULT_BASE_URLS, PROVIDER_KINDS
from modelway.strategies import STRATEGIES

Errors = list[tuple[str, str]]


def check_references(config: Config) -> Errors:
    errors: Errors = []
    _check_providers(config, errors)
    _check_models(config, errors)
    _check_routing(config, errors)
    dupes = _duplicates([k.name for k in config.auth.keys])
    for i, key in enumerate(config.auth.keys):
        if key.name in dupes:
            errors.append((f"auth.keys[{i}].name", f"duplicate client key name {key.name!r}"))
    return errors


def _duplicates(names: list[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


def _check_providers(config: Config, errors: Errors) -> None:
    dupes = _duplicates([p.name for p in config.providers])
    for i, provider in enumerate(config.providers):
        at = f"providers[{i}]"
        if provider.name in dupes:
            errors.append((f"{at}.name", f"duplicate provider name {provider.name!r}"))
        if provider.kind not in PROVIDER_KINDS and ":" not in provider.kind:
            known = " | ".join(PROVIDER_KINDS)
            errors.append((f"{at}.kind", f"unknown provider kind {provider.kind!r} (known: {known})"))
            continue
        if ":" in provider.kind:
            try:
                resolve(PROVIDER_KINDS, provider.kind, "provider kind")
            except ImportFromStringError as exc:
                errors.append((f"{at}.kind", str(exc)))
        is_simulated = provider.kind == "simulated"
        if (
            provider.base_url is None
            and provider.endpoint is None
            and not is_simulated
            and provider.kind not in DEFAULT_BASE_URLS
        ):
            errors.append((f"{at}.base_url", f"required for kind {provider.kind!r} (or set endpoint)"))
        if provider.simulate is not None and not is_simulated:
            errors.append((f"{at}.simulate", "only allowed for kind 'simulated'"))


def _check_models(config: Config, errors: Errors) -> None:
    providers = [p.name for p in config.providers]
    known_providers = ", ".join(providers) or "none configured"
    models = {m.name for m in config.models}
    dupes = _duplicates([m.name for m in config.models])
    for i, model in enumerate(config.models):
        at = f"models[{i}]"
        if model.name in dupes:
            errors.append((f"{at}.name", f"duplicate model name {model.name!r}"))
        try:
            resolve(STRATEGIES, model.strategy, "strategy")
        except ImportFromStringError as exc:
            errors.append((f"{at}.strategy", str(exc)))
        if model.strategy == "consistent_hash" and model.hash_on is None:
            errors.append((f"{at}.hash_on", "required when strategy is consistent_hash"))
        for j, deployment in enumerate(model.deployments):
            if deployment.provider not in providers:
                errors.append(
                    (
                        f"{at}.deployments[{j}].provider",
                        f"unknown provider {deployment.provider!r} (known: {known_providers})",
                    )
                )
        for j, fallback in enumerate(model.fallbacks):
            if fallback == model.name:
                errors.append((f"{at}.fallbacks[{j}]", f"model {model.name!r} cannot fall back to itself"))
            elif fallback not in models:
                errors.append((f"{at}.fallbacks[{j}]", f"unknown model {fallback!r}"))
    cycle = _fallback_cycle(config)
    if cycle:
        index = next(i for i, m in enumerate(config.models) if m.name == cycle[0])
        errors.append((f"models[{index}].fallbacks", f"fallback cycle: {' -> '.join(cycle)}"))


def _fallback_cycle(config: Config) -> list[str] | None:
    edges = {m.name: [f for f in m.fallbacks if f != m.name] for m in config.models}
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


def _check_routing(config: Config, errors: Errors) -> None:
    default_model = config.routing.default_model
    if default_model is not None and default_model not in {m.name for m in config.models}:
        errors.append(("routing.default_model", f"unknown model {default_model!r}"))
    dupes = _duplicates([r.id for r in config.routing.routers])
    for i, router in enumerate(config.routing.routers):
        if router.id in dupes:
            errors.append((f"routing.routers[{i}].id", f"duplicate router id {router.id!r}"))
