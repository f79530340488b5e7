"""Every configured secret is redacted from all log output as a last line of defence, in both
log formats: canaries planted in every secret field of the config, then logged on purpose by a
router plugin (message and traceback), never reach stdout or stderr."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.gateway import Gateway
from support.http import post_json

TESTS = Path(__file__).resolve().parents[1]
CANARIES = {
    "provider_token": "canary-provider-token-1a2b",
    "pool_key": "canary-pool-key-3c4d",
    "query_key": "canary-query-key-5e6f",
    "static_header": "canary-static-header-7a8b",
    "client_key": "canary-client-key-9c0d",
    "admin_key": "canary-admin-key-e1f2",
    "redis_password": "canary-redis-password-a3b4",
}


def config() -> dict[str, object]:
    token, query = CANARIES["provider_token"], CANARIES["query_key"]
    return {
        "state": {"redis_url": f"redis://:{CANARIES['redis_password']}@127.0.0.1:6390/0"},
        "auth": {"keys": [{"name": "team", "key": CANARIES["client_key"]}], "admin_key": CANARIES["admin_key"]},
        "providers": [
            {"name": "sim", "kind": "simulated",
             "auth": {"header": {"Authorization": f"Bearer {token}"}, "query": {"api_key": query}},
             "headers": {"x-static": CANARIES["static_header"]}},
            {"name": "pool", "kind": "simulated", "keys": [{"header": {"x-api-key": CANARIES["pool_key"]}}]},
        ],
        "models": [{"name": "m", "deployments": [{"provider": "sim"}, {"provider": "pool"}]}],
        "routing": {"routers": [{"id": "leaky", "use": "support.leaky_router:LeakyRouter"}]},
    }


@pytest.mark.parametrize(("fmt", "workers"), [("text", 1), ("json", 1), ("json", 2)])
def test_no_secret_reaches_the_logs(fmt: str, workers: int) -> None:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
           "MODELWAY_LOG_FORMAT": fmt}
    with Gateway(config(), env=env, workers=workers) as gateway:
        for name, canary in CANARIES.items():
            reply = post_json(gateway.url, "/v1/chat/completions",
                              {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                              headers={"Authorization": f"Bearer {CANARIES['client_key']}", "x-leak": canary})
            assert reply.status == 200, (name, reply.body)
            assert canary not in reply.body.decode()
        gateway.stop()
        logs = gateway.logs()
    assert logs.count("leaking [redacted] on purpose") == len(CANARIES)  # the router did log, redacted
    assert logs.count("an exception that carries [redacted]") == len(CANARIES)
    for name, canary in CANARIES.items():
        assert canary not in logs, name
    if fmt == "json":
        lines = [line for line in logs.splitlines() if line.strip()]
        assert lines
        for line in lines:
            json.loads(line)  # every line of the process's output is one JSON object
