"""Loading routing.routers: config errors with their YAML paths, new instances per build,
the run order, and errors counted per router (driven in-process, no socket)."""

from __future__ import annotations

from collections import Counter

import pytest
from support.asgi import post

from modelway.app import create_app
from modelway.config import parse_config
from modelway.errors import ConfigError
from modelway.runtime import Runtime

BASE = """
providers:
  - {name: sim, kind: simulated, simulate: {latency_ms: 0, tokens_per_s: 100000}}
models:
  - {name: m, deployments: [{provider: sim, model: real}]}
  - {name: other, deployments: [{provider: sim, model: other-real}]}
routing:
  routers:
"""


def errors_of(routers: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + routers, {})
    return [f"{path}: {message}" for path, message in info.value.errors]


def test_unimportable_and_wrong_classes_are_errors_at_use() -> None:
    found = errors_of(
        """
    - {id: a, use: "no_such_module:Router"}
    - {id: b, use: "support.routers:Missing"}
    - {id: c, use: "support.routers:NotARouter"}
    - {id: d, use: "support.routers:Incomplete"}
    - {id: e, use: "not a spec"}
"""
    )
    assert found[0].startswith("routing.routers[4].use: String should match pattern")  # the schema's, first
    assert found[1].startswith("routing.routers[0].use: could not import module 'no_such_module'")
    assert found[2:] == [
        "routing.routers[1].use: module 'support.routers' has no attribute 'Missing'",
        "routing.routers[2].use: 'support.routers:NotARouter' is not a subclass of modelway.plugins.Router",
        "routing.routers[3].use: 'support.routers:Incomplete' does not implement route",
    ]


def test_constructor_errors_are_errors_at_config() -> None:
    found = errors_of(
        """
    - {id: a, use: "support.routers:Refuses"}
    - {id: b, use: "modelway.routers.rules:RuleRouter", config: {rules: [{when: {headr: {}}, model: m}]}}
    - {id: c, use: "modelway.routers.rules:RuleRouter", config: {rules: [{model: m, deployment: {provider: sim}}]}}
    - {id: d, use: "modelway.routers.rules:RuleRouter", config: {rules: [{when: {header_regex: {a: "("}}, model: m}]}}
    - {id: e, use: "modelway.routers.context:ContextWindowRouter", config: {reserve_output: maybe}}
"""
    )
    assert found == [
        "routing.routers[0].config: Refuses refused its config: config needs 'url'",
        "routing.routers[1].config: RuleRouter refused its config: rules[0].when.headr: unknown key",
        "routing.routers[2].config: RuleRouter refused its config: rules[0]: set exactly one action: 'model' or "
        "'deployment'",
        "routing.routers[3].config: RuleRouter refused its config: rules[0].when.header_regex: a: invalid regular "
        "expression '(': missing ), unterminated subpattern at position 0",
        "routing.routers[4].config: ContextWindowRouter refused its config: reserve_output: Input should be a valid "
        "boolean, unable to interpret input",
    ]


def test_router_errors_are_reported_with_other_errors() -> None:
    found = errors_of(
        """
    - {id: a, use: "support.routers:Refuses", priority: high}
    - {id: a, use: "support.routers:ScriptedRouter"}
"""
    )
    assert "routing.routers[0].priority: Input should be a valid integer, unable to parse string as an integer" in found
    assert "routing.routers[1].id: duplicate router id 'a'" in found
    assert "routing.routers[0].config: Refuses refused its config: config needs 'url'" in found


CHAIN = BASE + """
    - {id: b, use: "support.routers:ScriptedRouter", priority: 1}
    - {id: a, use: "support.routers:ScriptedRouter", priority: 1}
    - {id: z, use: "support.routers:ScriptedRouter", priority: 9, timeout_ms: 20}
    - {id: rules, use: "modelway.routers.rules:RuleRouter", config: {rules: [{model: other}]}}
"""


def test_each_build_makes_new_instances_in_run_order() -> None:
    config = parse_config(CHAIN, {})
    first, second = Runtime(config), Runtime(config)
    assert [r.id for r in first.routers.routers] == ["z", "a", "b", "rules"]
    assert [r.router.id for r in first.routers.routers] == ["z", "a", "b", "rules"]
    assert first.routers.by_id["z"].timeout_s == 0.02
    for old, new in zip(first.routers.routers, second.routers.routers, strict=True):
        assert old.router is not new.router


async def test_errors_are_counted_per_router() -> None:
    runtime = Runtime(parse_config(CHAIN, {}))
    app = create_app(runtime)
    await runtime.start()
    try:
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        answer = await post(app, "/v1/chat/completions", chat, {"x-script-z": "raise", "x-script-a": "garbage"})
        assert answer.status == 200
        assert answer.headers["x-modelway-model"] == "other-real"  # the rule router decided
        await post(app, "/v1/chat/completions", chat, {"x-script-z": "sleep 200"})
        await post(app, "/v1/chat/completions", chat, {"x-script-b": "model nope"})
        answer = await post(app, "/v1/chat/completions", chat, {"x-script-a": "fail"})
        assert answer.status == 502
        assert runtime.routers.errors == Counter({"z": 2, "a": 2, "b": 1})
    finally:
        await runtime.close()


async def test_deployment_routes_are_cached_per_target() -> None:
    runtime = Runtime(parse_config(CHAIN, {}))
    assert runtime.table.deployment_route("sim", "x") is runtime.table.deployment_route("sim", "x")
    assert runtime.table.deployment_route("sim", "x") is not runtime.table.deployment_route("sim", None)
    (deployment,) = runtime.table.deployment_route("sim", "x").deployments
    assert deployment.upstream_model == "x" and deployment.provider is runtime.providers["sim"]
