"""The router plugin API (SPEC section 6): everything a plugin imports.

    from modelway.plugins import Router, RouteRequest, RouteDecision

    class PremiumRouter(Router):
        async def route(self, req: RouteRequest) -> RouteDecision | None:
            if req.headers.get("x-tier") == "premium":
                return RouteDecision(kind="model", target="gpt-4o", reason="premium tier")
            return None  # decline: the next router decides

A router sees a `RouteRequest` (copies: changing them changes nothing else) and answers a
`RouteDecision` or `None`. Decisions send the request to a public model (`"model"`), to
one provider with an optional upstream model (`"deployment"`), or to a plugin's own
`Executor.execute`, which answers with a `Response` or a `StreamResponse` and may call back
into the gateway through `req.gateway` (a `GatewayClient`). The tutorial is
docs/router-plugins.md.

This module imports nothing from the rest of modelway, so loading a plugin is cheap.
"""

from __future__ import annotations

import copy
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

import orjson

__all__ = [
    "Available",
    "Client",
    "Executor",
    "GatewayClient",
    "ModelInfo",
    "ReadOnlyMap",
    "Response",
    "RouteDecision",
    "RouteRequest",
    "Router",
    "StreamResponse",
    "estimate_prompt_tokens",
]

DecisionKind = Literal["model", "deployment", "executor"]
KINDS: tuple[str, ...] = ("model", "deployment", "executor")


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a request goes. Keyword arguments, as in the SPEC:

    - `kind="model"`: `target` is a public model; its strategy then picks a deployment.
    - `kind="deployment"`: `target` is a provider; `target_model` (optional) is the upstream
      model to run there. It changes only what is executed: logs and metrics keep the model
      the client asked for.
    - `kind="executor"`: a router's own `execute` answers: the deciding router's when
      `target` is None, else the router whose id is `target`.
    - `reason`: free text for the debug header.
    """

    kind: DecisionKind
    target: str | None = None
    target_model: str | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        problem = decision_problem(self)
        if problem:
            raise ValueError(problem)

    @classmethod
    def to_model(cls, name: str, reason: str = "") -> RouteDecision:
        return cls(kind="model", target=name, reason=reason)

    @classmethod
    def to_deployment(cls, provider: str, target_model: str | None = None, reason: str = "") -> RouteDecision:
        return cls(kind="deployment", target=provider, target_model=target_model, reason=reason)

    @classmethod
    def to_executor(cls, router_id: str | None = None, reason: str = "") -> RouteDecision:
        return cls(kind="executor", target=router_id, reason=reason)


def decision_problem(decision: RouteDecision) -> str | None:
    """Why a decision is malformed, or None. The chain checks again what __init__ checked,
    since a plugin may hand back an object it built some other way."""
    kind, target, target_model = decision.kind, decision.target, decision.target_model
    if kind not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}, not {kind!r}"
    if target is not None and (not isinstance(target, str) or not target):
        return "target must be a non-empty string or None"
    if kind in ("model", "deployment") and target is None:
        return f"a {kind!r} decision needs a target"
    if target_model is not None:
        if kind != "deployment":
            return "target_model is only for 'deployment' decisions"
        if not isinstance(target_model, str) or not target_model:
            return "target_model must be a non-empty string or None"
    if not isinstance(decision.reason, str):
        return "reason must be a string"
    return None


class ReadOnlyMap(Mapping[str, str]):
    """A read-only mapping whose keys are lower-case; lookups ignore case."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        items = data.items() if isinstance(data, Mapping) else data
        self._data: dict[str, str] = {str(k).lower(): str(v) for k, v in items}

    def __getitem__(self, key: str) -> str:
        if not isinstance(key, str):
            raise KeyError(key)
        return self._data[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key.lower(), default) if isinstance(key, str) else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ReadOnlyMap({self._data!r})"


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling: the client key's name (`auth.keys[].name`) and the consumer id
    (today the key name; forward auth will set its own). Both None on an open gateway."""

    key: str | None = None
    consumer: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A public model that has at least one available deployment."""

    name: str
    providers: frozenset[str]  # providers of its available deployments
    max_context: int | None  # largest max_context among them; None when one has none set (unknown)


@dataclass(frozen=True, slots=True)
class Available:
    """An optimistic snapshot, taken when a router first reads it: providers and public
    models with at least one healthy, enabled deployment."""

    providers: frozenset[str] = frozenset()
    models: Mapping[str, ModelInfo] = field(default_factory=lambda: MappingProxyType({}))


