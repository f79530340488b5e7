"""The router chain end to end: the real server with scripted routers (support/routers.py),
each told what to do by an `x-script-<id>` request header, and upstream servers of our own
that record what reaches them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from support.gateway import Gateway
from support.http import Reply, post_json, request
from support.upstream import Behaviour, Upstream

TESTS = Path(__file__).resolve().parents[1]
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
SCRIPTED = "support.routers:ScriptedRouter"
ORDER = ["first", "alpha", "beta", "patient", "last"]


def plugin_env() -> dict[str, str]:
    """The gateway subprocess imports the test routers from tests/."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


def routers_config(a: Upstream, b: Upstream) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "vllm-a", "kind": "vllm", "base_url": f"{a.url}/v1"},
            {"name": "vllm-b", "kind": "vllm", "base_url": f"{b.url}/v1"},
            {"name": "slow", "kind": "vllm", "base_url": f"{b.url}/v1"},
            {"name": "idle", "kind": "vllm", "base_url": f"{b.url}/v1"},  # no deployment: routers only
        ],
        "models": [
            {"name": "chat-a", "deployments": [{"provider": "vllm-a", "model": "real-a"}]},
            {"name": "chat-b", "deployments": [{"provider": "vllm-b", "model": "real-b"}]},
            {"name": "busy", "deployments": [{"provider": "slow", "model": "busy-real", "max_concurrency": 1}]},
        ],
        "model_mapping": {"rules": {"gpt-4o": "chat-a"}},
        "routing": {
            # Listed out of order: the chain sorts by priority (descending), then id.
            "routers": [
                {"id": "last", "use": SCRIPTED, "priority": -5},
                {"id": "beta", "use": SCRIPTED, "priority": 10},
                {"id": "patient", "use": SCRIPTED, "timeout_ms": 500},
                {"id": "first", "use": SCRIPTED, "priority": 100},
                {"id": "alpha", "use": SCRIPTED, "priority": 10},
                {
                    "id": "rules",
                    "use": "modelway.routers.rules:RuleRouter",
                    "priority": -10,
                    "config": {"rules": [{"when": {"header": {"x-rule": "on"}}, "model": "chat-b"}]},
                },
            ]
        },
    }


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, upstream_b: Upstream) -> Iterator[Gateway]:
    with Gateway(routers_config(upstream_a, upstream_b), env=plugin_env()) as gw:
        yield gw


def chat(gateway: Gateway, scripts: dict[str, str] | None = None, path: str = "/v1/chat/completions",
         body: dict[str, Any] | None = None, debug: bool = True, headers: dict[str, str] | None = None) -> Reply:
    sent = {f"x-script-{router}": script for router, script in (scripts or {}).items()}
    if debug:
        sent["x-modelway-debug"] = "1"
    return post_json(gateway.url, path, body or {"model": "chat-a", **CHAT}, {**sent, **(headers or {})})


def route_of(reply: Reply) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(reply.headers["x-modelway-route"])
    return parsed


def verdicts(reply: Reply) -> list[tuple[str, str]]:
    return [(v["id"], v["verdict"]) for v in route_of(reply)["routers"]]


def test_routers_run_by_priority_then_id_and_declines_fall_through(gateway: Gateway, upstream_a: Upstream) -> None:
    reply = chat(gateway)
    assert reply.status == 200
    assert verdicts(reply) == [(r, "decline") for r in [*ORDER, "rules"]]
    decision = route_of(reply)["decision"]
    assert decision == {"by": "resolution", "model": "chat-a", "route": "chat-a", "candidates": ["vllm-a/real-a"]}
    assert all(v["ms"] >= 0 for v in route_of(reply)["routers"])
    assert upstream_a.received[0].body["model"] == "real-a"


def test_first_decision_wins_and_ties_go_to_the_lower_id(gateway: Gateway, upstream_b: Upstream) -> None:
    reply = chat(gateway, {"alpha": "model chat-b", "beta": "model busy", "last": "model busy"})
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "vllm-b"
    assert verdicts(reply) == [("first", "decline"), ("alpha", "model")]
    assert route_of(reply)["decision"]["by"] == "alpha"
    assert upstream_b.received[0].body["model"] == "real-b"


