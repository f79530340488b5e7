"""The config file's JSON Schema (`modelway schema`), for editors and CI checks of configs.

It is generated from the pydantic models of `schema.py`, so it can never drift from what
`modelway check` accepts; the descriptions editors show on hover are laid over it here,
keyed by model and field, so that schema.py stays a plain list of types and bounds.
A description for a field that no longer exists fails the test suite (tests/unit/test_jsonschema.py).
"""

from __future__ import annotations

from typing import Any

from modelway.config.schema import Config

SCHEMA_ID = "https://modelway.dev/schema/config.json"

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Config": {
        "server": "Listen address, limits and server behaviour.",
        "telemetry": "Optional OpenTelemetry traces (pip extra modelway[otel]); absent: no tracing cost at all.",
        "state": "Where shared state lives: memory (one process) or redis (shared by instances).",
        "auth": "Client keys, the admin key and optional forward auth. No keys: the gateway is open.",
        "providers": "Upstream endpoints (vLLM, GPUStack, hosted APIs) and the credentials injected for them.",
        "models": "Public model names clients use, each mapped to one or more deployments on providers.",
        "model_mapping": "Rewrites of the requested model name, applied first (exact, then longest prefix, then '*').",
        "routing": "Retries, cooldowns, health checks, default model and router plugins.",
        "metrics": "External load metrics for the least_load strategy (Redis keys or vLLM/SGLang scrapes).",
    },
    "ServerConfig": {
        "host": "Listen address (default 127.0.0.1).",
        "port": "Listen port (default 4000).",
        "max_body_bytes": "Largest request body accepted; beyond it the answer is 413.",
        "response_model": "What 'model' clients see in answers: the upstream's name, or the name they requested.",
        "watch_config": "Reload when the config file changes.",
        "drain_s": "On SIGTERM/SIGINT: how long requests and streams in flight may finish before the process exits.",
        "access_log": "One JSON line per request on stdout (never bodies, never secrets).",
        "max_header_bytes": "Request line and headers together; more gets 431 (a target over 8192 bytes: 414).",
        "max_headers": "Header fields in a request; more gets 431.",
        "body_timeout_s": "A request body not complete this long after its head gets 408 and the connection closed.",
        "stream_ping_s": "A translated stream whose upstream is silent this long gets a keep-alive frame"
        " (Anthropic ping, an SSE comment otherwise); 0: never.",
    },
    "TelemetryConfig": {
        "otlp_endpoint": "OTLP/HTTP collector, e.g. http://127.0.0.1:4318: one span per request, one per attempt.",
        "service_name": "The service.name resource attribute of the spans.",
    },
    "StateConfig": {
        "backend": "memory (default, one process) or redis (shared by instances).",
        "redis_url": "redis:// or rediss:// URL; a password in it is never logged.",
        "key_prefix": "Prefix of every key modelway writes in Redis.",
        "timeout_ms": "Bound on every Redis call; a slow or down Redis degrades to local state.",
    },
    "ClientKey": {
        "name": "The key's name, shown in logs and metrics instead of the key.",
        "key": "The key itself (use ${env:NAME}); or give key_sha256.",
        "key_sha256": "Hex SHA-256 of the key, so the config need not hold it.",
        "models": "Public model names this key may use (same patterns as model_mapping); absent: all.",
        "rpm": "Requests per minute allowed to this key.",
        "tpm": "Tokens per minute allowed to this key.",
        "debug": "May this key see the x-modelway-route debug header.",
    },
    "ForwardAuth": {
        "url": "The auth service asked before routing (as APISIX forward-auth).",
        "request_headers": "Client headers sent to the auth service.",
        "upstream_headers": "Headers copied from the auth service's answer to the upstream request.",
        "timeout_ms": "How long the auth service may take.",
        "status_on_error": "Status answered when the auth service is down or too slow.",
    },
    "AuthConfig": {
        "keys": "Client keys (Authorization: Bearer or x-api-key).",
        "admin_key": "Key of the admin API and the status page; the admin API is disabled when unset.",
        "forward_auth": "Optional external auth service.",
    },
    "ProviderAuth": {
        "header": "Headers injected on every upstream request, e.g. {Authorization: 'Bearer ${env:KEY}'}.",
        "query": "Query parameters injected on every upstream request, e.g. {api_key: ...}.",
    },
    "HashOn": {
        "source": "Where the hash key is read: header, cookie, query, consumer (the client key's name) or client_ip.",
        "name": "The header, cookie or query parameter name.",
    },
    "SimulationConfig": {
        "latency_ms": "Time to the first token.",
        "tokens_per_s": "Generation speed.",
        "failure_rate": "Share of requests answered 500 (0 to 1).",
        "output_tokens": "Tokens in each answer.",
        "embedding_dims": "Length of each embedding.",
        "models": "Models the provider lists for discovery.",
        "seed": "Random seed, for repeatable runs.",
    },
    "ProviderConfig": {
        "name": "The provider's name, referred to by deployments.",
        "kind": "openai | deepseek | openai-compatible | vllm | gpustack | anthropic | simulated.",
        "base_url": "Required unless the kind has a default (openai, deepseek, anthropic) or endpoint is set.",
        "endpoint": "Optional full URL for every request routed here, whatever its path.",
        "auth": "The credential injected on every request; the client's own is never forwarded.",
        "keys": "A pool of credentials used in rotation instead of auth.",
        "models_path": "Where the provider lists its models, relative to base_url ('/...' from its origin).",
        "discover": "Learn the provider's models and route them by their own names.",
        "metrics_url": "vLLM/SGLang Prometheus endpoint for load-aware routing.",
        "timeout_ms": "Whole request (non-stream) or idle gap between stream chunks.",
        "connect_timeout_ms": "Bound on opening a connection.",
        "keepalive": "Reuse upstream connections.",
        "keepalive_pool": "Idle connections kept per provider.",
        "keepalive_timeout_ms": "How long an idle upstream connection is kept.",
        "ssl_verify": "Verify the provider's TLS certificate.",
        "headers": "Extra static headers sent on every request.",
        "max_connections": "Connections open to this provider at once, idle ones included; null: no cap.",
        "max_response_bytes": "The largest non-stream answer taken from this provider; larger ones fail the attempt.",
        "simulate": "Behaviour of a simulated provider (kind: simulated).",
        "responses_api": "How POST /v1/responses reaches this provider: native (forwarded) or translate (as"
        " chat/completions, both ways). Default native for kind openai, translate for the others.",
        "anthropic_version": "kind anthropic: the anthropic-version header sent when the client sent none.",
    },
    "DeploymentConfig": {
        "provider": "The provider serving this deployment.",
        "model": "Upstream model name written into the body (absent: the name after mapping).",
        "weight": "Share of traffic for weighted strategies (default 1).",
        "priority": "Higher is tried first; lower priorities are fallbacks (default 0).",
        "options": "Merged into the request body (deployment values win); may not set model or stream.",
        "metric_key": "least_load: the metric is read at <metrics.redis_prefix><metric_key>.",
        "input_cost_per_mtok": "USD per million input tokens.",
        "output_cost_per_mtok": "USD per million output tokens.",
        "max_concurrency": "In-flight cap per deployment per instance; beyond it the deployment is skipped.",
        "max_context": "Context window in tokens, for the context-window router.",
        "max_output_tokens": "Clamps the output limit a client asks for (max_tokens, max_completion_tokens,"
        " max_output_tokens) to at most this.",
    },
    "ModelConfig": {
        "name": "The public model name clients send.",
        "strategy": "weighted_round_robin | random | consistent_hash | least_busy | latency | least_load | cost "
        "| expected_delay, or 'module:Class'.",
        "hash_on": "consistent_hash only: {header: NAME} | {cookie: NAME} | {query: NAME} | consumer | client_ip.",
        "deployments": "Where this model is served.",
        "fallbacks": "Other public models to try when every deployment here failed.",
        "hedge_after_ms": "No response headers by then: race a second deployment, keep the first answer.",
        "passthrough_url": "POST the non-stream answer to this URL and return that service's answer.",
    },
    "ModelMappingConfig": {
        "key": "JSON path of the model in the body; dots for nesting.",
        "rules": "Requested name or pattern → public name; '' keeps the original.",
        "paths": "Path suffixes the mapping applies to.",
    },
    "CooldownConfig": {
        "failures": "Failures within window_s that put a deployment in cooldown.",
        "window_s": "Window over which failures are counted.",
        "cooldown_s": "How long a deployment cools down.",
        "key_retry_s": "A pooled key answered 401/403 is tested again by one request after this long.",
        "key_retry_max_s": "Each further 401/403 doubles the key's wait, up to this.",
    },
    "HealthCheckConfig": {
        "interval_s": "Active probes of each provider every this many seconds; 0 disables.",
        "path": "Probed path (null: the provider's models_path).",
    },
    "RouterSpec": {
        "id": "The router's id, in logs, metrics and the debug header.",
        "use": "'package.module:Class' of the router.",
        "priority": "Routers run in descending priority, ties by id.",
        "timeout_ms": "A router slower than this is skipped.",
        "config": "Passed to the router's constructor.",
    },
    "RoutingConfig": {
        "retries": "Extra attempts after the first, across deployments and fallbacks.",
        "retry_on": "Failure classes that are retried: connect_error, timeout, 429, 500, 502, 503, 504.",
        "cooldown": "Passive health: failures that put a deployment in cooldown.",
        "health_check": "Active health checks.",
        "selected_provider_header": "Also send the chosen provider's name upstream in this header.",
        "default_model": "Public model used when the request names no model or an unknown one.",
        "routers": "Pluggable routers, run before the default resolution.",
    },
    "MetricsConfig": {
        "source": "redis | prometheus (scrape providers' metrics_url).",
        "redis_url": "Default: state.redis_url.",
        "redis_prefix": "Prefix of the metric keys.",
        "refresh_ms": "How often metrics are refreshed.",
    },
}


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, with descriptions."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "modelway config"
    described = {"Config": schema, **schema.get("$defs", {})}
    for model, fields in DESCRIPTIONS.items():
        properties = described[model]["properties"]
        for name, text in fields.items():
            properties[name]["description"] = text
    return schema
