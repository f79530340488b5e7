"""Config errors as modelway reports them: pydantic's error locations as YAML paths
(`models[0].deployments[1].weight`) and its messages in the config's words. Shared by the
config loader and by router plugins' settings (routers/settings.py).
"""

from __future__ import annotations

from typing import Any


def join_path(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def yaml_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part and ("[" in part or "function-" in part):
            continue  # pydantic's internal names for union members and validators
        else:
            path = join_path(path, part)
    return path


def describe(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
