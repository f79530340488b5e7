from __future__ import annotations

import pytest

from modelway.config import load_config, parse_config
from modelway.errors import ConfigError

MINIMAL = """
providers:
  - {name: vllm-a, kind: vllm, base_url: "http://127.0.0.1:8000/v1"}
models:
  - name: m
    deployments: [{provider: vllm-a}]
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env or {})
    return [f"{path}: {message}" for path, message in info.value.errors]


def test_demo_config_is_valid() -> None:
    config = load_config(None)
    assert {p.kind for p in config.providers} == {"simulated"}
    assert config.state.backend == "memory"


def test_minimal_config_and_defaults() -> None:
    config = parse_config(MINIMAL, {})
    assert config.server.port == 4000
    assert config.server.max_body_bytes == 16777216
    assert config.routing.retries == 2
    assert config.model_mapping.key == "model"
    assert config.models[0].deployments[0].weight == 1


def test_unknown_keys_are_errors_with_their_path() -> None:
    found = errors_of(MINIMAL + "server: {hostt: x}\n")
    assert found == ["server.hostt: unknown key"]
    typo = MINIMAL.replace("deployments: [{provider: vllm-a}]", "deployments: [{provider: vllm-a, wieght: 2}]")
    found = errors_of(typo)
    assert found == ["models[0].deployments[0].wieght: unknown key"]


def test_unknown_provider_lists_known_ones() -> None:
    found = errors_of(MINIMAL.replace("deployments: [{provider: vllm-a}]", "deployments: [{provider: vlm-a}]"))
    assert found == ["models[0].deployments[0].provider: unknown provider 'vlm-a' (known: vllm-a)"]


def test_unknown_kind_names_the_path() -> None:
    (found,) = errors_of(MINIMAL.replace("kind: vllm", "kind: vlm"))
    assert found.startswith("providers[0].kind: unknown provider kind 'vlm'")


def test_every_error_is_reported_at_once() -> None:
    text = """
server: {response_model: both}
providers:
  - {name: a, kind: openai-compatible}
  - {name: a, kind: openai}
models:
  - {name: m, deployments: [{provider: a, options: {model: x}}]}
  - {name: m, strategy: fastest, deployments: [{provider: b}], fallbacks: [zz]}
"""
    found = errors_of(text)
    assert any(e.startswith("server.response_model:") for e in found)
    assert any(e.startswith("models[0].deployments[0].options: may not set model") for e in found)
    text = text.replace("response_model: both", "response_model: requested").replace(", options: {model: x}", "")
    found = errors_of(text)
    assert "providers[0].base_url: required for kind 'openai-compatible' (or set endpoint)" in found
    assert "providers[1].name: duplicate provider name 'a'" in found
    assert "models[1].name: duplicate model name 'm'" in found
    assert any(e.startswith("models[1].strategy: unknown strategy 'fastest'") for e in found)
    assert any(e.startswith("models[1].deployments[0].provider: unknown provider 'b'") for e in found)
    assert "models[1].fallbacks[0]: unknown model 'zz'" in found


def test_env_substitution() -> None:
    text = MINIMAL.replace('"http://127.0.0.1:8000/v1"', '"${env:VLLM_URL}"') + (
        "server: {host: '${env:HOST:-0.0.0.0}'}\n"
    )
    config = parse_config(text, {"VLLM_URL": "http://10.0.0.1:8000/v1"})
    assert config.providers[0].base_url == "http://10.0.0.1:8000/v1"
    assert config.server.host == "0.0.0.0"


def test_missing_env_variable_names_it_and_where() -> None:
    text = MINIMAL.replace("base_url:", 'auth: {header: {Authorization: "Bearer ${env:VLLM_KEY}"}}, base_url:')
    assert errors_of(text) == [
        "providers[0].auth.header.Authorization: environment variable VLLM_KEY is not set "
        "(use ${env:VLLM_KEY:-default})"
    ]


def test_fallback_cycles_are_detected() -> None:
    text = """
providers: [{name: p, kind: simulated}]
models:
  - {name: a, deployments: [{provider: p}], fallbacks: [b]}
  - {name: b, deployments: [{provider: p}], fallbacks: [c]}
  - {name: c, deployments: [{provider: p}], fallbacks: [a]}