class RequestSource(Protocol):
    """What modelway shares between the RouteRequests of one request (internal)."""

    def body_copy(self) -> dict[str, Any]: ...

    def available(self) -> Available: ...

    def prompt_tokens(self) -> int: ...


class RouteRequest:
    """One request as a router sees it. Every router (and an executor) gets its own
    instance: `body` is a deep copy made on first read, `headers` and `query` are read-only
    case-insensitive mappings, so nothing a router changes reaches anyone else.

    `headers` never holds the client's credentials (`authorization`, `x-api-key`,
    `proxy-authorization`); `client` says who the caller is. `prompt_tokens` is an estimate
    (see `estimate_prompt_tokens`). `gateway` is the in-process way back into the gateway
    (set on requests modelway builds; None on ones a test builds unless given).

    Build one yourself to unit-test a router: `RouteRequest(body={"model": "m", ...})`.
    """

    __slots__ = (
        "_available",
        "_body",
        "_prompt_tokens",
        "_source",
        "client",
        "gateway",
        "headers",
        "original_model",
        "path",
        "query",
        "requested_model",
        "source_format",
        "stream",
    )

    source_format: str
    path: str
    requested_model: str
    original_model: str | None
    stream: bool
    headers: ReadOnlyMap
    query: ReadOnlyMap
    client: Client
    gateway: GatewayClient | None

    def __init__(
        self,
        *,
        path: str = "/v1/chat/completions",
        body: Mapping[str, Any] | None = None,
        requested_model: str | None = None,
        original_model: str | None = None,
        stream: bool | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        client: Client | None = None,
        available: Available | None = None,
        source_format: str | None = None,
        gateway: GatewayClient | None = None,
    ) -> None:
        payload: dict[str, Any] = copy.deepcopy(dict(body)) if body is not None else {}
        model = payload.get("model")
        self.source_format = source_format or (
            "anthropic" if "/messages" in path else "responses" if path.endswith("/responses") else "openai"
        )
        self.path = path
        self.requested_model = requested_model if requested_model is not None else str(model or "")
        if original_model is None and isinstance(model, str):
            original_model = model
        self.original_model = original_model
        self.stream = stream if stream is not None else payload.get("stream") is True
        self.headers = headers if isinstance(headers, ReadOnlyMap) else ReadOnlyMap(headers or {})
        self.query = query if isinstance(query, ReadOnlyMap) else ReadOnlyMap(query or {})
        self.client = client or Client()
        self.gateway = gateway
        self._body: dict[str, Any] | None = payload
        self._available: Available | None = available or Available()
        self._prompt_tokens: int | None = None
        self._source: RequestSource | None = None

    @classmethod
    def from_source(
        cls,
        source: RequestSource,
        *,
        source_format: str,
        path: str,
        requested_model: str,
        original_model: str | None,
        stream: bool,
        headers: ReadOnlyMap,
        query: ReadOnlyMap,
        client: Client,
        gateway: GatewayClient | None,
    ) -> RouteRequest:
        """The RouteRequest modelway builds per router: body, available and prompt_tokens
        come from `source` only when read."""
        req = cls.__new__(cls)
        req.source_format, req.path, req.stream = source_format, path, stream
        req.requested_model, req.original_model = requested_model, original_model
        req.headers, req.query, req.client, req.gateway = headers, query, client, gateway
        req._body = None
        req._available = None
        req._prompt_tokens = None
        req._source = source
        return req

    @property
    def body(self) -> dict[str, Any]:
        """The parsed JSON body: this request's own deep copy."""
        if self._body is None:
            assert self._source is not None
            self._body = self._source.body_copy()
        return self._body

    @body.setter
    def body(self, value: dict[str, Any]) -> None:
        self._body = value

    @property
    def available(self) -> Available:
        if self._available is None:
            assert self._source is not None
            self._available = self._source.available()
        return self._available

    @property
    def prompt_tokens(self) -> int:
        """Approximate prompt size in tokens, of the body as the client sent it."""
        if self._prompt_tokens is None:
            source = self._source
            self._prompt_tokens = source.prompt_tokens() if source is not None else estimate_prompt_tokens(self.body)
        return self._prompt_tokens

    def __repr__(self) -> str:
        return f"RouteRequest({self.path}, model={self.requested_model!r}, stream={self.stream})"


