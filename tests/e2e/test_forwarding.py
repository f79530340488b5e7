"""What reaches a provider, and what comes back from it (SPEC section 5): the path never
leaves the provider's base URL, the client's credentials, identity, hop-by-hop headers
and query string stay behind, and an upstream's cookies are not relayed.

Each case was a hole found by probing (issue 16); the upstream records what it got."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from support.gateway import Gateway
from support.http import post_json
from support.upstream import Behaviour, Upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [
            {
                "name": "a",
                "kind": "openai-compatible",
                "base_url": f"{upstream_a.url}/v1",
                "auth": {"header": {"Authorization": "Bearer token-a"}, "query": {"key": "provider-secret"}},
            }
        ],
        "models": [{"name": "m", "deployments": [{"provider": "a"}]}],
    }
    with Gateway(config) as gw:
        yield gw


@pytest.mark.parametrize(
    "path",
    [
        "/v1/%252e%252e/%252e%252e/admin",  # decoded once: %2e%2e, which a URL library resolved
        "/v1/%252E%252E/admin",
        "/v1/%2e%2e/admin",
        "/v1/.%2e/admin",
        "/v1/%2E./admin",
        "/v1/%25%32%65%25%32%65/admin",  # the hex digits encoded too
        "/v1/%25252e%25252e/admin",  # three layers
        "/v1/..%2fadmin",
        "/v1/chat%2F..%2F..%2Fadmin",
        "/v1/..%5cadmin",
        "/v1/%255c..%255cadmin",
        "/v1/..\\admin",
        "/v1/../admin",
        "/v1/./chat/completions",
    ],
)
def test_a_path_that_could_leave_the_base_url_is_400(gateway: Gateway, upstream_a: Upstream, path: str) -> None:
    reply = post_json(gateway.url, path, CHAT)
    assert reply.status == 400, (path, reply.status, upstream_a.received[-1:])
    error = reply.json()["error"]
    assert error["code"] == "invalid_path"
    assert "path" in error["message"]
    assert any(word in error["message"] for word in ("'.'", "'/'", "backslash", "'\\\\'")), error["message"]
    assert upstream_a.received == []


def test_an_encoded_path_reaches_the_provider_under_its_base_url(gateway: Gateway, upstream_a: Upstream) -> None:
    reply = post_json(gateway.url, "/v1/some%20thing/a%3Fb", CHAT)
    assert reply.status == 200, reply.body
    (seen,) = upstream_a.received
    assert seen.path == "/v1/some thing/a?b"  # an encoded '?' stays in the path
    assert seen.raw_path == "/v1/some%20thing/a%3Fb?key=provider-secret"
    assert seen.query == {"key": "provider-secret"}


def test_dots_inside_a_segment_are_fine(gateway: Gateway, upstream_a: Upstream) -> None:
    reply = post_json(gateway.url, "/v1/files/a..b/x%2ey", CHAT)
    assert reply.status == 200, reply.body
    assert upstream_a.received[-1].raw_path.startswith("/v1/files/a..b/x.y?")


# Each carries a credential or names the client's account to a provider (SPEC section 5).
CLIENT_CREDENTIALS = {
    "Authorization": "Bearer client-cred-01",
    "x-api-key": "client-cred-02",
    "api-key": "client-cred-03",
    "x-goog-api-key": "client-cred-04",
    "anthropic-api-key": "client-cred-05",
    "Ocp-Apim-Subscription-Key": "client-cred-06",
    "X-Auth-Token": "client-cred-07",
    "Authentication": "client-cred-08",
    "Proxy-Authorization": "Basic client-cred-09",
    "Cookie": "session=client-cred-10",
    "OpenAI-Organization": "org-client-cred-11",
    "OpenAI-Project": "proj-client-cred-12",
    "x-amz-security-token": "client-cred-13",
    "x-goog-user-project": "client-cred-14",
}


def test_client_credentials_identity_and_query_never_reach_the_provider(
    gateway: Gateway, upstream_a: Upstream
) -> None:
    headers = {**CLIENT_CREDENTIALS, "x-trace-id": "trace-1", "anthropic-version": "2023-06-01"}
    reply = post_json(gateway.url, "/v1/chat/completions?api_key=client-cred-15&key=client-cred-16", CHAT, headers)
    assert reply.status == 200, reply.body
    (seen,) = upstream_a.received
    assert "client-cred" not in str(seen.headers) + seen.raw_path
    got = {name.lower() for name in seen.headers}
    assert not got & {name.lower() for name in CLIENT_CREDENTIALS if name != "Authorization"}
    assert seen.headers["Authorization"] == "Bearer token-a"
    assert seen.query == {"key": "provider-secret"}  # auth.query only: the client's query stays behind
    assert seen.headers["x-trace-id"] == "trace-1"  # other headers pass
    assert seen.headers["anthropic-version"] == "2023-06-01"


def test_headers_named_in_connection_stay_behind_both_ways(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(extra_headers={
        "Set-Cookie": "sid=upstream-session; Path=/",
        "X-Upstream-Hop": "1",
        "Connection": "X-Upstream-Hop",
        "x-kept": "yes",
    }))
    headers = {"Connection": "keep-alive, X-Client-Hop", "X-Client-Hop": "hop-value", "x-trace-id": "t"}
    reply = post_json(gateway.url, "/v1/chat/completions", CHAT, headers)
    assert reply.status == 200, reply.body
    (seen,) = upstream_a.received
    assert "x-client-hop" not in {name.lower() for name in seen.headers}
    assert seen.headers["x-trace-id"] == "t"
    assert "set-cookie" not in reply.headers
    assert "x-upstream-hop" not in reply.headers
    assert reply.headers["x-kept"] == "yes"


def test_repeated_connection_headers_are_all_honoured(gateway: Gateway, upstream_a: Upstream) -> None:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(gateway.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("POST", "/v1/chat/completions", skip_accept_encoding=True)
        for name, value in [("Content-Type", "application/json"), ("Connection", "X-Client-Hop"),
                            ("Connection", "keep-alive"), ("X-Client-Hop", "hop-value")]:
            conn.putheader(name, value)
        body = orjson.dumps(CHAT)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert "x-client-hop" not in {name.lower() for name in upstream_a.received[-1].headers}
