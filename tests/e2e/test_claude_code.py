"""The real Claude Code CLI (`claude -p`, npm @anthropic-ai/claude-code) through modelway to a
chat-only backend: it speaks Anthropic Messages (a streamed POST /v1/messages?beta=true with
three system blocks, two dozen tools, thinking, context_management and output_config), the
gateway translates to chat/completions and back, and the CLI completes a tool-using turn — the
backend calls Bash (and Read beside it, in parallel), the CLI runs them in a scratch directory,
sends their output back, and the backend's final text is the CLI's answer. A stream that breaks
mid-answer and a backend's refusal reach the CLI as Anthropic errors it acts on. Offline:
nothing but 127.0.0.1 is contacted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.agent_clis import ProxyTrap, Run, installed_cli, offline_env, run_offline
from support.agent_upstream import USAGE, AgentUpstream, Call, Refusal, Text, ToolCalls
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


def bash(name: str) -> Call:
    return Call("Bash", {"command": f"cat {name}", "description": f"Show {name}"})


def read(path: Path) -> Call:
    return Call("Read", {"file_path": str(path)})


def run_claude(claude: Path, backend: AgentUpstream, tmp_path: Path, trap: ProxyTrap, prompt: str,
               *args: str) -> tuple[Run, str]:
    """`claude -p prompt` in tmp_path/work through a gateway in front of `backend`: its run and
    a failure context (its output, the gateway's log, what the backend refused)."""
    with Gateway(gateway_config(backend)) as gateway:
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
        cmd = [str(claude), "-p", prompt, "--model", "agent-model", "--output-format", "stream-json", "--verbose",
               *args]
        run = run_offline(cmd, env, tmp_path / "work")
        log = gateway.logs()
    return run, f"{run.describe()}\n--- gateway log\n{log[-4000:]}\n--- backend refused: {backend.problems}"


def assert_offline(run: Run, trap: ProxyTrap) -> None:
    """Nothing but the gateway was contacted."""
    assert trap.attempts == [], trap.attempts
    assert run.remote_connects == [], run.remote_connects


@pytest.mark.parametrize("parallel", [False, True], ids=["one-call", "two-parallel-calls"])
def test_claude_code_completes_a_tool_turn_through_a_chat_only_backend(
    claude: Path, tmp_path: Path, trap: ProxyTrap, parallel: bool
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    secrets = [f"file-says-{uuid.uuid4().hex[:12]}" for _ in range(2)]  # only a tool's output carries these back
    (work / "note.txt").write_text(secrets[0] + "\n")
    (work / "other.txt").write_text(secrets[1] + "\n")
    calls = (bash("note.txt"), read(work / "other.txt")) if parallel else (bash("note.txt"),)
    final = f"FINAL-{uuid.uuid4().hex[:8]}"
    turns = [ToolCalls(calls, preamble="Let me look."), Text(f"Done: {final}")]

    with AgentUpstream(turns) as backend:
        run, context = run_claude(claude, backend, tmp_path, trap, "What do the notes say?", "--allowedTools", "Bash")

    assert backend.problems == [], context
    assert run.returncode == 0, context
    expected = [(c.name, c.arguments) for c in calls]
    found = secrets[: len(calls)]

    # The CLI saw the backend's calls as tool_use blocks, ran them, and ended with the backend's text and usage.
    seen = events(run.stdout)
    blocks = [block for e in seen if e.get("type") in ("assistant", "user") for block in e["message"]["content"]
              if isinstance(block, dict)]
    uses = [b for b in blocks if b["type"] == "tool_use"]
    assert [(u["name"], u["input"]) for u in uses] == expected, context
    outputs = {b["tool_use_id"]: b for b in blocks if b["type"] == "tool_result"}
    assert sorted(outputs) == sorted(u["id"] for u in uses), context
    for use, secret in zip(uses, found, strict=True):
        assert outputs[use["id"]].get("is_error") is not True, context
        assert secret in json.dumps(outputs[use["id"]]["content"]), context
    result = seen[-1]
    assert result["type"] == "result" and result["is_error"] is False, context
    assert final in result["result"], context
    usage = result["usage"]  # the backend's, summed over both steps
    assert (usage["input_tokens"], usage["output_tokens"]) == (2 * USAGE["prompt_tokens"],
                                                               2 * USAGE["completion_tokens"]), context

    # Two chat requests reached the backend, both streamed, with the backend's credential only.
    chats = backend.chats
    assert len(chats) == 2, context
    for received in backend.received:
        assert received.headers.get("Authorization") == f"Bearer {BACKEND_KEY}"
        names = {name.lower() for name in received.headers}
        assert not names & {"x-api-key", "anthropic-version", "anthropic-beta"}, names
    for chat in chats:
        assert chat["model"] == "backend-model"
        assert chat["stream"] is True
        assert chat["stream_options"] == {"include_usage": True}
        assert chat["max_tokens"] <= MAX_OUTPUT
        assert chat["messages"][0]["role"] == "system"
        assert "x-anthropic-billing-header" not in chat["messages"][0]["content"]  # Claude Code's first system block
        tool = next(t["function"] for t in chat["tools"] if t["function"]["name"] == "Bash")
        assert "command" in tool["parameters"]["properties"]

    # The second carries the calls as the backend made them, each answered by its tool's real output.
    first, second = chats
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assistant, *results = second["messages"][len(first["messages"]) :]
    assert assistant["role"] == "assistant", second["messages"][len(first["messages"]) :]
    made = assistant["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in made] == expected
    assert [r["role"] for r in results] == ["tool"] * len(calls)
    answered = {r["tool_call_id"]: r["content"] for r in results}  # in the order the tools finished
    assert sorted(answered) == sorted(c["id"] for c in made)
    for made_call, secret in zip(made, found, strict=True):
        assert secret in json.dumps(answered[made_call["id"]]), context

    assert_offline(run, trap)


def test_claude_code_recovers_from_a_stream_that_breaks_mid_answer(
    claude: Path, tmp_path: Path, trap: ProxyTrap
) -> None:
    """The backend dies after its first words: the gateway must end the translated stream as an
    error (an Anthropic error event, no message_stop), not as a complete short answer; Claude
    Code then asks again without streaming, and that answer is translated whole."""
    (tmp_path / "work").mkdir()
    final = f"FINAL-{uuid.uuid4().hex[:8]}"
    with AgentUpstream([Text(f"All is well. {final}")], break_streams=1) as backend:
        run, context = run_claude(claude, backend, tmp_path, trap, "Say hello")

    assert backend.problems == [], context
    assert run.returncode == 0, context
    result = events(run.stdout)[-1]
    assert result["type"] == "result" and result["is_error"] is False, context
    assert result["result"] == f"All is well. {final}", context  # nothing of the broken answer kept
    assert [chat.get("stream") for chat in backend.chats] == [True, None], context
    assert backend.chats[1]["max_tokens"] <= MAX_OUTPUT
    assert_offline(run, trap)


def test_a_backend_refusal_reaches_claude_code_with_its_message(claude: Path, tmp_path: Path, trap: ProxyTrap) -> None:
    """An OpenAI-shaped 400 from the backend (a prompt over its context window) comes back as an
    Anthropic error that Claude Code shows with the backend's own words, and it exits 1."""
    (tmp_path / "work").mkdir()
    message = "This model's maximum context length is 8192 tokens. However, you requested 70123 tokens."
    with AgentUpstream([Refusal(400, message)]) as backend:
        run, context = run_claude(claude, backend, tmp_path, trap, "Say hello")

    assert run.returncode == 1, context
    result = events(run.stdout)[-1]
    assert result["is_error"] is True and result["api_error_status"] == 400, context
    assert message in result["result"], context
    assert len(backend.chats) == 1, context  # a 400 is not retried
    assert_offline(run, trap)
