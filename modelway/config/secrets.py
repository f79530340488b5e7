"""Which values of a config are secret, known from the config's own structure rather than
guessed from names: provider credentials (auth headers and query, key pools, static
headers), client keys, the admin key, and passwords inside URLs.

The logging filter (modelway/logs.py) redacts every one of them from all log output, and
admin output shows the config with them replaced (`redacted_config`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from modelway.config.schema import Config, ProviderAuth

MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words; no real credential is this short
REDACTED = "[redacted]"


def url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def credential_values(auth: ProviderAuth) -> list[str]:
    values = [*auth.header.values(), *auth.query.values()]
    # "Bearer sk-..." is secret as a whole and as the token alone (a log may show either)
    values += [v.split(None, 1)[1] for v in auth.header.values() if " " in v.strip()]
    return values


def config_secrets(config: Config) -> frozenset[str]:
    """Every secret value in the config, longest first when iterated through `sorted_secrets`."""
    found: list[str | None] = []
    for provider in config.providers:
        found += credential_values(provider.auth)
        for key in provider.keys:
            found += credential_values(key)
        found += provider.headers.values()
        found += [url_password(provider.base_url), url_password(provider.endpoint), url_password(provider.metrics_url)]
    found += [key.key for key in config.auth.keys]
    found.append(config.auth.admin_key)
    if config.auth.forward_auth is not None:
        found.append(url_password(config.auth.forward_auth.url))
    found.append(url_password(config.state.redis_url))
    if config.metrics is not None:
        found.append(url_password(config.metrics.redis_url))
    return frozenset(s.strip() for s in found if s and len(s.strip()) >= MIN_SECRET_LENGTH)


def sorted_secrets(secrets: frozenset[str]) -> list[str]:
    """Longest first, so that a secret containing another is replaced whole."""
    return sorted(secrets, key=len, reverse=True)


def redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redacted_config(config: Config) -> dict[str, Any]:
    """The config as a plain dict with every secret value replaced (for admin output)."""
    secrets = sorted_secrets(config_secrets(config))

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return redact_text(node, secrets)
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(config.model_dump(mode="json")))
