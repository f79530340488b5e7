"""The real Claude Code CLI (`claude -p`, npm @anthropic-ai/claude-code) through modelway to a
chat-only backend: it speaks Anthropic Messages (a streamed POST /v1/messages?beta=true with
three system blocks, two dozen tools, thinking, context_management and output_config), the
gateway translates to chat/completions and back, and the CLI completes a tool-using turn — the
backend calls Bash, the CLI runs it in a scratch directory, sends the output back, and the
backend's final text is the CLI's answer. Offline: nothing but 127.0.0.1 is contacted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.agent_clis import ProxyTrap, installed_cli, offline_env, run_offline
from support.agent_upstream import USAGE, AgentUpstream, Text, ToolCall
from support.gateway import Gateway

CLIENT_KEY = "sk-client-claude-code"
BACKEND_KEY = "backend-secret-claude"
MAX_OUTPUT = 8192  # the deployment's cap; Claude Code asks for 32,000-64,000


def gateway_config(backend: AgentUpstream) -> dict[str, Any]:
    return {
        "auth": {"keys": [{"name": "claude-code", "key": CLIENT_KEY}]},
        "providers": [
            {
                "name": "chat-backend",
                "kind": "openai-compatible",
                "base_url": f"{backend.url}/v1",
                "auth": {"header": {"Authorization": f"Bearer {BACKEND_KEY}"}},
            }
        ],
        "models": [
            {
                "name": "agent-model",
                "deployments": [
                    {"provider": "chat-backend", "model": "backend-model", "max_output_tokens": MAX_OUTPUT}
                ],
            }
        ],
    }


@pytest.fixture
def claude() -> Path:
    return installed_cli("claude")


@pytest.fixture
def trap() -> Iterator[ProxyTrap]:
    with ProxyTrap() as server:
        yield server


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_claude_code_completes_a_tool_turn_through_a_chat_only_backend(
    claude: Path, tmp_path: Path, trap: ProxyTrap
) -> None:
    secret = f"file-says-{uuid.uuid4().hex[:12]}"  # only the tool's output can carry this back
    final = f"FINAL-{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    work.mkdir()
    (work / "note.txt").write_text(secret + "\n")
    command = {"command": "cat note.txt", "description": "Show the note"}
    turns = [ToolCall("Bash", command, preamble="Let me read the note."), Text(f"The note says {secret}. {final}")]

    with AgentUpstream(turns) as backend, Gateway(gateway_config(backend)) as gateway:
        env = offline_env(
            tmp_path,
            trap,
            {
                "ANTHROPIC_BASE_URL": gateway.url,
                "ANTHROPIC_API_KEY": CLIENT_KEY,
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_TELEMETRY": "1",
                "DISABLE_AUTOUPDATER": "1",
                "DISABLE_ERROR_REPORTING": "1",
            },
        )
        cmd = [str(claude), "-p", "What does note.txt say?", "--model", "agent-model",
               "--allowedTools", "Bash", "--output-format", "stream-json", "--verbose"]
        run = run_offline(cmd, env, work)
        log = gateway.logs()

    context = f"{run.describe()}\n--- gateway log\n{log[-4000:]}\n--- backend refused: {backend.problems}"
    assert backend.problems == [], context
    assert run.returncode == 0, context
    # The CLI saw the backend's call as a tool_use, ran it, and ended with the backend's text and usage.
    seen = events(run.stdout)
    blocks = [block for e in seen if e.get("type") in ("assistant", "user") for block in e["message"]["content"]
              if isinstance(block, dict)]
    uses = [b for b in blocks if b["type"] == "tool_use"]
    assert [(u["name"], u["input"]) for u in uses] == [("Bash", command)], context
    outputs = [b for b in blocks if b["type"] == "tool_result"]
    assert [o["tool_use_id"] for o in outputs] == [uses[0]["id"]], context
    assert outputs[0]["is_error"] is False and secret in json.dumps(outputs[0]["content"]), context
    result = seen[-1]
    assert result["type"] == "result" and result["is_error"] is False, context
    assert final in result["result"] and result["num_turns"] == 2, context
    usage = result["usage"]  # the backend's, summed over both steps
    assert (usage["input_tokens"], usage["output_tokens"]) == (2 * USAGE["prompt_tokens"],
                                                               2 * USAGE["completion_tokens"]), context

    # Two chat requests reached the backend, both streamed, with the backend's credential only.
    chats = backend.chats
    assert len(chats) == 2, context
    for received in backend.received:
        assert received.headers.get("Authorization") == f"Bearer {BACKEND_KEY}"
        assert "x-api-key" not in {name.lower() for name in received.headers}
    for chat in chats:
        assert chat["model"] == "backend-model"
        assert chat["stream"] is True
        assert chat["stream_options"] == {"include_usage": True}
        assert chat["max_tokens"] <= MAX_OUTPUT
        assert chat["messages"][0]["role"] == "system"
        bash = next(t["function"] for t in chat["tools"] if t["function"]["name"] == "Bash")
        assert "command" in bash["parameters"]["properties"]

    # The second carries the call as the backend made it and the tool's real output as its result.
    first, second = chats
    assert len(second["messages"]) > len(first["messages"])
    calls = [m for m in second["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    assert len(calls) == 1
    call = calls[0]["tool_calls"][0]
    assert call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == command
    results = [m for m in second["messages"] if m["role"] == "tool"]
    assert [r["tool_call_id"] for r in results] == [call["id"]]
    assert secret in json.dumps(results[0]["content"]), context

    # Nothing but the gateway was contacted.
    assert trap.attempts == [], trap.attempts
    assert run.remote_connects == [], run.remote_connects
