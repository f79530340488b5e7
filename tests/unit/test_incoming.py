"""The parse stage as a function: an ASGI scope and body in, an Incoming out, and the
consistent-hash key it carries for each `hash_on` source."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelway.config.schema import AuthConfig, HashOn
from modelway.errors import BadRequest, Unauthorized
from modelway.proxy.auth import ClientKeys
from modelway.proxy.incoming import REENTRY, Incoming, Reentry, parse

KEYS = ClientKeys(AuthConfig.model_validate({"keys": [{"name": "team-a", "key": "sk-team-a"}]}))
BODY = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def parsed(
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
    query: bytes = b"",
    body: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Incoming:
    raw = orjson.dumps(BODY if body is None else body)
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("10.0.0.7", 50123),
        **(extra or {}),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return await parse(scope, receive, max_body_bytes=1 << 20, client_keys=KEYS, model_key=("model",))


async def test_a_request_parses_into_the_values_later_stages_read() -> None:
    request = await parsed(
        headers={"Authorization": "Bearer sk-team-a", "X-Trace": "t1", "Content-Type": "application/json"},
        query=b"beta=true",
    )
    assert request.path == "/v1/chat/completions"
    assert request.upstream_path == "chat/completions"
    assert request.dialect == "openai"
    assert request.stream is True
    assert request.original_model == "gpt-4o"
    assert request.payload == BODY
    assert request.client is not None and request.client.name == "team-a"
    assert request.peer == ("10.0.0.7", 50123)
    assert request.query() == {"beta": "true"}
    assert request.skip == frozenset()
    forwarded = dict(request.forward_headers)
    assert forwarded == {b"x-trace": b"t1"}  # no credential, no content-type of the client's


async def test_the_dialect_follows_the_path() -> None:
    body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": "sk-team-a"}
    assert (await parsed("/v1/messages", headers, body=body)).dialect == "anthropic"
    assert (await parsed("/v1/messages/count_tokens", headers, body=body)).dialect == "anthropic"
    assert (await parsed("/v1/embeddings", headers, body={"model": "e", "input": "x"})).dialect == "openai"
    assert (await parsed("/v1/responses", headers, body={"model": "r", "input": "x"})).dialect == "responses"


async def test_refusals_come_in_parse_order() -> None:
    with pytest.raises(Unauthorized):
        await parsed(headers={"Authorization": "Bearer wrong"})
    with pytest.raises(BadRequest, match="'stream' must be a boolean"):  # fields before the key
        await parsed(headers={"Authorization": "Bearer wrong"}, body={**BODY, "stream": "yes"})
    with pytest.raises(BadRequest, match="'model' must be a string"):
        await parsed(headers={"Authorization": "Bearer sk-team-a"}, body={**BODY, "model": 4})


async def test_a_re_entered_request_carries_its_callers_key_and_routers_to_skip() -> None:
    caller = KEYS.identify("Bearer sk-team-a", None)
    request = await parsed(extra={REENTRY: Reentry(frozenset({"search"}), caller)})  # no key header needed
    assert request.client is caller
    assert request.skip == frozenset({"search"})


async def test_hash_keys_by_source() -> None:
    request = await parsed(
        headers={"Authorization": "Bearer sk-team-a", "X-Session": "s-42", "Cookie": "theme=dark; sid=c-7"},
        query=b"user=u-9&empty=",
    )
    assert request.hash_key(HashOn(source="header", name="X-Session")) == "s-42"
    assert request.hash_key(HashOn(source="header", name="x-missing")) is None
    assert request.hash_key(HashOn(source="query", name="user")) == "u-9"
    assert request.hash_key(HashOn(source="query", name="empty")) is None
    assert request.hash_key(HashOn(source="cookie", name="sid")) == "c-7"
    assert request.hash_key(HashOn(source="cookie", name="nope")) is None
    assert request.hash_key(HashOn(source="consumer")) == "team-a"
    assert request.hash_key(HashOn(source="client_ip")) == "10.0.0.7"
