from __future__ import annotations

import pytest

from modelway.config.schema import ModelMappingConfig
from modelway.mapping import ModelMapper, PatternTable


def mapper(rules: dict[str, str], **kw: object) -> ModelMapper:
    return ModelMapper(ModelMappingConfig(rules=rules, **kw))  # type: ignore[arg-type]


RULES = {"gpt-4o": "qwen-vl-plus", "gpt-4-*": "qwen-max", "gpt-*": "qwen-turbo", "*": "", "claude-*": "sonnet"}


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("gpt-4o", "qwen-vl-plus"),  # exact wins over every prefix
        ("gpt-4-turbo", "qwen-max"),  # longest prefix wins
        ("gpt-4", "qwen-turbo"),  # "gpt-4" does not match "gpt-4-*"
        ("gpt-3.5", "qwen-turbo"),
        ("claude-3", "sonnet"),
        ("llama", "llama"),  # "*": "" keeps the name
    ],
)
def test_rules_order(asked: str, expected: str) -> None:
    assert mapper(RULES).map(asked) == expected


def test_star_with_a_target_catches_everything_else() -> None:
    m = mapper({"a": "b", "*": "fallback"})
    assert m.map("a") == "b"
    assert m.map("anything") == "fallback"


def test_no_rules_keep_names() -> None:
    assert mapper({}).map("x") == "x"


def test_paths_are_suffixes() -> None:
    m = mapper({}, paths=["/completions", "/embeddings"])
    assert m.applies_to("/v1/chat/completions")
    assert m.applies_to("/v1/completions")
    assert m.applies_to("/embeddings")
    assert not m.applies_to("/v1/rerank")
    assert not m.applies_to("/v1/completions/extra")


def test_default_paths_cover_the_spec_list() -> None:
    m = mapper({})
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/rerank", "/v1/audio/speech"):
        assert m.applies_to(path)
    assert not m.applies_to("/v1/files")


def test_key_path_is_dotted() -> None:
    assert mapper({}, key="metadata.model").key_path == ("metadata", "model")


def test_pattern_table_prefers_longest_prefix_regardless_of_order() -> None:
    table = PatternTable({"a*": 1, "abc*": 3, "ab*": 2})
    assert table.lookup("abcd") == 3
    assert table.lookup("abx") == 2
    assert table.lookup("ax") == 1
    assert table.lookup("b") is None
