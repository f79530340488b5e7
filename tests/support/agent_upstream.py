"""A chat-only backend for the coding-agent CLI tests: an aiohttp server that speaks OpenAI
chat/completions and nothing else (JSON and SSE), and plays a scripted agent — a tool call
first, then, once the tool's result is in the conversation, a final text.

It checks each request as a strict chat backend would (OpenAI's own, or vLLM with a chat
template that wants one leading system message): any field that is not a chat/completions
parameter, a system message that is not the first one, a tool message answering no call, a call left
unanswered, a malformed tool or tool_choice — each is a 400 naming what is wrong and where, and
is kept in `problems`, so a translation that leaks another dialect's shape fails the test
with the reason. It runs in a thread with its own event loop and records every request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from support.threaded import ThreadedServer
from support.upstream import Received

CHAT_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
        "top_p", "n", "stop", "tools", "tool_choice", "parallel_tool_calls", "user", "seed", "response_format",
        "reasoning_effort", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "logit_bias",
        "metadata", "store", "service_tier", "modalities", "prediction", "audio", "web_search_options",
    }
)  # the request body of OpenAI's chat/completions; anything else is another dialect's
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for a function name
ARGUMENT_PIECES = 3  # a streamed tool call's arguments arrive split over this many chunks


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolCalls:
    """Answer with these calls, in parallel (text first when `preamble` is set)."""

    calls: tuple[Call, ...]
    preamble: str = ""


def tool_call(name: str, arguments: dict[str, Any], preamble: str = "") -> ToolCalls:
    """Answer with one call of `name`."""
    return ToolCalls((Call(name, arguments),), preamble)


@dataclass(frozen=True)
class Text:
    """Answer with this text and finish."""

    text: str


@dataclass(frozen=True)
class Refusal:
    """Answer with this status and an OpenAI-shaped error carrying `message` (as a backend
    refuses a prompt over its context window)."""

    status: int
    message: str


Turn = ToolCalls | Text | Refusal


class AgentUpstream(ThreadedServer):
    """The answer to a request is `turns[k]`, k being how many assistant messages with tool calls
    the request's conversation holds (the last turn once k runs past the end): a fresh
    conversation gets the first turn, the one carrying its calls' results gets the next."""

    def __init__(self, turns: Sequence[Turn], name: str = "agent-backend", break_streams: int = 0) -> None:
        """`break_streams`: the first this many streamed answers break off (the connection is
        dropped) after a couple of chunks, as a backend that dies mid-answer."""
        if not turns:
            raise ValueError("AgentUpstream needs at least one turn")
        self.turns = list(turns)
        self.name = name
        self.received: list[Received] = []
        self.problems: list[str] = []  # every refused request's reason, in order
        self.break_streams = break_streams
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chats(self) -> list[dict[str, Any]]:
        """The bodies of the chat/completions requests received, in order."""
        return [r.body for r in self.received if r.path.endswith("/chat/completions") and isinstance(r.body, dict)]

    def __enter__(self) -> AgentUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.received.append(
            Received(request.method, request.path, dict(request.query), dict(request.headers), body, peer,
                     request.raw_path, raw)
        )
        if request.method == "GET" and request.path.endswith("/models"):
            return web.json_response({"object": "list", "data": [{"id": "backend-model", "object": "model"}]})
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            where = f"{request.method} {request.path}"
            return self._refuse(404, f"{where}: this backend serves only POST /v1/chat/completions")
        problem = chat_problem(body)
        if problem:
            return self._refuse(400, problem)
        turn = self.turns[min(tool_steps(body["messages"]), len(self.turns) - 1)]
        if isinstance(turn, Refusal):
            return web.json_response(
                {"error": {"message": turn.message, "type": "invalid_request_error", "param": "messages",
                           "code": "context_length_exceeded"}},
                status=turn.status,
            )
        model = body["model"]
        if body.get("stream") is True:
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            return await self._stream(request, model, turn, include_usage)
        return web.json_response(answer(model, turn))

    def _refuse(self, status: int, message: str) -> web.Response:
        self.problems.append(message)
        return web.json_response(
            {"error": {"message": message, "type": "invalid_request_error", "code": None}}, status=status
        )

    async def _stream(self, request: web.Request, model: str, turn: Turn, include_usage: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        breaking = self.break_streams > 0
        self.break_streams -= breaking
        for i, chunk in enumerate(stream_chunks(model, turn, include_usage)):
            if breaking and i == 2:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


USAGE = {"prompt_tokens": 1200, "completion_tokens": 20, "total_tokens": 1220}


def call_id(call: Call, index: int) -> str:
    return f"call_{call.name.lower()}_{index + 1}"


def arguments_of(call: Call) -> str:
    return orjson.dumps(call.arguments).decode()


def answer(model: str, turn: Turn) -> dict[str, Any]:
    """The non-streamed chat.completion for `turn`."""
    if isinstance(turn, Text):
        message: dict[str, Any] = {"role": "assistant", "content": turn.text}
        finish = "stop"
    else:
        message = {
            "role": "assistant",
            "content": turn.preamble or None,
            "tool_calls": [
                {"id": call_id(call, i), "type": "function",
                 "function": {"name": call.name, "arguments": arguments_of(call)}}
                for i, call in enumerate(turn.calls)
            ],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-agent",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
    }


def stream_chunks(model: str, turn: Turn, include_usage: bool) -> list[dict[str, Any]]:
    """The chat.completion.chunk objects for `turn`, as a backend streams them: the role
    first, text in pieces, then each tool call in turn (keyed by its index): its id and name
    in one chunk, its arguments split over several; the finish reason, then (when asked) a
    usage chunk with no choices."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-agent",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    text = turn.text if isinstance(turn, Text) else turn.preamble
    middle = len(text) // 2
    chunks += [chunk({"content": piece}) for piece in (text[:middle], text[middle:]) if piece]
    for index, call in enumerate(turn.calls if isinstance(turn, ToolCalls) else ()):
        arguments = arguments_of(call)
        step = -(-len(arguments) // ARGUMENT_PIECES)
        chunks.append(
            chunk({"tool_calls": [{"index": index, "id": call_id(call, index), "type": "function",
                                   "function": {"name": call.name, "arguments": ""}}]})
        )
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + step]}}]})
            for i in range(0, len(arguments), step)
        ]
    chunks.append(chunk({}, "tool_calls" if isinstance(turn, ToolCalls) else "stop"))
    if include_usage:
        chunks.append({"id": "chatcmpl-agent", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [], "usage": USAGE})
    return chunks


def tool_steps(messages: list[dict[str, Any]]) -> int:
    return sum(1 for message in messages if message.get("role") == "assistant" and message.get("tool_calls"))


def chat_problem(body: Any) -> str | None:
    """What a strict chat/completions backend would refuse in `body`, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    unknown = sorted(set(body) - CHAT_FIELDS)
    if unknown:
        return f"unknown chat/completions parameter(s): {', '.join(unknown)}"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: a non-empty string is required"
    for name in ("max_tokens", "max_completion_tokens"):
        if name in body and (not isinstance(body[name], int) or isinstance(body[name], bool) or body[name] < 1):
            return f"{name}: a positive integer is required"
    if "user" in body and (not isinstance(body["user"], str) or len(body["user"]) > 64):
        return "user: a string of at most 64 characters"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: a non-empty array is required"
    problem = messages_problem(messages)
    if problem:
        return problem
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            return "tools: a non-empty array, when present"
        for i, tool in enumerate(tools):
            problem = tool_problem(tool, f"tools[{i}]")
            if problem:
                return problem
    return tool_choice_problem(body.get("tool_choice"), tools or [])


def messages_problem(messages: list[Any]) -> str | None:
    pending: list[str] = []  # calls of the last assistant message still waiting for their result
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"{where}: an object with a role among {sorted(ROLES)}"
        role = message["role"]
        unknown = set(message) - {"role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content"}
        if unknown:
            return f"{where}: unknown message field(s) {sorted(unknown)}"
        if role in ("system", "developer") and i > 0:
            return f"{where}: a {role} message that is not the first (chat templates take one, first)"
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                return f"{where}: tool message for {message.get('tool_call_id')!r}, which no open tool call has"
            pending.remove(message["tool_call_id"])
            problem = content_problem(message.get("content"), where, images=False)
            if problem:
                return problem
            continue
        if pending:
            return f"{where}: tool call(s) {pending} of the assistant message before have no tool message"
        if role == "assistant":
            calls = message.get("tool_calls")
            content = message.get("content")
            if calls is None and content is None:
                return f"{where}: an assistant message needs content or tool_calls"
            if content is not None:
                problem = content_problem(content, where, images=False)
                if problem:
                    return problem
            if calls is not None:
                if not isinstance(calls, list) or not calls:
                    return f"{where}.tool_calls: a non-empty array, when present"
                for j, call in enumerate(calls):
                    problem = call_problem(call, f"{where}.tool_calls[{j}]")
                    if problem:
                        return problem
                    pending.append(call["id"])
            continue
        problem = content_problem(message.get("content"), where, images=role == "user")
        if problem:
            return problem
    if pending:
        return f"tool call(s) {pending} of the last assistant message have no tool message"
    return None


def content_problem(content: Any, where: str, images: bool) -> str | None:
    if isinstance(content, str):
        return None
    if not isinstance(content, list) or not content:
        return f"{where}.content: a string or a non-empty array of parts"
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str) and set(part) == {"type", "text"}:
            continue
        if images and kind == "image_url" and isinstance((part.get("image_url") or {}).get("url"), str):
            continue
        return f"{where}.content[{k}]: not a chat content part: {orjson.dumps(part)[:120].decode(errors='replace')}"
    return None


