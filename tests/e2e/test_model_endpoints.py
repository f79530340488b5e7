"""GET /v1/models/{id} (the openai SDK's models.retrieve) and the root probe `GET /`, `HEAD /`
(Claude Code sends `HEAD /` before its first request)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from support.gateway import Gateway
from support.http import request
from support.upstream import Upstream

import modelway


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Gateway, Upstream]]:
    upstream = Upstream("disc", models=["org/slashed-model", "plain-model"]).start()
    config = {
        "providers": [{"name": "disc", "kind": "vllm", "base_url": f"{upstream.url}/v1", "discover": True}],
        "models": [{"name": "public-one", "deployments": [{"provider": "disc", "model": "plain-model"}]}],
        "auth": {"keys": [{"name": "limited", "key": "sk-limited", "models": ["public-*"]},
                          {"name": "all", "key": "sk-all"}]},
    }
    with Gateway(config) as gateway:
        yield gateway, upstream
    upstream.stop()


def test_models_retrieve_with_the_openai_sdk(served: tuple[Gateway, Upstream]) -> None:
    gateway, _ = served
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-all", max_retries=0)
    public = client.models.retrieve("public-one")
    assert (public.id, public.object, public.owned_by) == ("public-one", "model", "modelway")
    discovered = client.models.retrieve("org/slashed-model")  # an id with a slash: the rest of the path
    assert discovered.id == "org/slashed-model"
    assert discovered.owned_by == "disc"
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        client.models.retrieve("no-such-model")


def test_models_retrieve_follows_the_keys_allowlist(served: tuple[Gateway, Upstream]) -> None:
    gateway, _ = served
    limited = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-limited", max_retries=0)
    assert limited.models.retrieve("public-one").id == "public-one"
    with pytest.raises(openai.NotFoundError):
        limited.models.retrieve("plain-model")  # exists, but not for this key: not disclosed
    assert request(gateway.url, "GET", "/models/public-one").status == 401  # keys are enforced
    plain = request(gateway.url, "GET", "/models/public-one", headers={"Authorization": "Bearer sk-all"})
    assert plain.status == 200 and plain.json()["id"] == "public-one"


def test_a_huge_unknown_id_is_clipped_in_the_error(served: tuple[Gateway, Upstream]) -> None:
    gateway, _ = served
    reply = request(gateway.url, "GET", "/v1/models/" + "x" * 5000, headers={"Authorization": "Bearer sk-all"})
    assert reply.status == 404
    assert len(reply.body) < 1000


def test_root_answers_get_and_head(served: tuple[Gateway, Upstream]) -> None:
    gateway, _ = served
    got = request(gateway.url, "GET", "/")
    assert got.status == 200
    assert got.json() == {"name": "modelway", "version": modelway.__version__}
    head = request(gateway.url, "HEAD", "/")
    assert head.status == 200
    assert head.body == b""
