"""An executor written per SPEC section 6 (a Router that defines `execute`) answers requests."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from support.gateway import Gateway
from support.http import post_json

TESTS = Path(__file__).resolve().parents[1]


def test_a_router_that_defines_execute_is_an_executor() -> None:
    config = {
        "providers": [{"name": "sim", "kind": "simulated"}],
        "models": [{"name": "m", "deployments": [{"provider": "sim"}]}],
        "routing": {"routers": [{"id": "spec", "use": "support.spec_executor:SpecExecutor",
                                 "config": {"answer": "per SPEC"}}]},
    }
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    with Gateway(config, env=env) as gateway:
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "m", "messages": [{"role": "user",
                                                                                               "content": "hi"}]})
        assert reply.status == 200, reply.body
        assert reply.json() == {"object": "chat.completion", "model": "m", "answer": "per SPEC"}
        assert "does not implement" not in gateway.logs()
        deadline = time.monotonic() + 5
        while '"provider":"router:spec"' not in gateway.logs():  # its access-log line, batched
            assert time.monotonic() < deadline, gateway.logs()
            time.sleep(0.05)
        (line,) = [json.loads(x) for x in gateway.logs().splitlines() if '"provider":"router:spec"' in x]
        assert (line["status"], line["model"], line["error"]) == (200, "m", None)