"""
    assert errors_of(text) == ["models[0].fallbacks: fallback cycle: a -> b -> c -> a"]


def test_consistent_hash_needs_hash_on_and_hash_on_shapes() -> None:
    base = (
        "providers: [{name: p, kind: simulated}]\n"
        "models:\n  - {name: a, strategy: consistent_hash, deployments: [{provider: p}]%s}\n"
    )
    assert errors_of(base % "") == ["models[0].hash_on: required when strategy is consistent_hash"]
    for good in (", hash_on: {header: x-session}", ", hash_on: consumer", ", hash_on: client_ip",
                 ", hash_on: {cookie: sid}"):
        parse_config(base % good, {})
    (found,) = errors_of(base % ", hash_on: {body: x}")
    assert found.startswith("models[0].hash_on:")


def test_later_sections_already_validate() -> None:
    text = MINIMAL + """
state: {backend: redis, redis_url: "redis://127.0.0.1:6379/0", key_prefix: "mw:", timeout_ms: 100}
auth:
  keys: [{name: team-a, key: secret, models: ["gpt-4*"], rpm: 10, tpm: 1000, debug: true}]
  admin_key: admin
  forward_auth: {url: "http://127.0.0.1:6060/check", upstream_headers: [X-User-ID]}
routing:
  retries: 1
  retry_on: [timeout, 503]
  cooldown: {failures: 2, window_s: 10, cooldown_s: 5}
  health_check: {interval_s: 5}
  routers: [{id: r, use: "modelway.routers.rules:RuleRouter", priority: 1, config: {rules: []}}]
metrics: {source: prometheus, refresh_ms: 250}
"""
    config = parse_config(text, {})
    assert config.routing.retry_on == ["timeout", 503]
    assert config.metrics is not None and config.metrics.source == "prometheus"
    found = errors_of(MINIMAL + "routing: {retry_on: [404]}\n")
    assert found[0].startswith("routing.retry_on[0]:")
    found = errors_of(MINIMAL + "state: {backend: etcd}\n")
    assert found[0].startswith("state.backend:")
    found = errors_of(MINIMAL + "auth: {keys: [{name: k}]}\n")
    assert found == ["auth.keys[0]: set exactly one of 'key' or 'key_sha256'"]


def test_yaml_syntax_error_says_where() -> None:
    (found,) = errors_of("providers: [\n  - {name: a\n")
    assert "invalid YAML" in found and "line" in found


def test_secrets_never_in_errors() -> None:
    text = MINIMAL.replace("base_url:", 'auth: {header: {Authorization: "Bearer sk-very-secret"}}, base_url:')
    text = text.replace("kind: vllm", "kind: vllm, timeout_ms: -5")
    found = errors_of(text)
    assert found and not any("sk-very-secret" in e for e in found)


def test_header_values_must_be_one_line_and_stay_secret() -> None:
    text = MINIMAL.replace("base_url:", 'auth: {header: {Authorization: "Bearer sk-1\\r\\nX-Evil: 1"}}, base_url:')
    (found,) = errors_of(text)
    assert found == "providers[0].auth.header: header 'Authorization' must be one line"
    (found,) = errors_of(MINIMAL.replace("base_url:", 'headers: {X-Title: "café ✓"}, base_url:'))
    assert found.startswith("providers[0].headers: header 'X-Title' has characters")
    assert "café" not in found
    (found,) = errors_of(MINIMAL.replace("base_url:", 'headers: {"X Bad": "v"}, base_url:'))
    assert found == "providers[0].headers: header name 'X Bad' is not a valid HTTP header name"


def test_server_request_limits_have_defaults_and_bounds() -> None:
    server = parse_config(MINIMAL, {}).server
    assert (server.max_header_bytes, server.max_headers, server.body_timeout_s) == (65536, 100, 30)
    found = errors_of(MINIMAL + "server: {max_header_bytes: 100, max_headers: 0, body_timeout_s: 0}\n")
    paths = [e.split(":")[0] for e in found]
    assert paths == ["server.max_header_bytes", "server.max_headers", "server.body_timeout_s"]
