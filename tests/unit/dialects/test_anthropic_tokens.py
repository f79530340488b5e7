"""count_tokens' estimate for providers that cannot count."""

from __future__ import annotations

from typing import Any

import pytest

from modelway.dialects.anthropic_to_openai import count_tokens_estimate

from . import golden


def estimate(content: Any, **extra: Any) -> int:
    return count_tokens_estimate({"model": "m", "messages": [{"role": "user", "content": content}], **extra})


def test_claude_codes_request_is_estimated_from_all_its_parts() -> None:
    body = golden.load(golden.ROOT / "anthropic" / "a2o_request_claude_code.json")["input"]
    total = count_tokens_estimate(body)
    without_tools = count_tokens_estimate({**body, "tools": []})
    without_system = count_tokens_estimate({**body, "system": []})
    assert 400 < total < 1000
    assert total - without_tools > 346  # the tool-use overhead and each tool's schema
    assert total > without_system


def test_claude_codes_billing_header_is_not_counted_as_the_translation_drops_it() -> None:
    header = {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.207; cc_entrypoint=cli; cch=5f3e1;"}
    prompt = {"type": "text", "text": "You are Claude Code."}
    assert count_tokens_estimate({"system": [header, prompt]}) == count_tokens_estimate({"system": [prompt]})


def test_english_runs_near_four_characters_a_token() -> None:
    assert estimate("word " * 400) == 4 + 500


def test_characters_outside_ascii_count_one_each() -> None:
    assert estimate("你好世界") == 4 + 4


def test_tool_use_inputs_tool_results_and_images_count() -> None:
    base = estimate("hi")
    assert estimate([{"type": "text", "text": "hi"},
                     {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "x" * 400}]}]) \
        == base + 100
    assert estimate([{"type": "text", "text": "hi"}, {"type": "image", "source": {"type": "url", "url": "u"}}]) \
        == base + 1600
    body = {"model": "m", "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": {"q": "y" * 100}}]}]}
    assert count_tokens_estimate(body) > 25


@pytest.mark.parametrize("content", ["", " ", ".", [{"type": "text", "text": ""}]])
def test_a_non_empty_prompt_is_never_zero(content: Any) -> None:
    assert estimate(content) >= 1


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": [1, None, {"type": "text", "text": 5}, {"type": "image"}]}]},
    {"messages": "x", "system": {"a": 1}, "tools": "y"},
    {"messages": [None, {"role": "user"}], "tools": [None, {"name": 3, "input_schema": {"a": {1, 2}}}]},
    {},
])
def test_odd_shapes_are_skipped_never_an_error(body: dict[str, Any]) -> None:
    assert count_tokens_estimate(body) >= 0
