"""Providers reached over HTTP: one keep-alive pool per provider.

Proxied requests go through modelway's own HTTP/1.1 client (`modelway.http1`), whose
errors are already UpstreamError subclasses. Discovery and health probes use an aiohttp
session; `map_client_errors` is where aiohttp's errors become UpstreamError subclasses.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from yarl import URL

from modelway.config.schema import ProviderAuth, ProviderConfig
from modelway.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from modelway.http1.pool import HostPool, Origin
from modelway.providers import DEFAULT_BASE_URLS, DEFAULT_MODELS_PATHS
from modelway.providers.base import Provider, UpstreamRequest, UpstreamResponse
from modelway.providers.credentials import Credential
from modelway.proxy.dialect import ANTHROPIC
from modelway.proxy.paths import SAFE

URL_CACHE_SIZE = 512
VERSION = b"anthropic-version"
DISCOVERY_TIMEOUT_S = 10.0


@contextlib.contextmanager
def map_client_errors(provider: str) -> Iterator[None]:
    """Translate the failures of an aiohttp exchange (discovery, probes)."""
    try:
        yield
    except UpstreamError:
        raise
    except TimeoutError:
        raise UpstreamTimeout(f"{provider}: no response within timeout") from None
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamConnectError(f"{provider}: cannot connect ({exc.os_error.strerror or 'error'})") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamConnectError(f"{provider}: connection failed ({type(exc).__name__})") from None


class HttpProvider(Provider):
    """openai-compatible and vllm: base_url is required."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        base = config.base_url or DEFAULT_BASE_URLS.get(config.kind) or config.endpoint or ""
        self.base_url = base.rstrip("/")
        self.endpoint = URL(config.endpoint) if config.endpoint else None
        # Request targets are built from these as strings (_build_target), never by a URL library.
        self._base_path = URL(self.base_url).raw_path.rstrip("/")
        self._endpoint_path = self.endpoint.raw_path if self.endpoint and self.endpoint.path not in ("", "/") else None
        self.models_path = config.models_path or DEFAULT_MODELS_PATHS.get(config.kind) or self.default_models_path
        self._timeout_s = config.timeout_ms / 1000
        target = self.endpoint if self.endpoint is not None else URL(self.base_url)
        origin = Origin(target.scheme, target.host or "", target.port or 80)
        self._pool = HostPool(
            self.name,
            origin,
            idle_limit=config.keepalive_pool,
            keepalive=config.keepalive,
            keepalive_timeout_s=config.keepalive_timeout_ms / 1000,
            connect_timeout_s=config.connect_timeout_ms / 1000,
            ssl_verify=config.ssl_verify,
            max_connections=config.max_connections,
            max_response_bytes=config.max_response_bytes,
        )
        # What every request here carries after its own headers, per credential: static
        # headers and auth, already encoded; and the names they override.
        self._heads: dict[int, tuple[bytes, frozenset[bytes]]] = {}
        self._targets: dict[tuple[str, int], bytes] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # The aiohttp session serves discovery and health probes only, off the hot path.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8, ssl=self.config.ssl_verify),
            auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def target_for(self, request: UpstreamRequest, credential: ProviderAuth) -> bytes:
        """The request target (path and query) as sent on the request line."""
        key = (request.path, id(credential))
        target = self._targets.get(key)
        if target is None:
            target = self._build_target(request.path, request.client_path, credential).encode("ascii")
            if len(self._targets) >= URL_CACHE_SIZE:
                self._targets.clear()
            self._targets[key] = target
        return target

    def _head_for(self, credential: ProviderAuth) -> tuple[bytes, frozenset[bytes]]:
        found = self._heads.get(id(credential))
        if found is None:
            fixed = {"Content-Type": "application/json", **self.config.headers, **credential.header}
            if not self.config.keepalive:
                fixed["Connection"] = "close"
            encoded = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in fixed.items())
            found = (encoded, frozenset(k.lower().encode("latin-1") for k in fixed))
            self._heads[id(credential)] = found
        return found

    def request_bytes(self, request: UpstreamRequest, credential: ProviderAuth) -> bytes:
        fixed, overridden = self._head_for(credential)
        body = request.body
        parts = [b"POST ", self.target_for(request, credential), b" HTTP/1.1\r\nHost: ", self._pool.host_header,
                 b"\r\n"]
        for name, value in request.headers:
            if name not in overridden:
                parts += (name, b": ", value, b"\r\n")
        parts += [fixed, b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body]
        return b"".join(parts)

    def _build_target(self, path: str, client_path: str, credential: ProviderAuth) -> str:
        """The base path and the request's path (checked and percent-encoded by the pipeline,
        modelway.proxy.paths) joined as they are: nothing here resolves dot segments or
        decodes escapes, so the path stays under the base path. The query is the endpoint's
        and auth.query, never the client's (SPEC section 5)."""
        params: dict[str, str] = {}
        if self.endpoint is not None:
            target = self._endpoint_path or quote(client_path, safe=SAFE)
            params.update(self.endpoint.query)
        else:
            target = f"{self._base_path}/{path}"
        params.update(credential.query)
        return f"{target}?{urlencode(params, quote_via=quote)}" if params else target

    def send(  # returns the pool's coroutine itself: one frame less per request
        self, request: UpstreamRequest, credential: Credential
    ) -> Coroutine[Any, Any, UpstreamResponse]:
        # Streams: timeout_ms bounds each gap between bytes; otherwise the whole exchange.
        return self._pool.request(
            self.request_bytes(request, credential.auth), self._timeout_s, idle=request.stream, fresh=request.fresh
        )

    def models_url(self, path: str | None = None) -> URL:
        path = path or self.models_path
        origin = URL(self.base_url).origin()
        if path.startswith(("http://", "https://")):
            return URL(path)
        if path.startswith("/"):
            return origin.with_path(path)
        return URL(f"{self.base_url}/{path}")

    async def _get(self, path: str | None) -> tuple[int, bytes]:
        session = self._session
        assert session is not None, "provider used before start()"
        credential = self.credentials.pick(time.monotonic()) or self.credentials.credentials[0]
        auth = credential.auth
        url = self.models_url(path)
        if auth.query:
            url = url.update_query(auth.query)
        headers = {**self.config.headers, **auth.header}
        timeout = aiohttp.ClientTimeout(total=min(DISCOVERY_TIMEOUT_S, self.config.timeout_ms / 1000))
        with map_client_errors(self.name):
            async with session.get(url, headers=headers, timeout=timeout) as response:
                return response.status, await response.read()

    async def probe(self, path: str | None) -> None:
        status, _ = await self._get(path)
        if status >= 500:
            raise UpstreamConnectError(f"{self.name}: health check answered {status}")

    async def list_models(self) -> list[dict[str, Any]]:
        status, body = await self._get(None)
        if status != 200:
            raise UpstreamConnectError(f"{self.name}: models endpoint answered {status}")
        payload = orjson.loads(body)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise UpstreamConnectError(f"{self.name}: models endpoint did not return an OpenAI list")
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


