"""Tool call ids, made acceptable to both dialects.

Anthropic requires tool_use ids to match `^[A-Za-z0-9_-]+$`; OpenAI-compatible servers
make ids such as "functions.get_weather:0" (Kimi) or "call_0|1". Every id crossing a
translation, in either direction, goes through `tool_id`, so a tool call and the result
that names it keep matching. A valid id is kept as it is; any other gets its invalid
characters replaced by "_" and a short hash of the original appended, so two ids that
differ only in invalid characters stay different.
"""

from __future__ import annotations

import hashlib
import re

VALID = re.compile(r"[A-Za-z0-9_-]+")
INVALID = re.compile(r"[^A-Za-z0-9_-]")


def tool_id(raw: str) -> str:
    if VALID.fullmatch(raw):
        return raw
    digest = hashlib.blake2s(raw.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    clean = INVALID.sub("_", raw)
    return f"{clean}_{digest}" if clean else f"toolu_{digest}"
