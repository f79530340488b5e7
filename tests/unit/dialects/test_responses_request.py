"""Responses request → chat/completions body: golden cases, the 400s a stateless gateway gives,
and what depends on the provider kind."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import completion_create_params as chat_params
from pydantic import TypeAdapter

from modelway.dialects.responses_to_openai import request
from modelway.errors import BadRequest

from .responses_golden import cases, check, load, validated

CHAT_PARAMS = TypeAdapter(chat_params.CompletionCreateParamsBase)


@pytest.mark.parametrize("path", cases("request"), ids=lambda p: p.stem)
def test_golden(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    case = load(path)
    with caplog.at_level(logging.INFO, logger="modelway.dialects"):
        chat = request(
            case["request"], provider_kind=case["provider_kind"], max_output_tokens=case["max_output_tokens"]
        )
    validated(CHAT_PARAMS, chat)  # the output is a chat/completions request the SDK would send
    check(path, case, {"chat": chat, "log": [r.getMessage() for r in caplog.records]})


def translate(kind: str = "vllm", limit: int | None = None, **body: Any) -> dict[str, Any]:
    body.setdefault("input", "hi")
    return request(body, provider_kind=kind, max_output_tokens=limit)


def refused(**body: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        translate(**body)
    assert caught.value.status == 400
    return caught.value


def test_previous_response_id_is_a_400_saying_the_gateway_keeps_no_conversations() -> None:
    error = refused(previous_response_id="resp_123")
    assert error.param == "previous_response_id"
    assert "keeps no conversations" in error.message and "input" in error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ],
)
def test_what_needs_stored_state_is_a_400(body: dict[str, Any], param: str) -> None:
    assert refused(**body).param == param


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": 7}, "input", "string or an array"),
        ({"input": ["hi"]}, "input[0]", "must be an object"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role", "user, assistant"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content", "string or an array"),
        ({"input": [{"role": "user", "content": [{"type": "input_video"}]}]}, "input[0].content[0].type", "unknown"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0]",
            "file_id",
        ),
        (
            {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}]},
            "input[0].content",
            "images",
        ),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
            "non-empty string",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
            "input[0].arguments",
            "string",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id", "non-empty string"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0]",
            "input_audio object",
        ),
        ({"instructions": ["x"]}, "instructions", "string"),
        ({"input": [], "instructions": ""}, "input", "nothing to send"),
        ({"tools": {"type": "function"}}, "tools", "array"),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "name"),
        ({"tools": [{"name": "f"}]}, "tools[0]", "type"),
        ({"tools": [{"type": "namespace", "name": "n"}]}, "tools[0]", "namespace"),
        ({"input": [{"type": "additional_tools", "tools": None}]}, "input[0].tools", "array"),
        ({"tool_choice": "sometimes"}, "tool_choice", "auto, none, required"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.name", "name"),
        ({"max_output_tokens": 0}, "max_output_tokens", "positive integer"),
        ({"max_output_tokens": "9"}, "max_output_tokens", "positive integer"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format.type", "json_schema"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format", "schema"),
    ],
)
def test_malformed_input_is_a_400_naming_the_field(body: dict[str, Any], param: str, words: str) -> None:
    error = refused(**body)
    assert error.param == param
    assert error.message.startswith(param) and words in error.message


def test_hosted_and_custom_tools_are_dropped_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    tools = [
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": ["vs"]},
        {"type": "computer_use_preview", "display_width": 1, "display_height": 1, "environment": "linux"},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "custom", "name": "apply_patch"},
        {"type": "web_search"},
    ]
    with caplog.at_level(logging.INFO, logger="modelway.dialects"):
        chat = translate(tools=tools, tool_choice="required", parallel_tool_calls=True)
    assert "tools" not in chat and "tool_choice" not in chat and "parallel_tool_calls" not in chat
    assert [r.getMessage() for r in caplog.records] == [
        "/v1/responses to a chat backend: left out what it cannot run:"
        " tools code_interpreter, computer_use_preview, custom, file_search, web_search"
    ]


def test_nothing_dropped_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="modelway.dialects"):
        translate(tools=[{"type": "function", "name": "f"}])
    assert caplog.records == []


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", "none"),
        ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
        (
            {"type": "function", "namespace": "mcp__x__", "name": "g"},
            {"type": "function", "function": {"name": "mcp__x__g"}},
        ),
        ({"type": "web_search_preview"}, None),
        ({"type": "custom", "name": "apply_patch"}, None),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    tools = [
        {"type": "function", "name": "f"},
        {"type": "namespace", "name": "mcp__x__", "description": "", "tools": [{"type": "function", "name": "g"}]},
    ]
    assert translate(tools=tools, tool_choice=choice).get("tool_choice") == expected


def test_allowed_tools_narrows_the_tools_to_its_functions() -> None:
    tools = [{"type": "function", "name": n} for n in ("a", "b", "c")]
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "c"}, {"type": "function", "name": "a"}],
    }
    chat = translate(tools=tools, tool_choice=choice)
    assert [t["function"]["name"] for t in chat["tools"]] == ["a", "c"]
    assert chat["tool_choice"] == "required"


def test_a_tool_declared_twice_is_sent_once() -> None:
    chat = translate(
        tools=[{"type": "function", "name": "f", "description": "first"}],
        input=[
            {"type": "additional_tools", "role": "developer", "tools": [{"type": "function", "name": "f"}]},
            {"role": "user", "content": "hi"},
        ],
    )
    assert chat["tools"] == [{"type": "function", "function": {"name": "f", "description": "first"}}]


@pytest.mark.parametrize(
    ("namespace", "name", "joined"),
    [
        ("mcp__github__", "get_issue", "mcp__github__get_issue"),
        ("mcp__codex_apps__calendar", "_create_event", "mcp__codex_apps__calendar_create_event"),
        ("crm", "lookup", "crm__lookup"),
    ],
)
def test_namespaced_names_read_as_one(namespace: str, name: str, joined: str) -> None:
    tools = [{"type": "namespace", "name": namespace, "description": "", "tools": [{"type": "function", "name": name}]}]
    assert translate(tools=tools)["tools"][0]["function"]["name"] == joined


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("openai", {"reasoning_effort": "high", "max_completion_tokens": 100}),
        ("deepseek", {"reasoning_effort": "high", "max_tokens": 100}),
        ("vllm", {"reasoning_effort": "high", "max_tokens": 100}),
        ("openai-compatible", {"max_tokens": 100}),
        ("gpustack", {"max_tokens": 100}),
        ("simulated", {"max_tokens": 100}),
    ],
)
def test_what_the_provider_kind_takes(kind: str, expected: dict[str, Any]) -> None:
    chat = translate(kind, reasoning={"effort": "high", "summary": "auto"}, max_output_tokens=100)
    assert {k: v for k, v in chat.items() if k not in ("model", "messages")} == expected


def test_effort_none_is_deepseeks_thinking_disabled() -> None:
    chat = translate("deepseek", reasoning={"effort": "none"})
    assert chat["thinking"] == {"type": "disabled"} and "reasoning_effort" not in chat
    assert translate("vllm", reasoning={"effort": "none"})["reasoning_effort"] == "none"


@pytest.mark.parametrize(
    ("asked", "limit", "sent"), [(1000, 100, 100), (50, 100, 50), (None, 100, 100), (70, None, 70)]
)
def test_the_deployment_limit_lowers_or_fills_max_output_tokens(
    asked: int | None, limit: int | None, sent: int
) -> None:
    chat = translate(limit=limit, **({} if asked is None else {"max_output_tokens": asked}))
    assert chat["max_tokens"] == sent


def test_no_limit_anywhere_sends_none() -> None:
    assert "max_tokens" not in translate()


def test_a_stream_asks_for_usage() -> None:
    chat = translate(stream=True)
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kind", ["openai", "openai-compatible"])
def test_reasoning_goes_back_only_to_kinds_that_want_it(kind: str) -> None:
    chat = translate(
        kind,
        input=[
            {"role": "user", "content": "hi"},
            {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "think"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        ],
    )
    assert "reasoning_content" not in chat["messages"][1]


def test_reasoning_not_followed_by_an_assistant_turn_is_not_sent() -> None:
    chat = translate(
        "deepseek",
        input=[
            {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "think"}]},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ],
    )
    assert chat["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_parallel_calls_are_one_assistant_message_and_outputs_follow_in_order() -> None:
    chat = translate(
        input=[
            {"role": "user", "content": "go"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
            {"type": "function_call", "call_id": "c3", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c3", "output": "three"},
        ]
    )
    roles = [(m["role"], [c["id"] for c in m.get("tool_calls", [])] or m.get("tool_call_id")) for m in chat["messages"]]
    assert roles == [
        ("user", None),
        ("assistant", ["c1", "c2"]),
        ("tool", "c1"),
        ("tool", "c2"),
        ("assistant", ["c3"]),
        ("tool", "c3"),
    ]
