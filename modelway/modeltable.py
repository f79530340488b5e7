"""`modelway models`: the model table a config resolves to, and what providers report."""

from __future__ import annotations

import asyncio

from modelway.config.schema import Config
from modelway.errors import UpstreamError
from modelway.runtime import Runtime


async def describe_models(config: Config, discover: bool) -> str:
    runtime = Runtime(config)
    lines = []
    mapping = config.model_mapping.rules
    for name, route in runtime.models.items():
        lines.append(f"{name}  (strategy {route.config.strategy})")
        for deployment in route.deployments:
            upstream = deployment.upstream_model or "(same name)"
            lines.append(
                f"  -> {deployment.provider.name:<20} {upstream:<32} weight {deployment.weight}"
                f"  priority {deployment.priority}"
            )
        if route.config.fallbacks:
            lines.append(f"  fallbacks: {', '.join(route.config.fallbacks)}")
    if mapping:
        lines.append("")
        lines.append("model_mapping:")
        for pattern, target in mapping.items():
            lines.append(f"  {pattern} -> {target or '(keep the name)'}")
    if discover:
        lines.append("")
        lines.append("discovered:")
        await runtime.start()
        try:
            providers = list(runtime.providers.values())
            results = await asyncio.gather(*(p.list_models() for p in providers), return_exceptions=True)
            for provider, result in zip(providers, results, strict=True):
                if isinstance(result, UpstreamError | ValueError):
                    lines.append(f"  {provider.name}: unavailable ({result})")
                elif isinstance(result, BaseException):
                    raise result
                else:
                    ids = ", ".join(m["id"] for m in result) or "(none)"
                    lines.append(f"  {provider.name}: {ids}")
        finally:
            await runtime.close()
    return "\n".join(lines)