def test_exception_is_logged_and_the_next_router_runs(gateway: Gateway) -> None:
    reply = chat(gateway, {"first": "raise", "alpha": "model chat-b"})
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "vllm-b"
    (first, alpha) = route_of(reply)["routers"]
    assert first["verdict"] == "error"
    assert first["reason"] == "raised RuntimeError: first was told to fail"
    assert alpha["verdict"] == "model"
    logs = wait_for_log(gateway, "first was told")
    assert "router 'first' skipped: raised RuntimeError: first was told to fail" in logs
    metrics = request(gateway.url, "GET", "/metrics").body.decode()
    counted = [line for line in metrics.splitlines() if line.startswith('modelway_router_errors_total{router="first"}')]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1


def wait_for_log(gateway: Gateway, needle: str) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logs = gateway.logs()
        if needle in logs:
            return logs
        time.sleep(0.05)
    return gateway.logs()


def test_timeout_default_50ms_then_next_router(gateway: Gateway) -> None:
    started = time.monotonic()
    reply = chat(gateway, {"first": "sleep 1000 model chat-b"})
    assert time.monotonic() - started < 0.8  # not waiting for the sleeping router
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "vllm-a"
    first = route_of(reply)["routers"][0]
    assert first["verdict"] == "error" and first["reason"] == "timed out after 50 ms"
    assert 45 <= first["ms"] < 500
    assert "router 'first' skipped: timed out after 50 ms" in wait_for_log(gateway, "timed out after 50 ms")


def test_timeout_is_configurable_per_router(gateway: Gateway) -> None:
    reply = chat(gateway, {"patient": "sleep 120 model chat-b", "alpha": "sleep 120 model busy"})
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "vllm-b"
    found = {v["id"]: v for v in route_of(reply)["routers"]}
    assert found["alpha"]["verdict"] == "error"  # 50 ms default
    assert found["patient"]["verdict"] == "model" and found["patient"]["ms"] >= 100


def test_garbage_decision_is_an_error(gateway: Gateway) -> None:
    reply = chat(gateway, {"first": "garbage"})
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "vllm-a"
    first = route_of(reply)["routers"][0]
    assert first == {**first, "verdict": "error", "reason": "returned str instead of a RouteDecision or None"}


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("model nope", "decided unknown model 'nope'"),
        ("deployment nowhere", "decided unknown provider 'nowhere'"),
        ("executor ghost", "decided unknown executor router 'ghost'"),
        ("executor rules", "decided executor 'rules', which does not implement Executor.execute"),
    ],
)
def test_unknown_targets_are_errors(gateway: Gateway, upstream_a: Upstream, script: str, reason: str) -> None:
    reply = chat(gateway, {"first": script})
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "vllm-a"
    assert route_of(reply)["routers"][0]["reason"] == reason
    assert len(upstream_a.received) == 1


def test_unavailable_targets_are_errors(gateway: Gateway, upstream_b: Upstream) -> None:
    upstream_b.reset(Behaviour(delay_before_headers_s=0.8))
    holder = threading.Thread(target=chat, args=(gateway, {"first": "model busy"}))
    holder.start()  # takes the one slot of busy's only deployment (max_concurrency: 1)
    try:
        deadline = time.monotonic() + 5
        while not upstream_b.received and time.monotonic() < deadline:
            time.sleep(0.02)
        reply = chat(gateway, {"first": "model busy", "alpha": "deployment slow", "beta": "executor"})
        assert reply.status == 200
        reasons = {v["id"]: v.get("reason") for v in route_of(reply)["routers"]}
        assert reasons["first"] == "decided model 'busy', which has no available deployment"
        assert reasons["alpha"] == "decided provider 'slow', which has no available deployment"
        assert reply.headers["x-modelway-router"] == "beta"
        seen = reply.json()["seen"]
        assert "busy" not in seen["models"] and "slow" not in seen["providers"]
    finally:
        holder.join(10)


