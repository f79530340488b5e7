"""The config file's schema (SPEC section 2), validated by pydantic v2.

Every model forbids unknown keys so typos fail loudly. Rules that need the whole
document (names that refer to each other) live in `crossref.py`, which reports them
with the same YAML paths.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RetryClass = Literal["connect_error", "timeout", 429, 500, 502, 503, 504]
DEFAULT_RETRY_ON: tuple[RetryClass, ...] = ("connect_error", "timeout", 429, 500, 502, 503, 504)

DEFAULT_MAPPING_PATHS = [
    "/completions",
    "/embeddings",
    "/images/generations",
    "/audio/speech",
    "/fine_tuning/jobs",
    "/moderations",
    "/image-synthesis",
    "/video-synthesis",
    "/responses",
    "/messages",
    "/rerank",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=1, le=65535)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1)
    response_model: Literal["upstream", "requested"] = "upstream"
    watch_config: bool = True
    drain_s: int = Field(30, ge=0)
    access_log: bool = True
    max_header_bytes: int = Field(65536, ge=1024)  # request line + headers: 431 beyond
    max_headers: int = Field(100, ge=1)  # 431 beyond
    body_timeout_s: float = Field(30, gt=0)  # a body not complete this long after its head: 408
    stream_ping_s: float = Field(10, ge=0)  # a translated stream's upstream silent this long: a ping frame; 0: never


class TelemetryConfig(Strict):
    otlp_endpoint: str | None = None
    service_name: str = Field("modelway", min_length=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value


class StateConfig(Strict):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "modelway:"
    timeout_ms: int = Field(200, ge=1)


class ClientKey(Strict):
    name: str = Field(min_length=1)
    key: str | None = Field(None, min_length=1)
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    models: list[str] | None = None
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    debug: bool = False

    @model_validator(mode="after")
    def _one_secret(self) -> ClientKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("set exactly one of 'key' or 'key_sha256'")
        return self


class ForwardAuth(Strict):
    url: str
    request_headers: list[str] = Field(default_factory=lambda: ["Authorization"])
    upstream_headers: list[str] = Field(default_factory=list)
    timeout_ms: int = Field(3000, ge=1)
    status_on_error: int = Field(401, ge=400, le=599)


class AuthConfig(Strict):
    keys: list[ClientKey] = Field(default_factory=list)
    admin_key: str | None = None
    forward_auth: ForwardAuth | None = None


HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token


def single_line_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers go out as raw bytes: a line break would split the request, and a value
    must be encodable as Latin-1 (the bytes HTTP/1.1 carries). Errors never show values."""
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} must be one line")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} has characters HTTP headers cannot carry (use ASCII)") from None
    return headers


class ProviderAuth(Strict):
    header: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)

    _one_line = field_validator("header")(single_line_headers)


