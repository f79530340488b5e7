"""Every golden case of tests/golden/anthropic: the translation makes exactly the expected output."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import golden

CASES = golden.files("anthropic")


def test_there_are_cases_of_every_kind_both_ways() -> None:
    kinds = {(golden.load(p)["direction"], golden.load(p)["kind"]) for p in CASES}
    for direction in ("anthropic_to_openai", "openai_to_anthropic"):
        for kind in ("request", "answer", "stream", "error"):
            assert (direction, kind) in kinds


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    golden.check(path)