def test_deployment_decision_runs_target_model_and_keeps_the_requested_one(
    gateway: Gateway, upstream_b: Upstream
) -> None:
    reply = chat(gateway, {"first": "deployment vllm-b custom-target"})
    assert reply.status == 200
    (seen,) = upstream_b.received
    assert seen.body["model"] == "custom-target"
    assert seen.body["messages"] == CHAT["messages"]
    assert reply.headers["x-modelway-provider"] == "vllm-b"
    assert reply.headers["x-modelway-model"] == "custom-target"
    assert reply.json()["model"] == "custom-target"  # response_model: upstream (the default)
    decision = route_of(reply)["decision"]
    assert decision["model"] == "chat-a"  # what logs and metrics record
    assert decision["provider"] == "vllm-b" and decision["target_model"] == "custom-target"
    assert decision["candidates"] == ["vllm-b/custom-target"]


def test_deployment_without_target_model_sends_the_requested_name(gateway: Gateway, upstream_b: Upstream) -> None:
    reply = chat(gateway, {"first": "deployment idle"}, body={"model": "gpt-4o", **CHAT})
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "idle"
    assert upstream_b.received[0].body["model"] == "chat-a"  # the name after model_mapping


def test_deployment_decision_streams(gateway: Gateway, upstream_b: Upstream) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="chat-a", stream=True, extra_headers={"x-script-first": "deployment vllm-b streamed"}, **CHAT  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert {c.model for c in chunks} == {"streamed"}
    assert upstream_b.received[0].body["stream"] is True


def test_executor_answers_without_upstream(gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="chat-a", extra_headers={"x-script-alpha": "echo"}, **CHAT  # type: ignore[arg-type]
    )
    assert raw.parse().choices[0].message.content == "answered by alpha"
    assert raw.headers["x-modelway-router"] == "alpha"
    assert raw.headers["x-executor"] == "alpha"
    assert raw.headers["content-type"] == "application/json"
    assert upstream_a.received == [] and upstream_b.received == []


def test_executor_streams_without_upstream(gateway: Gateway, upstream_a: Upstream) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="chat-a", stream=True, extra_headers={"x-script-alpha": "echo"}, **CHAT  # type: ignore[arg-type]
    ) as raw:
        assert raw.headers["content-type"] == "text/event-stream"
        assert raw.headers["x-modelway-router"] == "alpha"
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse())
    assert text == "alpha-0 alpha-1 alpha-2 "
    assert upstream_a.received == []
    reply = chat(gateway, {"alpha": "echo"}, body={"model": "chat-a", "stream": True, **CHAT}, debug=False)
    assert reply.body.endswith(b"data: [DONE]\n\n")


def test_executor_named_by_another_router(gateway: Gateway) -> None:
    reply = chat(gateway, {"first": "executor beta"})
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == "answered by beta"
    assert route_of(reply)["decision"] == {"by": "first", "kind": "executor", "model": "chat-a", "executor": "beta"}


def test_executor_failures(gateway: Gateway) -> None:
    reply = chat(gateway, {"alpha": "fail"})
    assert reply.status == 502
    assert reply.json()["error"]["code"] == "executor_failed"
    assert "broke" not in reply.error_message  # the exception's text stays in the log
    assert "router 'alpha' executor failed: RuntimeError: the executor broke" in wait_for_log(gateway, "executor broke")
    reply = chat(gateway, {"alpha": "fail-stream"}, body={"model": "chat-a", "stream": True, **CHAT})
    assert reply.status == 200
    events = [line for line in reply.body.split(b"\n\n") if line]
    assert b"alpha-0" in events[0]
    assert json.loads(events[-1].removeprefix(b"data: "))["error"]["code"] == "executor_failed"
    assert b"[DONE]" not in reply.body


def test_reentry_skips_the_issuing_router(gateway: Gateway, upstream_a: Upstream) -> None:
    # Both alpha and beta re-enter; each re-entered request skips every issuer so far.
    reply = chat(gateway, {"alpha": "reenter", "beta": "reenter"})
    assert reply.status == 200
    assert reply.headers["x-reentered-by"] == "alpha"
    (seen,) = upstream_a.received
    assert [m["content"] for m in seen.body["messages"]] == ["added by beta", "added by alpha", "hi"]
    assert reply.json()["model"] == "real-a"


