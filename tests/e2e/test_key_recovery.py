"""A pooled key answered 401/403 is out of rotation, but not for good (issue 16): a client
could have caused that answer, and one client must not be able to knock out every key of
a pool until a restart. The key is tried again after `routing.cooldown.key_retry_s`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.http import Reply, post_json
from support.upstream import Behaviour, Upstream

CHAT = {"model": "pooled", "messages": [{"role": "user", "content": "hi"}]}
RETRY_S = 0.4


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [
            {
                "name": "pool",
                "kind": "openai",
                "base_url": f"{upstream_a.url}/v1",
                "keys": [{"header": {"Authorization": f"Bearer k{i}"}} for i in range(2)],
            }
        ],
        "models": [{"name": "pooled", "deployments": [{"provider": "pool"}]}],
        "routing": {"retries": 1, "cooldown": {"key_retry_s": RETRY_S}},
    }
    with Gateway(config) as gw:
        yield gw


def chat(gateway: Gateway, headers: dict[str, str] | None = None) -> Reply:
    return post_json(gateway.url, "/v1/chat/completions", CHAT, headers)


def test_a_bogus_organization_header_cannot_disable_the_pool(gateway: Gateway, upstream_a: Upstream) -> None:
    # A hosted provider answers 401 to an organization the key does not belong to.
    upstream_a.reset(Behaviour(header_status={"OpenAI-Organization": 401}))
    for _ in range(3):
        assert chat(gateway, {"OpenAI-Organization": "org-bogus"}).status == 200
    assert chat(gateway).status == 200
    assert "disabled" not in gateway.logs()


def test_keys_rejected_by_the_upstream_are_tried_again_and_come_back(
    gateway: Gateway, upstream_a: Upstream
) -> None:
    upstream_a.reset(Behaviour(status=401))
    rejected = chat(gateway)
    assert rejected.status == 502, rejected.body  # both keys tried, both answered 401
    assert [r.headers["Authorization"] for r in upstream_a.received] == ["Bearer k0", "Bearer k1"]
    upstream_a.reset()  # the upstream accepts again
    down = chat(gateway)
    assert down.status == 503  # every key is out until its backoff has passed
    assert int(down.headers["retry-after"]) >= 1
    assert upstream_a.received == []
    time.sleep(RETRY_S + 0.1)
    statuses = [chat(gateway).status for _ in range(4)]
    assert statuses == [200] * 4
    used = [r.headers["Authorization"] for r in upstream_a.received]
    assert sorted(set(used)) == ["Bearer k0", "Bearer k1"]  # both back in rotation
    assert "key #0 enabled again" in gateway.logs()


def test_a_key_that_keeps_failing_waits_twice_as_long_each_time(gateway: Gateway, upstream_a: Upstream) -> None:
    time.sleep(RETRY_S + 0.1)  # whatever an earlier test left disabled is due again
    upstream_a.reset(Behaviour(token_status={"Bearer k1": 403}))
    for _ in range(3):
        assert chat(gateway).status == 200
    time.sleep(RETRY_S + 0.1)  # k1 is tried once more after its backoff, and fails again
    for _ in range(3):
        assert chat(gateway).status == 200
    tries = [r for r in upstream_a.received if r.headers["Authorization"] == "Bearer k1"]
    assert len(tries) == 2
    time.sleep(RETRY_S + 0.1)  # not due yet: its backoff doubled
    for _ in range(3):
        assert chat(gateway).status == 200
    assert len([r for r in upstream_a.received if r.headers["Authorization"] == "Bearer k1"]) == 2
