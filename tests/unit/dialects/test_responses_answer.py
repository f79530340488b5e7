"""chat/completions answer → a Responses `response` object, validated with the SDK's own type."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai.types.responses import Response

from modelway.dialects.responses_to_openai import answer, answer_context
from modelway.errors import UpstreamError

from .responses_golden import TOKEN, cases, check, load


@pytest.mark.parametrize("path", cases("answer"), ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    case = load(path)
    response = answer(case["chat"], model=case["model"], context=answer_context(case["request"]), token=TOKEN)
    Response.model_validate(response)
    check(path, case, response)


def test_the_sdk_reads_text_calls_and_usage() -> None:
    case = load(Path(__file__).parents[2] / "golden" / "responses" / "answer_tools_reasoning.json")
    response = Response.model_validate(answer(case["chat"], model="m", context=answer_context(case["request"])))
    assert response.output_text == "Let me look."
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.namespace, c.name, c.call_id) for c in calls] == [
        ("mcp__github__", "get_issue", "call_x"),
        (None, "exec_command", "call_y"),
    ]
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 32
    assert response.id.startswith("resp_") and len({response.id, *(item.id for item in response.output)}) == 5


def test_ids_differ_between_answers() -> None:
    chat = {"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}
    assert answer(chat, model="m")["id"] != answer(chat, model="m")["id"]


def test_missing_call_ids_are_made_up_and_object_arguments_become_json() -> None:
    chat = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {"tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
            }
        ]
    }
    item = answer(chat, model="m")["output"][0]
    assert item["call_id"].startswith("call_") and item["arguments"] == '{"a":1}'


@pytest.mark.parametrize("chat", [{}, {"choices": []}, {"choices": ["x"]}, [], "text", None])
def test_an_answer_without_choices_is_an_upstream_error(chat: object) -> None:
    with pytest.raises(UpstreamError, match="no choices"):
        answer(chat, model="m")
