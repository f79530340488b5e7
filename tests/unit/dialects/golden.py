"""Golden cases for the dialect translations: tests/golden/<dialect>/*.json.

Each file: `direction` (a module of modelway.dialects), `kind` (request, answer, stream or
error), `options` (keyword arguments), `input`, and `expected`. A stream's input is the
upstream's bytes as a list of chunks (as they arrived), its `end` either "finish" or
{"fail": message}, and its expected output the list of frames, parsed. Run with
UPDATE_GOLDEN=1 to write what the code makes into `expected` (then read the diff).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).parents[2] / "golden"


def files(dialect: str, kind: str | None = None, direction: str | None = None) -> list[Path]:
    found = []
    for path in sorted((ROOT / dialect).glob("*.json")):
        case = load(path)
        if (kind is None or case["kind"] == kind) and (direction is None or case["direction"] == direction):
            found.append(path)
    return found


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    return case


def module(case: dict[str, Any]) -> Any:
    return importlib.import_module(f"modelway.dialects.{case['direction']}")


def stream_bytes(case: dict[str, Any], chunks: list[bytes] | None = None) -> bytes:
    """The translator's whole output for the case's upstream chunks (or another split of them)."""
    translator = module(case).StreamTranslator(**case.get("options", {}))
    parts = chunks if chunks is not None else [c.encode() for c in case["input"]]
    out = [translator.feed(chunk) for chunk in parts]
    end = case.get("end", "finish")
    out.append(translator.finish() if end == "finish" else translator.fail(end["fail"]))
    return b"".join(out)


def frames(raw: bytes) -> list[dict[str, Any]]:
    """A translator's SSE output as frames {event?, data}; strict about the framing (each frame
    ends in a blank line, one data line) so the shape of every byte is checked."""
    assert raw.endswith(b"\n\n") or not raw, raw[-40:]
    parsed = []
    for block in raw.split(b"\n\n")[:-1]:
        lines = block.split(b"\n")
        frame: dict[str, Any] = {}
        if lines[0].startswith(b"event: "):
            frame["event"] = lines.pop(0)[7:].decode()
        assert len(lines) == 1 and lines[0].startswith(b"data: "), block
        data = lines[0][6:]
        frame["data"] = data.decode() if data == b"[DONE]" else orjson.loads(data)
        parsed.append(frame)
    return parsed


def actual(case: dict[str, Any]) -> Any:
    kind = case["kind"]
    options = case.get("options", {})
    translation = module(case)
    if kind == "request":
        return translation.request(case["input"], **options)
    if kind == "answer":
        return translation.answer(case["input"], **options)
    if kind == "stream":
        return frames(stream_bytes(case))
    if kind == "error":
        return orjson.loads(translation.error(options["status"], case["input"].encode()))
    raise AssertionError(f"unknown kind {kind!r}")


def check(path: Path) -> Any:
    case = load(path)
    result = actual(case)
    if os.environ.get("UPDATE_GOLDEN"):
        case["expected"] = result
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
    assert result == case["expected"], f"{path.name}: translation differs from the golden file"
    return result