def test_reentry_runs_the_chain_again_without_the_issuer(gateway: Gateway, upstream_b: Upstream) -> None:
    reply = chat(gateway, {"first": "reenter", "alpha": "model chat-b"})
    assert reply.status == 200
    assert reply.headers["x-reentered-by"] == "first"
    assert upstream_b.received[0].body["messages"][0] == {"role": "system", "content": "added by first"}


def test_client_disconnect_cancels_the_executor_and_its_reentered_call(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(delay_before_headers_s=1.5))
    body = json.dumps({"model": "chat-a", **CHAT}).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-script-alpha: reenter\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 3
    while upstream_a.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream_a.cancelled == 1
    assert upstream_a.received[0].body["messages"][0]["content"] == "added by alpha"


def test_routers_cannot_change_the_request(gateway: Gateway, upstream_a: Upstream) -> None:
    body = {"model": "gpt-4o", "metadata": {"tier": "gold"}, **CHAT}
    reply = chat(gateway, {"first": "mutate", "alpha": "mutate", "beta": "echo"}, body=body,
                 path="/v1/chat/completions?region=eu")
    assert verdicts(reply)[:2] == [("first", "decline"), ("alpha", "decline")]
    seen = reply.json()["seen"]
    assert seen["body"] == body
    assert seen["requested_model"] == "chat-a" and seen["original_model"] == "gpt-4o"
    assert seen["stream"] is False
    assert "x-injected" not in seen["headers"] and seen["query"] == {"region": "eu"}
    reply = chat(gateway, {"first": "mutate"}, body=body)
    assert reply.status == 200
    (sent,) = upstream_a.received
    assert sent.body == {**body, "model": "real-a"}


def test_route_request_fields(gateway: Gateway) -> None:
    reply = chat(gateway, {"alpha": "echo"}, body={"model": "gpt-4o", **CHAT},
                 headers={"Authorization": "Bearer client-secret", "X-Team": "Blue"})
    seen = reply.json()["seen"]
    assert seen["source_format"] == "openai" and seen["path"] == "/v1/chat/completions"
    assert seen["requested_model"] == "chat-a" and seen["original_model"] == "gpt-4o"
    assert seen["headers"]["x-team"] == "Blue"
    assert "authorization" not in seen["headers"] and "client-secret" not in reply.body.decode()
    assert seen["client"] is None  # an open gateway
    assert seen["providers"] == ["idle", "slow", "vllm-a", "vllm-b"]
    assert seen["models"] == ["busy", "chat-a", "chat-b"]
    assert seen["prompt_tokens"] == 6  # "user" + "hi": 6 characters → 2 tokens, plus 4 for the message


def test_count_tokens_runs_the_chain(gateway: Gateway, upstream_b: Upstream) -> None:
    body = {"model": "chat-a", "messages": [{"role": "user", "content": "count me"}]}
    reply = chat(gateway, {"first": "deployment vllm-b claude-counter"}, path="/v1/messages/count_tokens", body=body)
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "vllm-b"  # where the router sent it
    assert reply.json()["input_tokens"] > 0  # a vllm provider cannot count Anthropic tokens: estimated
    assert upstream_b.received == []
    reply = chat(gateway, {"first": "echo"}, path="/v1/messages/count_tokens", body=body)
    assert reply.json()["seen"]["source_format"] == "anthropic"


def test_routers_see_responses_requests_as_such(gateway: Gateway) -> None:
    reply = chat(gateway, {"first": "echo"}, path="/v1/responses", body={"model": "chat-a", "input": "hi"})
    assert reply.json()["seen"]["source_format"] == "responses"


def test_debug_header_only_when_asked(gateway: Gateway) -> None:
    reply = chat(gateway, {"alpha": "model chat-b"}, debug=False)
    assert reply.status == 200
    assert "x-modelway-route" not in reply.headers
    reply = chat(gateway, {"alpha": "echo"}, debug=False)
    assert "x-modelway-route" not in reply.headers


