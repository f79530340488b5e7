"""Golden files of tests/golden/responses: a translator's input and the output it must give.

Each file is one case: its inputs (a Responses request, a chat/completions answer or the raw
bytes of an upstream stream) and, under `expected`, what the translator must make of them.
`MODELWAY_UPDATE_GOLDEN=1 pytest tests/unit/dialects` rewrites `expected` from the code: only
for a deliberate change, and the diff is then read like code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

GOLDEN = Path(__file__).parents[2] / "golden" / "responses"
UPDATE = os.environ.get("MODELWAY_UPDATE_GOLDEN") == "1"
TOKEN = "0123456789abcdef01234567"  # the id token every golden translator is given


def cases(prefix: str) -> list[Path]:
    found = sorted(GOLDEN.glob(f"{prefix}_*.json"))
    assert found, f"no {prefix}_*.json golden files in {GOLDEN}"
    return found


def load(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())  # type: ignore[no-any-return]


def check(path: Path, case: dict[str, Any], actual: Any) -> None:
    if UPDATE:
        case["expected"] = actual
        path.write_bytes(orjson.dumps(case, option=orjson.OPT_INDENT_2) + b"\n")
        return
    assert actual == case["expected"], f"{path.name}: the translation differs from the golden file"


def steady(value: Any) -> Any:
    """`value` with its clock readings (created_at) set to 0, so that runs compare equal."""
    if isinstance(value, dict):
        return {k: 0 if k == "created_at" else steady(v) for k, v in value.items()}
    if isinstance(value, list):
        return [steady(v) for v in value]
    return value


def validated(adapter: TypeAdapter[Any], value: Any) -> Any:
    """Validate `value` with an SDK TypedDict adapter, items of its iterable fields included
    (pydantic checks those lazily, as they are consumed)."""
    return consume(adapter.validate_python(value))


def consume(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: consume(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [consume(v) for v in value]
    if hasattr(value, "__next__"):
        return [consume(v) for v in value]
    return value