def call_problem(call: Any, where: str) -> str | None:
    if not isinstance(call, dict) or call.get("type") != "function" or not isinstance(call.get("id"), str):
        return f"{where}: needs an id and type function"
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return f"{where}.function: needs a name"
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        return f"{where}.function.arguments: a JSON string is required"
    try:
        orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return f"{where}.function.arguments: not valid JSON: {arguments[:80]!r}"
    return None


def tool_problem(tool: Any, where: str) -> str | None:
    if not isinstance(tool, dict) or tool.get("type") != "function" or set(tool) != {"type", "function"}:
        return f"{where}: a chat tool is exactly {{type: function, function: {{...}}}}"
    function = tool["function"]
    if not isinstance(function, dict):
        return f"{where}.function: an object is required"
    unknown = set(function) - {"name", "description", "parameters", "strict"}
    if unknown:
        return f"{where}.function: unknown field(s) {sorted(unknown)}"
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        return f"{where}.function.name: {name!r} does not match ^[A-Za-z0-9_-]{{1,64}}$"
    parameters = function.get("parameters")
    if parameters is not None and (not isinstance(parameters, dict) or parameters.get("type") != "object"):
        return f"{where}.function.parameters: a JSON schema of type object"
    return None


def tool_choice_problem(choice: Any, tools: list[Any]) -> str | None:
    if choice is None or choice in ("auto", "none", "required"):
        return None
    names = {t["function"]["name"] for t in tools}
    named = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "function" and named in names:
        return None
    shown = orjson.dumps(choice)[:120].decode(errors="replace")
    return f"tool_choice: {shown} is not auto, none, required or a declared function"
