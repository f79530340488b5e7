from __future__ import annotations

import re

from modelway.dialects.tool_ids import tool_id

ANTHROPIC_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def test_valid_ids_are_kept() -> None:
    for ident in ("toolu_01A09q90qw90lq917835lq9", "call_abc-123", "x"):
        assert tool_id(ident) == ident


def test_other_ids_become_valid_stable_and_distinct() -> None:
    raw = ["functions.get_weather:0", "functions.get_weather:1", "functions_get_weather_0", "call|7", "é", "", "a b"]
    made = [tool_id(r) for r in raw]
    assert all(ANTHROPIC_ID.match(m) for m in made)
    assert len(set(made)) == len(made)
    assert made == [tool_id(r) for r in raw]  # the same in both directions, every time
    assert [tool_id(m) for m in made] == made  # and once made valid, kept
    assert made[0].startswith("functions_get_weather_0_")
