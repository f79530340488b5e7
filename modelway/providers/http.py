"""Providers reached over HTTP with aiohttp: one keep-alive pool per provider.

`map_client_errors` is the one place where aiohttp and socket errors become modelway's
own `UpstreamError` subclasses.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
from yarl import URL

from modelway.config.schema import ProviderAuth, ProviderConfig
from modelway.errors import (
    UpstreamBrokenStream,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from modelway.providers import DEFAULT_BASE_URLS, DEFAULT_MODELS_PATHS
from modelway.providers.base import Provider, UpstreamRequest, UpstreamResponse, relayable
from modelway.providers.credentials import Credential
from modelway.providers.pool import PoolConnector

URL_CACHE_SIZE = 512
DISCOVERY_TIMEOUT_S = 10.0


@contextlib.contextmanager
def map_client_errors(provider: str, *, started: bool) -> Iterator[None]:
    """Translate aiohttp failures; `started` says whether the response had begun."""
    try:
        yield
    except UpstreamError:
        raise
    except TimeoutError:
        what = "no next chunk" if started else "no response"
        raise UpstreamTimeout(f"{provider}: {what} within timeout") from None
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        if started:
            raise UpstreamBrokenStream(f"{provider}: response broke off ({type(exc).__name__})") from None
        raise UpstreamConnectError(f"{provider}: connection failed ({type(exc).__name__})") from None
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamConnectError(f"{provider}: cannot connect ({exc.os_error.strerror or 'error'})") from None
    except (aiohttp.ClientError, OSError) as exc:
        cls = UpstreamBrokenStream if started else UpstreamConnectError
        raise cls(f"{provider}: {type(exc).__name__}") from None


class HttpUpstreamResponse(UpstreamResponse):
    __slots__ = ("_provider", "_response", "content_type", "headers", "status")

    def __init__(self, provider: str, response: aiohttp.ClientResponse) -> None:
        self._provider = provider
        self._response = response
        self.status = response.status
        self.headers = relayable(response.raw_headers)
        self.content_type = response.headers.get("Content-Type", "")

    async def read(self) -> bytes:
        with map_client_errors(self._provider, started=True):
            return await self._response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with map_client_errors(self._provider, started=True):
            async for chunk in content.iter_any():
                yield chunk

    def close(self) -> None:
        response = self._response
        if response.content.at_eof():
            response.release()  # back to the keep-alive pool
        else:
            response.close()  # abandoned mid-body: the connection cannot be reused


class HttpProvider(Provider):
    """openai-compatible and vllm: base_url is required."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        base = config.base_url or DEFAULT_BASE_URLS.get(config.kind) or config.endpoint or ""
        self.base_url = base.rstrip("/")
        self.endpoint = URL(config.endpoint) if config.endpoint else None
        self.models_path = config.models_path or DEFAULT_MODELS_PATHS.get(config.kind) or self.default_models_path
        self._static_headers = {"Content-Type": "application/json", **config.headers}
        self._urls: dict[tuple[str, str, int], URL] = {}
        self._session: aiohttp.ClientSession | None = None
        connect = config.connect_timeout_ms / 1000
        whole = config.timeout_ms / 1000
        self._timeout = aiohttp.ClientTimeout(total=whole, sock_connect=connect)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=whole)

    async def start(self) -> None:
        config = self.config
        connector = PoolConnector(
            idle_limit=config.keepalive_pool,
            limit=0,
            force_close=not config.keepalive or config.keepalive_pool == 0,
            keepalive_timeout=config.keepalive_timeout_ms / 1000 if config.keepalive else None,
            ssl=None if config.ssl_verify else False,
            enable_cleanup_closed=False,
        )
        # Bodies are relayed byte for byte: no transparent decompression, no extra headers.
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent"),
            cookie_jar=aiohttp.DummyCookieJar(),  # a gateway keeps no cookies; skips per-request jar work
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url_for(self, request: UpstreamRequest, credential: ProviderAuth) -> URL:
        key = (request.path, request.query, id(credential))
        url = self._urls.get(key)
        if url is None:
            url = self._build_url(request.path, request.client_path, request.query, credential)
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[key] = url
        return url

    def _build_url(self, path: str, client_path: str, query: str, credential: ProviderAuth) -> URL:
        params = dict(parse_qsl(query, keep_blank_values=True))
        if self.endpoint is not None:
            url = self.endpoint
            if url.path in ("", "/"):
                url = url.with_path(client_path)
            params.update(url.query)
        else:
            url = URL(f"{self.base_url}/{path}")
        params.update(credential.query)
        return url.with_query(params) if params else url.with_query(None)

    def headers_for(self, request: UpstreamRequest, credential: ProviderAuth) -> dict[str, str]:
        headers = {**request.headers, **self._static_headers}
        if credential.header:
            headers.update(credential.header)
        return headers

    async def send(self, request: UpstreamRequest, credential: Credential) -> UpstreamResponse:
        session = self._session
        assert session is not None, "provider used before start()"
        auth = credential.auth
        with map_client_errors(self.name, started=False):
            response = await session.post(
                self.url_for(request, auth),
                data=request.body,
                headers=self.headers_for(request, auth),
                timeout=self._stream_timeout if request.stream else self._timeout,
                allow_redirects=False,
            )
        return HttpUpstreamResponse(self.name, response)

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
        with map_client_errors(self.name, started=False):
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
    """Parsed and reachable; native Messages forwarding and translation arrive later."""


__all__ = [
    "AnthropicProvider",
    "DeepSeekProvider",
    "GPUStackProvider",
    "HttpProvider",
    "OpenAIProvider",
    "map_client_errors",
]