def test_debug_header_on_errors_after_routing(gateway: Gateway) -> None:
    reply = chat(gateway, {"first": "model nope"}, body={"model": "unknown-model", **CHAT})
    assert reply.status == 404
    assert route_of(reply)["decision"] == {"by": "resolution", "model": "unknown-model"}


def test_rule_router_in_the_chain(gateway: Gateway, upstream_b: Upstream) -> None:
    reply = chat(gateway, headers={"x-rule": "on"})
    assert reply.headers["x-modelway-provider"] == "vllm-b"
    assert route_of(reply)["routers"][-1] == {**route_of(reply)["routers"][-1], "id": "rules", "verdict": "model",
                                              "target": "chat-b", "reason": "rule #0"}


# A second gateway: client keys and response_model: requested.


@pytest.fixture(scope="module")
def keyed(upstream_a: Upstream, upstream_b: Upstream) -> Iterator[Gateway]:
    config = routers_config(upstream_a, upstream_b)
    config["server"] = {"response_model": "requested"}
    config["auth"] = {
        "keys": [
            {"name": "team-a", "key": "sk-a", "models": ["chat-a"], "debug": True},
            {"name": "quiet", "key": "sk-quiet"},
        ]
    }
    with Gateway(config, env=plugin_env()) as gw:
        yield gw


def test_response_model_requested_hides_the_target_model(keyed: Gateway, upstream_b: Upstream) -> None:
    reply = chat(keyed, {"first": "deployment vllm-b custom-target"}, headers={"Authorization": "Bearer sk-a"})
    assert reply.status == 200
    assert upstream_b.received[0].body["model"] == "custom-target"
    assert reply.json()["model"] == "chat-a"


def test_model_decisions_respect_the_client_key(keyed: Gateway) -> None:
    reply = chat(keyed, {"first": "model chat-b", "alpha": "echo"}, headers={"Authorization": "Bearer sk-a"})
    assert reply.status == 200
    first = route_of(reply)["routers"][0]
    assert first["reason"] == "decided model 'chat-b', which key 'team-a' may not use"
    assert reply.json()["seen"]["client"] == "team-a"


def test_reentry_keeps_the_client_key(keyed: Gateway, upstream_a: Upstream) -> None:
    # Re-entered without credentials of its own, the call still runs as team-a, and still may not use chat-b.
    reply = chat(keyed, {"first": "reenter", "alpha": "model chat-b"}, headers={"Authorization": "Bearer sk-a"})
    assert reply.status == 200
    assert reply.headers["x-reentered-by"] == "first"
    assert upstream_a.received[0].body["messages"][0]["content"] == "added by first"


def test_debug_header_needs_a_debug_key(keyed: Gateway) -> None:
    reply = chat(keyed, {"alpha": "model chat-b"}, headers={"Authorization": "Bearer sk-quiet"})
    assert reply.status == 200
    assert "x-modelway-route" not in reply.headers
    reply = chat(keyed, headers={"Authorization": "Bearer sk-a"})
    assert "x-modelway-route" in reply.headers


def test_check_reports_router_errors_with_their_paths(tmp_path: Path) -> None:
    path = tmp_path / "routers.yaml"
    path.write_text(
        "providers: [{name: p, kind: vllm, base_url: 'http://127.0.0.1:9/v1'}]\n"
        "models: [{name: m, deployments: [{provider: p}]}]\n"
        "routing:\n"
        "  routers:\n"
        "    - {id: gone, use: 'mypkg.routing:Smart'}\n"
        "    - {id: picky, use: 'support.routers:Refuses', config: {}}\n"
        "    - {id: ok, use: 'support.routers:ScriptedRouter'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "modelway", "check", "--config", str(path)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **plugin_env()},
    )
    assert result.returncode == 1
    assert "config is invalid (2 errors)" in result.stderr
    assert "routing.routers[0].use: could not import module 'mypkg.routing'" in result.stderr
    assert "routing.routers[1].config: Refuses refused its config: config needs 'url'" in result.stderr
