"""The real Codex CLI (`codex exec`, npm @openai/codex) through modelway to a chat-only backend:
Codex speaks only the OpenAI Responses API (a streamed POST /v1/responses with developer
messages, function tools, a namespace tool and a hosted web_search tool, store false), the
gateway translates to chat/completions and back, and Codex completes a tool-using turn — the
backend calls exec_command (once, or twice in parallel), Codex runs it in its sandbox in a
scratch directory, sends the output back as function_call_output items, and the backend's final
text is Codex's answer.
Offline: nothing but 127.0.0.1 is contacted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.agent_clis import ProxyTrap, installed_cli, offline_env, run_offline
from support.agent_upstream import USAGE, AgentUpstream, Call, Text, ToolCalls
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


def cat(name: str) -> Call:
    return Call("exec_command", {"cmd": f"cat {name}"})


@pytest.mark.parametrize("parallel", [False, True], ids=["one-call", "two-parallel-calls"])
def test_codex_completes_a_tool_turn_through_a_chat_only_backend(
    codex: Path, tmp_path: Path, trap: ProxyTrap, parallel: bool
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    secrets = [f"file-says-{uuid.uuid4().hex[:12]}" for _ in range(2)]  # only a tool's output carries these back
    (work / "note.txt").write_text(secrets[0] + "\n")
    (work / "other.txt").write_text(secrets[1] + "\n")
    calls = (cat("note.txt"), cat("other.txt")) if parallel else (cat("note.txt"),)
    final = f"FINAL-{uuid.uuid4().hex[:8]}"
    turns = [ToolCalls(calls, preamble="Reading."), Text(f"Done: {final}")]

    with AgentUpstream(turns) as backend, Gateway(gateway_config(backend)) as gateway:
        env = offline_env(tmp_path, trap, {"MODELWAY_API_KEY": CLIENT_KEY})
        codex_home = Path(env["HOME"]) / ".codex"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(codex_config(gateway.url))
        cmd = [str(codex), "exec", "--skip-git-repo-check", "--ephemeral", "--json", "What do the notes say?"]
        run = run_offline(cmd, env, work)
        log = gateway.logs()

    context = f"{run.describe()}\n--- gateway log\n{log[-4000:]}\n--- backend refused: {backend.problems}"
    assert backend.problems == [], context
    assert run.returncode == 0, context
    expected = [(c.name, c.arguments) for c in calls]
    found = secrets[: len(calls)]

    # Codex ran the backend's calls and ended with the backend's text and usage, without a retry.
    seen = events(run.stdout)
    assert not any(e.get("type") in ("turn.failed", "error") for e in seen), context
    items = [e["item"] for e in seen if e.get("type") == "item.completed"]
    commands = {i["command"]: i for i in items if i.get("type") == "command_execution"}
    assert len(commands) == len(calls), context
    for call, secret in zip(calls, found, strict=True):
        command = next(c for text, c in commands.items() if text.endswith(f"'{call.arguments['cmd']}'"))
        assert command["exit_code"] == 0 and secret in command["aggregated_output"], context
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
        assert "web_search" not in names  # a hosted tool a chat backend cannot run: left out
        assert any(name.startswith("multi_agent_v1__") for name in names)  # a namespace tool's members, flattened
        tool = next(t["function"] for t in chat["tools"] if t["function"]["name"] == "exec_command")
        assert "cmd" in tool["parameters"]["properties"]

    # The second carries the calls as the backend made them, each answered by its command's real output.
    first, second = chats
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assistant, *results = second["messages"][len(first["messages"]) :]
    assert assistant["role"] == "assistant", second["messages"][len(first["messages"]) :]
    made = assistant["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in made] == expected
    assert [r["role"] for r in results] == ["tool"] * len(calls)
    answered = {r["tool_call_id"]: r["content"] for r in results}
    assert sorted(answered) == sorted(c["id"] for c in made)
    for made_call, secret in zip(made, found, strict=True):
        assert secret in json.dumps(answered[made_call["id"]]), context

    # Nothing but the gateway was contacted.
    assert trap.attempts == [], trap.attempts
    assert run.remote_connects == [], run.remote_connects