class OpenAIProvider(HttpProvider):
    """api.openai.com by default."""


class DeepSeekProvider(HttpProvider):
    """api.deepseek.com by default."""


class GPUStackProvider(HttpProvider):
    """GPUStack serves its OpenAI API under /v1-openai; models at /v1-openai/models."""

    default_models_path = "/v1-openai/models"


class AnthropicProvider(HttpProvider):
    """The Anthropic Messages API at <base_url>/messages (api.anthropic.com/v1 by default).
    Its credential is `auth.header: {x-api-key: ...}`, sent instead of the client's; the
    client's `anthropic-version` and `anthropic-beta` pass through, and `anthropic_version`
    is sent when the client sent none (a client speaking OpenAI chat never does)."""

    dialect = ANTHROPIC

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._version = (VERSION, config.anthropic_version.encode("latin-1"))

    def request_bytes(self, request: UpstreamRequest, credential: ProviderAuth) -> bytes:
        for name, _ in request.headers:
            if name == VERSION:
                break
        else:
            request = replace(request, headers=[*request.headers, self._version])
        return super().request_bytes(request, credential)


__all__ = [
    "AnthropicProvider",
    "DeepSeekProvider",
    "GPUStackProvider",
    "HttpProvider",
    "OpenAIProvider",
    "map_client_errors",
]
