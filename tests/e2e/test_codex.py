"""The real Codex CLI (`codex exec`, npm @openai/codex) through modelway to a chat-only backend:
Codex speaks only the OpenAI Responses API (a streamed POST /v1/responses with developer
messages, function tools, a namespace tool and a hosted web_search tool, store false), the
gateway translates to chat/completions and back, and Codex completes a tool-using turn — the
backend calls exec_command, Codex runs it in its sandbox in a scratch directory, sends the
output back as a function_call_output, and the backend's final text is Codex's answer.
Offline: nothing but 127.0.0.1 is contacted."""

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

CLIENT_KEY = "sk-client-codex"
BACKEND_KEY = "backend-secret-codex"


def gateway_config(backend: AgentUpstream) -> dict[str, Any]:
    return {
        "auth": {"keys": [{"name": "codex", "key": CLIENT_KEY}]},
        "providers": [
            {
                "name": "chat-backend",
                "kind": "openai-compatible",  # responses_api defaults to translate for this kind
                "base_url": f"{backend.url}/v1",
                "auth": {"header": {"Authorization": f"Bearer {BACKEND_KEY}"}},
            }
        ],
        "models": [{"name": "agent-model", "deployments": [{"provider": "chat-backend", "model": "backend-model"}]}],
    }


def codex_config(gateway_url: str) -> str:
    """$HOME/.codex/config.toml: the gateway as a custom provider speaking the Responses API, and
    everything that would reach another host (update checks, analytics, feedback, plugins) off."""
    return f"""\
model = "agent-model"
model_provider = "modelway"
check_for_update_on_startup = false

[model_providers.modelway]
name = "modelway"
base_url = "{gateway_url}/v1"
wire_api = "responses"
env_key = "MODELWAY_API_KEY"

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
"""


@pytest.fixture
def codex() -> Path:
    return installed_cli("codex")


@pytest.fixture
def trap() -> Iterator[ProxyTrap]:
    with ProxyTrap() as server:
        yield server


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_codex_completes_a_tool_turn_through_a_chat_only_backend(codex: Path, tmp_path: Path, trap: ProxyTrap) -> None:
    secret = f"file-says-{uuid.uuid4().hex[:12]}"  # only the tool's output can carry this back
    final = f"FINAL-{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    work.mkdir()
    (work / "note.txt").write_text(secret + "\n")
    command = {"cmd": "cat note.txt"}
    turns = [ToolCall("exec_command", command, preamble="Reading the note."), Text(f"The note says {secret}. {final}")]

    with AgentUpstream(turns) as backend, Gateway(gateway_config(backend)) as gateway:
        env = offline_env(tmp_path, trap, {"MODELWAY_API_KEY": CLIENT_KEY})
        codex_home = Path(env["HOME"]) / ".codex"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(codex_config(gateway.url))
        cmd = [str(codex), "exec", "--skip-git-repo-check", "--ephemeral", "--json", "What does note.txt say?"]
        run = run_offline(cmd, env, work)
        log = gateway.logs()

    context = f"{run.describe()}\n--- gateway log\n{log[-4000:]}\n--- backend refused: {backend.problems}"
    assert backend.problems == [], context
    assert run.returncode == 0, context
    # Codex ran the backend's call and ended with the backend's text and usage, without a retry.
    seen = events(run.stdout)
    assert not any(e.get("type") in ("turn.failed", "error") for e in seen), context
    items = [e["item"] for e in seen if e.get("type") == "item.completed"]
    commands = [i for i in items if i.get("type") == "command_execution"]
    assert len(commands) == 1 and commands[0]["command"].endswith("'cat note.txt'"), context
    assert commands[0]["exit_code"] == 0 and secret in commands[0]["aggregated_output"], context
    assert final in [i for i in items if i.get("type") == "agent_message"][-1]["text"], context
    usage = next(e["usage"] for e in seen if e.get("type") == "turn.completed")  # summed over both steps
    assert (usage["input_tokens"], usage["output_tokens"]) == (2 * USAGE["prompt_tokens"],
                                                               2 * USAGE["completion_tokens"]), context

    # Two chat requests reached the backend, both streamed, with the backend's credential only.
    chats = backend.chats
    assert len(chats) == 2, context
    for received in backend.received:
        assert received.headers.get("Authorization") == f"Bearer {BACKEND_KEY}"
    for chat in chats:
        assert chat["model"] == "backend-model"
        assert chat["stream"] is True
        assert chat["messages"][0]["role"] == "system"  # Codex's developer messages
        names = [t["function"]["name"] for t in chat["tools"]]
        assert "exec_command" in names
        assert "web_search" not in names  # a hosted tool a chat backend cannot run: dropped
        exec_command = next(t["function"] for t in chat["tools"] if t["function"]["name"] == "exec_command")
        assert "cmd" in exec_command["parameters"]["properties"]

    # The second carries the call as the backend made it and the command's real output as its result.
    first, second = chats
    assert len(second["messages"]) > len(first["messages"])
    calls = [m for m in second["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    assert len(calls) == 1
    call = calls[0]["tool_calls"][0]
    assert call["function"]["name"] == "exec_command"
    assert json.loads(call["function"]["arguments"]) == command
    results = [m for m in second["messages"] if m["role"] == "tool"]
    assert [r["tool_call_id"] for r in results] == [call["id"]]
    assert secret in json.dumps(results[0]["content"]), context

    # Nothing but the gateway was contacted.
    assert trap.attempts == [], trap.attempts
    assert run.remote_connects == [], run.remote_connects
