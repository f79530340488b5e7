"""A wrong method is a 405 naming the allowed ones in `Allow` (RFC 9110 15.5.6), and what a
client sent is echoed in an error only clipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Upstream


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [{"name": "a", "kind": "openai-compatible", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "m", "deployments": [{"provider": "a"}]}],
    }
    with Gateway(config) as gw:
        yield gw


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/chat/completions"), ("PUT", "/v1/embeddings"), ("DELETE", "/chat/completions"),
     ("PATCH", "/v1/some/new/api")],
)
def test_a_post_endpoint_answers_other_methods_405(gateway: Gateway, method: str, path: str) -> None:
    reply = request(gateway.url, method, path)
    assert reply.status == 405, reply.body
    assert reply.headers["allow"] == "POST"
    error = reply.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert method in error["message"] and "POST" in error["message"]


def test_head_on_a_post_endpoint_is_405_too(gateway: Gateway) -> None:
    reply = request(gateway.url, "HEAD", "/v1/chat/completions")
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"


def test_the_messages_endpoint_answers_405_anthropic_shaped(gateway: Gateway) -> None:
    reply = request(gateway.url, "GET", "/v1/messages")
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    assert reply.json()["type"] == "error"


@pytest.mark.parametrize("path", ["/metrics", "/health", "/ready", "/v1/models"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_get_endpoint_answers_other_methods_405(gateway: Gateway, method: str, path: str) -> None:
    reply = request(gateway.url, method, path, b"{}")
    assert reply.status == 405, reply.body
    assert reply.headers["allow"] == "GET, HEAD"


def test_a_huge_model_name_is_clipped_in_the_404(gateway: Gateway) -> None:
    name = "x" * 1_000_000
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": name, "messages": [{"role": "user"}]})
    assert reply.status == 404
    message = reply.json()["error"]["message"]
    assert len(reply.body) < 400
    assert "x" * 100 + "…" in message


def test_a_huge_path_is_clipped_in_the_405(gateway: Gateway) -> None:
    reply = request(gateway.url, "GET", "/v1/" + "p" * 5000)
    assert reply.status == 405
    assert len(reply.body) < 400
