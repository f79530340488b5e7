"""The checks the coding-agent CLI tests rely on can fail: the strace reader finds a connection
outside loopback, the proxy trap records an attempt, the chat-only backend refuses what a strict
chat backend would, and its scripted streams are well-formed chat chunks."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from support.agent_clis import ProxyTrap, remote_connects
from support.agent_upstream import Call, Text, ToolCalls, chat_problem, stream_chunks, tool_call

TRACE = """\
101 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
101 connect(21, {sa_family=AF_INET, sin_port=htons(4000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
102 connect(18, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0
102 connect(19, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", \
&sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH (Network is unreachable)
103 connect(20, {sa_family=AF_INET6, sin6_port=htons(4000), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", \
&sin6_addr), sin6_scope_id=0}, 28) = 0
103 connect(22, {sa_family=AF_INET6, sin6_port=htons(4000), sin6_flowinfo=htonl(0), \
inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0
104 connect(23, {sa_family=AF_INET, sin_port=htons(4000), sin_addr=inet_addr("127.8.9.10")}, 16) = 0
"""


def test_remote_connects_reports_only_addresses_outside_loopback() -> None:
    assert remote_connects(TRACE) == ["10.255.255.53:53", "2001:db8::1:443"]
    assert remote_connects("") == []


def test_the_proxy_trap_records_a_client_that_honours_proxy_variables() -> None:
    with ProxyTrap() as trap:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": trap.url}))
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open("http://telemetry.example.invalid/v1/events", timeout=5)
    assert refused.value.code == 403
    assert trap.attempts == ["GET http://telemetry.example.invalid/v1/events HTTP/1.1"]


def good_chat() -> dict[str, Any]:
    return {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 100,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "out"},
        ],
        "tools": [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
    }


def test_a_well_formed_chat_request_passes() -> None:
    assert chat_problem(good_chat()) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda b: b.update(thinking={"type": "adaptive"}), "unknown chat/completions parameter(s): thinking"),
        (lambda b: b.update(system=[{"type": "text", "text": "x"}]), "unknown chat/completions parameter(s): system"),
        (lambda b: b["messages"].append({"role": "system", "content": "late"}), "messages[4]: a system message"),
        (lambda b: b["messages"].pop(), "tool call(s) ['c1'] of the last assistant message have no tool message"),
        (lambda b: b["messages"][3].update(tool_call_id="c2"), "messages[3]: tool message for 'c2'"),
        (lambda b: b["messages"][1].update(content=[{"type": "text", "text": "hi", "cache_control": {}}]),
         "messages[1].content[0]: not a chat content part"),
        (lambda b: b["tools"][0]["function"].update(input_schema={}), "tools[0].function: unknown field(s)"),
        (lambda b: b["tools"][0]["function"].update(name="multi_agent.spawn"), "tools[0].function.name"),
        (lambda b: b.update(tool_choice={"type": "tool", "name": "Bash"}), "tool_choice:"),
        (lambda b: b.update(user="u" * 65), "user: a string of at most 64 characters"),
        (lambda b: b["messages"][2]["tool_calls"][0]["function"].update(arguments="{"), "not valid JSON"),
    ],
)
def test_what_a_strict_chat_backend_refuses(change: Any, expected: str) -> None:
    body = good_chat()
    change(body)
    problem = chat_problem(body)
    assert problem is not None and expected in problem, problem


def test_a_streamed_tool_call_splits_its_arguments_and_reassembles() -> None:
    arguments = {"command": "cat note.txt", "description": "Show the note"}
    chunks = stream_chunks("m", tool_call("Bash", arguments, preamble="Let me look."), include_usage=True)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    text = "".join(d.get("content") or "" for d in deltas)
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert text == "Let me look."
    assert calls[0]["id"] and calls[0]["function"]["name"] == "Bash"
    assert len([c for c in calls if c["function"]["arguments"]]) >= 3
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == arguments
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_a_streamed_text_finishes_with_stop_and_no_usage_unless_asked() -> None:
    chunks = stream_chunks("m", Text("all done"), include_usage=False)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "all done"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_parallel_calls_stream_one_after_the_other_keyed_by_index() -> None:
    calls = (Call("Bash", {"command": "cat a"}), Call("Read", {"file_path": "/tmp/b"}))
    chunks = stream_chunks("m", ToolCalls(calls), include_usage=False)
    pieces: dict[int, list[dict[str, Any]]] = {}
    for c in chunks:
        for call in c["choices"][0]["delta"].get("tool_calls", []):
            pieces.setdefault(call["index"], []).append(call)
    assert sorted(pieces) == [0, 1]
    for index, call in enumerate(calls):
        assert pieces[index][0]["function"]["name"] == call.name
        assert json.loads("".join(p["function"]["arguments"] for p in pieces[index])) == call.arguments
    assert pieces[0][0]["id"] != pieces[1][0]["id"]
