"""Responses tools and tool_choice → chat/completions tools and tool_choice.

Function tools (`{type: function, name, description, parameters}`) map one to one. Function
tools nested in `namespace` tools, at the top level or in an `additional_tools` input item
(where Codex sends them), are flattened into function tools named `chat_name(namespace, name)`;
`Tools.namespaced` maps such a name back to its namespace and name, so that a call the model
makes is answered as `{type: function_call, namespace, name}`, exactly as the client declared
the tool. Every other tool (web_search, file_search, computer, code_interpreter, custom,
image_generation, mcp, local_shell, ...) is something a chat backend cannot run: it is left
out, and `Tools.dropped` says which, for one log line per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelway.errors import BadRequest

NAMESPACE_JOINER = "__"


def chat_name(namespace: str, name: str) -> str:
    """The one name a chat model sees for `name` inside `namespace`.

    Codex names its namespaces so that namespace + name reads as one name
    (`mcp__github__` + `get_issue`, `mcp__codex_apps__calendar` + `_create_event`);
    those are joined as they are, any other pair with `__` between them.
    """
    if namespace.endswith("_") or name.startswith("_"):
        return namespace + name
    return namespace + NAMESPACE_JOINER + name


@dataclass(slots=True)
class Tools:
    chat: list[dict[str, Any]] = field(default_factory=list)
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def add_function(self, tool: dict[str, Any], where: str, namespace: str | None = None) -> None:
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{where}.name: a function tool needs a name (a non-empty string)", param=f"{where}.name")
        visible = name if namespace is None else chat_name(namespace, name)
        if visible in self._seen:
            return  # declared twice (e.g. again in an additional_tools item): the first one stands
        self._seen.add(visible)
        if namespace is not None:
            self.namespaced[visible] = (namespace, name)
        function: dict[str, Any] = {"name": visible}
        description = tool.get("description")
        if isinstance(description, str) and description:
            function["description"] = description
        parameters = tool.get("parameters")
        if parameters is not None:
            function["parameters"] = parameters
        self.chat.append({"type": "function", "function": function})

    def add(self, tool: Any, where: str) -> None:
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise BadRequest(f"{where}: a tool must be an object with a string `type`", param=where)
        kind = tool["type"]
        if kind == "function":
            self.add_function(tool, where)
        elif kind == "namespace":
            namespace = tool.get("name")
            inner = tool.get("tools")
            if not isinstance(namespace, str) or not namespace or not isinstance(inner, list):
                raise BadRequest(
                    f"{where}: a namespace tool needs a `name` (a non-empty string) and `tools` (an array)", param=where
                )
            for j, member in enumerate(inner):
                member_where = f"{where}.tools[{j}]"
                if isinstance(member, dict) and member.get("type") == "function":
                    self.add_function(member, member_where, namespace)
                elif isinstance(member, dict) and isinstance(member.get("type"), str):
                    self.dropped.append(member["type"])
                else:
                    message = f"{member_where}: a tool must be an object with a string `type`"
                    raise BadRequest(message, param=member_where)
        else:
            self.dropped.append(kind)


def collect(body: dict[str, Any]) -> Tools:
    """The tools of a Responses request: its `tools`, then those of its `additional_tools` items."""
    tools = Tools()
    declared = body.get("tools")
    if declared is not None:
        if not isinstance(declared, list):
            raise BadRequest("tools: must be an array of tools", param="tools")
        for i, tool in enumerate(declared):
            tools.add(tool, f"tools[{i}]")
    items = body.get("input")
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get("type") == "additional_tools":
                extra = item.get("tools")
                if not isinstance(extra, list):
                    raise BadRequest(f"input[{i}].tools: must be an array of tools", param=f"input[{i}].tools")
                for j, tool in enumerate(extra):
                    tools.add(tool, f"input[{i}].tools[{j}]")
    return tools


def tool_choice(choice: Any, tools: Tools) -> Any:
    """The chat/completions tool_choice for a Responses one; None: send none (the backend's `auto`).

    `allowed_tools` narrows `tools.chat` to the functions it names and becomes its mode. A choice
    of a hosted or custom tool (left out of the tools) is left out too.
    """
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice in ("auto", "none", "required"):
            return choice
        raise BadRequest("tool_choice: must be auto, none, required or a tool choice object", param="tool_choice")
    if not isinstance(choice, dict):
        raise BadRequest("tool_choice: must be a string or an object", param="tool_choice")
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("tool_choice.name: a function choice needs the function's name", param="tool_choice.name")
        namespace = choice.get("namespace")
        visible = chat_name(namespace, name) if isinstance(namespace, str) and namespace else name
        return {"type": "function", "function": {"name": visible}}
    if kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        allowed = choice.get("tools")
        if mode not in ("auto", "required") or not isinstance(allowed, list):
            raise BadRequest(
                "tool_choice: allowed_tools needs `mode` (auto or required) and `tools` (an array)", param="tool_choice"
            )
        names = {
            chat_name(t["namespace"], t["name"]) if isinstance(t.get("namespace"), str) else t.get("name")
            for t in allowed
            if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
        }
        tools.chat = [t for t in tools.chat if t["function"]["name"] in names]
        return mode
    return None