class SimulationConfig(Strict):
    """Behaviour of a `simulated` provider (a modelway extension of SPEC section 2)."""

    latency_ms: float = Field(20.0, ge=0)
    tokens_per_s: float = Field(200.0, gt=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    output_tokens: int = Field(16, ge=1)
    embedding_dims: int = Field(16, ge=1, le=8192)
    models: list[str] = Field(default_factory=list)
    seed: int | None = None


class ProviderConfig(Strict):
    name: str = Field(min_length=1)
    kind: str
    base_url: str | None = None
    endpoint: str | None = None
    auth: ProviderAuth = Field(default_factory=ProviderAuth)
    keys: list[ProviderAuth] = Field(default_factory=list)
    models_path: str | None = None
    discover: bool = False
    metrics_url: str | None = None
    timeout_ms: int = Field(60000, ge=1)
    connect_timeout_ms: int = Field(2000, ge=1)
    keepalive: bool = True
    keepalive_pool: int = Field(32, ge=0)
    keepalive_timeout_ms: int = Field(60000, ge=1)
    max_connections: int | None = Field(1024, ge=1)  # open at once, idle included; null: no cap
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)  # a non-stream answer, read whole
    ssl_verify: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    simulate: SimulationConfig | None = None
    responses_api: Literal["native", "translate"] | None = None  # None: native for kind openai, else translate
    anthropic_version: str = Field("2023-06-01", min_length=1, pattern=r"^[\x21-\x7e]+$")  # kind anthropic

    _one_line = field_validator("headers")(single_line_headers)

    @field_validator("base_url", "endpoint", "metrics_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value


class HashOn(Strict):
    source: Literal["header", "cookie", "query", "consumer", "client_ip"]
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        # YAML spells it `{header: x-session-id}` or `consumer`; store it as (source, name).
        if isinstance(value, str):
            if value not in ("consumer", "client_ip"):
                raise ValueError(
                    "must be {header: NAME}, {cookie: NAME}, {query: NAME}, consumer or client_ip"
                )
            return {"source": value}
        if isinstance(value, dict) and len(value) == 1 and "source" not in value:
            ((source, name),) = value.items()
            if source not in ("header", "cookie", "query") or not isinstance(name, str) or not name:
                raise ValueError("must be {header: NAME}, {cookie: NAME} or {query: NAME} with a non-empty NAME")
            return {"source": source, "name": name}
        if isinstance(value, dict) and "source" in value:
            return value
        raise ValueError("must be {header: NAME}, {cookie: NAME}, {query: NAME}, consumer or client_ip")


class DeploymentConfig(Strict):
    provider: str
    model: str | None = None
    weight: int = Field(1, ge=1)
    priority: int = 0
    options: dict[str, Any] = Field(default_factory=dict)
    metric_key: str | None = None
    input_cost_per_mtok: float = Field(0.0, ge=0)
    output_cost_per_mtok: float = Field(0.0, ge=0)
    max_concurrency: int | None = Field(None, ge=1)
    max_context: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)  # clamps the output limit a client asks for

    @field_validator("options")
    @classmethod
    def _options_keep_model_and_stream(cls, value: dict[str, Any]) -> dict[str, Any]:
        forbidden = sorted({"model", "stream"} & value.keys())
        if forbidden:
            raise ValueError(f"may not set {', '.join(forbidden)} (modelway owns them)")
        return value


class ModelConfig(Strict):
    name: str = Field(min_length=1)
    strategy: str = "weighted_round_robin"
    hash_on: HashOn | None = None
    deployments: list[DeploymentConfig] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)
    hedge_after_ms: int | None = Field(None, ge=1)
    passthrough_url: str | None = None


class ModelMappingConfig(Strict):
    key: str = Field("model", min_length=1)
    rules: dict[str, str] = Field(default_factory=dict)
    paths: list[str] = Field(default_factory=lambda: list(DEFAULT_MAPPING_PATHS))


class CooldownConfig(Strict):
    failures: int = Field(3, ge=1)
    window_s: float = Field(60, gt=0)
    cooldown_s: float = Field(30, ge=0)
    key_retry_s: float = Field(30, gt=0)  # a pooled key refused (401/403) is tested again after this
    key_retry_max_s: float = Field(600, gt=0)  # ... doubling each time it is refused again, up to this


class HealthCheckConfig(Strict):
    interval_s: float = Field(0, ge=0)
    path: str | None = None


class RouterSpec(Strict):
    id: str = Field(min_length=1)
    use: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    priority: int = 0
    timeout_ms: int = Field(50, ge=1)
    config: dict[str, Any] = Field(default_factory=dict)


class RoutingConfig(Strict):
    retries: int = Field(2, ge=0, le=20)
    retry_on: list[RetryClass] = Field(default_factory=lambda: list(DEFAULT_RETRY_ON))
    cooldown: CooldownConfig = Field(default_factory=CooldownConfig)
    health_check: HealthCheckConfig = Field(default_factory=HealthCheckConfig)
    selected_provider_header: str | None = None
    default_model: str | None = None
    routers: list[RouterSpec] = Field(default_factory=list)


class MetricsConfig(Strict):
    source: Literal["redis", "prometheus"] = "redis"
    redis_url: str | None = None
    redis_prefix: str = "ai_metric:"
    refresh_ms: int = Field(500, ge=10)


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    telemetry: TelemetryConfig | None = None
    state: StateConfig = Field(default_factory=StateConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    model_mapping: ModelMappingConfig = Field(default_factory=ModelMappingConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    metrics: MetricsConfig | None = None
