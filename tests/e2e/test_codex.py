"""The real Codex CLI (`codex exec`, npm @openai/codex) through modelway to a chat-only backend:
Codex speaks only the OpenAI Responses API (a streamed POST /v1/responses with developer
messages, function tools, a namespace tool and a hosted web_search tool, store false), the
gateway translates to chat/completions and back, and Codex completes a tool-using turn — the
backend calls exec_command (once, or twice in parallel), Codex runs it in its sandbox in a
scratch directory, sends the output back as function_call_output items, and the backend's final
text is Codex's answer. A stream that breaks mid-answer and a backend's refusal reach Codex as
Responses errors it acts on.
Offline: nothing but 127.0.0.1 is contacted."""

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


def run_codex(codex: Path, backend: AgentUpstream, tmp_path: Path, trap: ProxyTrap, prompt: str) -> tuple[Run, str]:
    """`codex exec prompt` in tmp_path/work through a gateway in front of `backend`: its run and a
    failure context (its output, the gateway's log, what the backend refused)."""
    with Gateway(gateway_config(backend)) as gateway:
        env = offline_env(tmp_path, trap, {"MODELWAY_API_KEY": CLIENT_KEY})
        codex_home = Path(env["HOME"]) / ".codex"
        codex_home.mkdir(exist_ok=True)
        (codex_home / "config.toml").write_text(codex_config(gateway.url))
        cmd = [str(codex), "exec", "--skip-git-repo-check", "--ephemeral", "--json", prompt]
        run = run_offline(cmd, env, tmp_path / "work")
        log = gateway.logs()
    return run, f"{run.describe()}\n--- gateway log\n{log[-4000:]}\n--- backend refused: {backend.problems}"


def assert_offline(run: Run, trap: ProxyTrap) -> None:
    """Nothing but the gateway was contacted."""
    assert trap.attempts == [], trap.attempts
    assert run.remote_connects == [], run.remote_connects


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

    with AgentUpstream(turns) as backend:
        run, context = run_codex(codex, backend, tmp_path, trap, "What do the notes say?")

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

    assert_offline(run, trap)


def test_codex_recovers_from_a_stream_that_breaks_mid_answer(codex: Path, tmp_path: Path, trap: ProxyTrap) -> None:
    """The backend dies after its first words: the gateway must end the translated stream with
    response.failed (not response.completed over a short answer); Codex reports it, reconnects,
    and the second stream's answer is its whole answer."""
    (tmp_path / "work").mkdir()
    final = f"FINAL-{uuid.uuid4().hex[:8]}"
    with AgentUpstream([Text(f"All is well. {final}")], break_streams=1) as backend:
        run, context = run_codex(codex, backend, tmp_path, trap, "Say hello")

    assert backend.problems == [], context
    assert run.returncode == 0, context
    seen = events(run.stdout)
    retries = [e["message"] for e in seen if e.get("type") == "error"]
    assert len(retries) == 1 and "Reconnecting... 1/" in retries[0] and "broke off" in retries[0], context
    answers = [e["item"]["text"] for e in seen if e.get("type") == "item.completed"
               and e["item"].get("type") == "agent_message"]
    assert answers == [f"All is well. {final}"], context
    assert [chat["stream"] for chat in backend.chats] == [True, True], context
    assert_offline(run, trap)


def test_a_backend_refusal_reaches_codex_with_its_code(codex: Path, tmp_path: Path, trap: ProxyTrap) -> None:
    """An OpenAI-shaped 400 from the backend with code context_length_exceeded reaches Codex with
    that code, which it knows: it says it ran out of context window, and fails the turn without
    retrying."""
    (tmp_path / "work").mkdir()
    message = "This model's maximum context length is 8192 tokens. However, you requested 70123 tokens."
    with AgentUpstream([Refusal(400, message)]) as backend:
        run, context = run_codex(codex, backend, tmp_path, trap, "Say hello")

    assert run.returncode == 1, context
    failed = [e for e in events(run.stdout) if e.get("type") == "turn.failed"]
    assert len(failed) == 1 and "context window" in failed[0]["error"]["message"], context
    assert len(backend.chats) == 1, context
    assert_offline(run, trap)