@dataclass(slots=True)
class Response:
    """A whole answer. `json` (when not None) is sent as the body, else `body`; the
    content type is application/json unless `headers` set one. Also what
    `GatewayClient.execute` returns, with `json` parsed when the answer is JSON."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: Mapping[str, str] | None = None

    def content(self) -> bytes:
        return orjson.dumps(self.json) if self.json is not None else self.body

    def events(self) -> list[dict[str, Any]]:
        """The JSON objects of an SSE body's `data:` lines (`[DONE]` left out)."""
        out: list[dict[str, Any]] = []
        for line in self.body.splitlines():
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out


@dataclass(slots=True)
class StreamResponse:
    """A streamed answer: each dict from `events` is sent as an SSE `data:` line as soon as
    it is produced, then `data: [DONE]` (on Anthropic paths, `event: <type>` lines and no
    [DONE]). An exception from `events` after the first event ends the stream with an SSE
    error event."""

    events: AsyncIterable[Mapping[str, Any]]
    status: int = 200
    headers: Mapping[str, str] | None = None


class Router(ABC):
    """A router plugin. modelway builds one instance per config load (a reload builds new
    ones) with the entry's `config` mapping, sets `id`, and calls `route` for every
    request, within `timeout_ms`. The constructor must not do I/O: `modelway check` builds
    routers too. Open connections in `start` (or lazily) and release them in `close`."""

    id: str = ""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})

    @abstractmethod
    async def route(self, req: RouteRequest) -> RouteDecision | None:
        """A decision, or None to let the next router decide."""

    async def start(self) -> None:
        """Called once inside the event loop before the first request."""
        return None

    async def close(self) -> None:
        """Called once at shutdown."""
        return None


class Executor(ABC):
    """A router that can answer requests itself (`RouteDecision(kind="executor")`).
    `execute` has no timeout of its own: it ends when it answers or the client leaves.

    As SPEC section 6 shows it, a router is an executor simply by defining
    `async def execute(self, req)`: any class with a coroutine `execute` counts as one
    (as `collections.abc` does for its interfaces), so deriving from this class is optional."""

    @classmethod
    def __subclasshook__(cls, other: type) -> Any:  # True, or NotImplemented: ask the usual way
        if cls is Executor and inspect.iscoroutinefunction(getattr(other, "execute", None)):
            return True
        return NotImplemented

    @abstractmethod
    async def execute(self, req: RouteRequest) -> Response | StreamResponse:
        """Answer the request. Raise a `modelway.errors.GatewayError` to answer with that
        error; any other exception is answered 502 and logged."""


class GatewayClient(ABC):
    """The way back into the gateway from an executor: `req.gateway`."""

    @abstractmethod
    async def execute(
        self,
        request: RouteRequest | Mapping[str, Any],
        *,
        path: str | None = None,
        skip_router: str | Iterable[str] | None = None,
    ) -> Response:
        """Run a request through the gateway in-process (no socket) and return its whole
        answer (a stream's SSE bytes are collected; see `Response.events`).

        `request` is a RouteRequest (its path, headers, query and current body are used) or
        a JSON body sent on `path` (default: the path of the request being executed). The
        router that issued the call is always skipped, and so are the ones skipped already
        and any named by `skip_router`, so an executor cannot call itself in a loop. The
        caller's client key applies: a model its key may not use is refused.
        """


# Fields whose text reaches the model, and keys under them that hold binary payloads
# (images, audio, files) rather than text.
PROMPT_FIELDS = ("messages", "prompt", "input", "system", "instructions", "tools", "functions")
NOT_TEXT = frozenset({"image_url", "input_audio", "source", "image", "file", "data"})


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Roughly how many tokens the prompt is: characters of its text / 4, plus 4 per
    message. Good enough to compare with a context window, not to bill."""
    chars = 0
    stack: list[Any] = [body[name] for name in PROMPT_FIELDS if name in body]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            chars += len(node)
        elif isinstance(node, dict):
            stack.extend(v for k, v in node.items() if k not in NOT_TEXT)
        elif isinstance(node, list):
            stack.extend(node)
    messages = body.get("messages")
    overhead = 4 * len(messages) if isinstance(messages, list) else 0
    return (chars + 3) // 4 + overhead
