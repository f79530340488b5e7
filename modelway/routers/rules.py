"""RuleRouter: declarative routing rules. The first rule whose conditions all hold decides.

    routing:
      routers:
        - id: rules
          use: modelway.routers.rules:RuleRouter
          priority: 100
          config:
            rules:
              - name: premium
                when: {header: {x-tier: premium}, model: "gpt-4*"}
                model: gpt-4o
              - name: long-prompts
                when: {prompt_tokens_above: 8000}
                deployment: {provider: vllm-a, model: Qwen2.5-72B-Instruct-128k}

Conditions (all must hold; none: the rule always matches):
  header / query          {name: value}   equals (header names ignore case)
  header_regex / query_regex {name: regex} re.search matches the value
  body                    {dotted.path: value}  the JSON value there equals (list items by index: messages.0.role)
  body_exists             [dotted.path]   present and not null
  stream                  true | false
  prompt_tokens_above     N               the estimated prompt is larger than N tokens
  model                   glob or [globs] the requested model (after mapping) matches (fnmatch: * ? [..])
Actions (exactly one): `model: NAME` or `deployment: {provider: NAME, model: UPSTREAM}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from pydantic import Field, field_validator, model_validator

from modelway.config.schema import Strict
from modelway.plugins import RouteDecision, Router, RouteRequest
from modelway.routers.settings import parse_settings

Condition = Callable[[RouteRequest], bool]
MISSING = object()


class When(Strict):
    header: dict[str, str] = Field(default_factory=dict)
    header_regex: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    query_regex: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] = Field(default_factory=dict)
    body_exists: list[str] = Field(default_factory=list)
    stream: bool | None = None
    prompt_tokens_above: int | None = Field(None, ge=0)
    model: str | list[str] | None = None

    @field_validator("header_regex", "query_regex")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{name}: invalid regular expression {pattern!r}: {exc}") from None
        return value


class DeploymentTarget(Strict):
    provider: str = Field(min_length=1)
    model: str | None = Field(None, min_length=1)


class Rule(Strict):
    name: str | None = None
    when: When = Field(default_factory=When)
    model: str | None = Field(None, min_length=1)
    deployment: DeploymentTarget | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Rule:
        if (self.model is None) == (self.deployment is None):
            raise ValueError("set exactly one action: 'model' or 'deployment'")
        return self


class RuleSettings(Strict):
    rules: list[Rule] = Field(default_factory=list)


class CompiledRule:
    __slots__ = ("conditions", "decision")

    def __init__(self, index: int, rule: Rule) -> None:
        reason = f"rule {rule.name or '#' + str(index)}"
        if rule.deployment is not None:
            self.decision = RouteDecision.to_deployment(rule.deployment.provider, rule.deployment.model, reason)
        else:
            assert rule.model is not None
            self.decision = RouteDecision.to_model(rule.model, reason)
        self.conditions = compile_conditions(rule.when)

    def matches(self, req: RouteRequest) -> bool:
        return all(condition(req) for condition in self.conditions)


def compile_conditions(when: When) -> list[Condition]:
    """Cheap conditions first; the ones that read the body (a copy) or count tokens last."""
    out: list[Condition] = []
    if when.model is not None:
        out.append(model_glob([when.model] if isinstance(when.model, str) else list(when.model)))
    if when.stream is not None:
        out.append(stream_is(when.stream))
    out += [header_equals(name, value) for name, value in when.header.items()]
    out += [header_matches(name, re.compile(pattern)) for name, pattern in when.header_regex.items()]
    out += [query_equals(name, value) for name, value in when.query.items()]
    out += [query_matches(name, re.compile(pattern)) for name, pattern in when.query_regex.items()]
    out += [body_equals(tuple(path.split(".")), value) for path, value in when.body.items()]
    out += [body_exists(tuple(path.split("."))) for path in when.body_exists]
    if when.prompt_tokens_above is not None:
        out.append(prompt_above(when.prompt_tokens_above))
    return out


def model_glob(globs: list[str]) -> Condition:
    return lambda req: any(fnmatchcase(req.requested_model, g) for g in globs)


def stream_is(stream: bool) -> Condition:
    return lambda req: req.stream is stream


def header_equals(name: str, value: str) -> Condition:
    return lambda req: req.headers.get(name) == value


def header_matches(name: str, pattern: re.Pattern[str]) -> Condition:
    return lambda req: search(pattern, req.headers.get(name))


def query_equals(name: str, value: str) -> Condition:
    return lambda req: req.query.get(name) == value


def query_matches(name: str, pattern: re.Pattern[str]) -> Condition:
    return lambda req: search(pattern, req.query.get(name))


def body_equals(path: tuple[str, ...], value: Any) -> Condition:
    return lambda req: same(body_value(req.body, path), value)


def body_exists(path: tuple[str, ...]) -> Condition:
    return lambda req: body_value(req.body, path) not in (MISSING, None)


def prompt_above(limit: int) -> Condition:
    return lambda req: req.prompt_tokens > limit


def search(pattern: re.Pattern[str], value: str | None) -> bool:
    return value is not None and pattern.search(value) is not None


def body_value(body: Any, path: tuple[str, ...]) -> Any:
    node = body
    for part in path:
        if isinstance(node, Mapping):
            node = node.get(part, MISSING)
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
        if node is MISSING:
            return MISSING
    return node


def same(found: Any, expected: Any) -> bool:
    """JSON equality: true is not 1, but 1 equals 1.0."""
    if found is MISSING:
        return False
    if isinstance(found, bool) or isinstance(expected, bool):
        return isinstance(found, bool) and isinstance(expected, bool) and found == expected
    return bool(found == expected)


class RuleRouter(Router):
    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        settings = parse_settings(RuleSettings, self.config)
        self.rules = [CompiledRule(i, rule) for i, rule in enumerate(settings.rules)]

    async def route(self, req: RouteRequest) -> RouteDecision | None:
        for rule in self.rules:
            if rule.matches(req):
                return rule.decision
        return None
