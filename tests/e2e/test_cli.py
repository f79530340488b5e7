"""The `modelway` command: check, models, and serve with the embedded demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
from support.gateway import Gateway
from support.http import post_json
from support.upstream import Upstream


def modelway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelway", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_check_valid_config_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "providers: [{name: p, kind: vllm, base_url: 'http://127.0.0.1:9/v1'}]\n"
        "models: [{name: m, deployments: [{provider: p}]}]\n"
    )
    result = modelway("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_check_prints_every_error_with_its_path_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "server: {prot: 1}\n"
        "providers: [{name: vllm-a, kind: vllm, base_url: 'http://127.0.0.1:9/v1'}]\n"
        "models: [{name: m, deployments: [{provider: vlm-a}]}]\n"
    )
    result = modelway("check", "--config", str(path))
    assert result.returncode == 1
    assert "server.prot: unknown key" in result.stderr
    assert "models[0].deployments[0].provider: unknown provider 'vlm-a' (known: vllm-a)" in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    result = modelway("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read config file" in result.stderr


def test_models_prints_the_table_and_discovers(tmp_path: Path, upstream_a: Upstream) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"providers: [{{name: vllm-a, kind: vllm, base_url: '{upstream_a.url}/v1'}},"
        " {name: gone, kind: vllm, base_url: 'http://127.0.0.1:9/v1', connect_timeout_ms: 300}]\n"
        "models: [{name: qwen, deployments: [{provider: vllm-a, model: Qwen2.5-72B, weight: 3}]}]\n"
    )
    result = modelway("models", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "qwen" in result.stdout and "Qwen2.5-72B" in result.stdout and "weight 3" in result.stdout
    assert "discovered" not in result.stdout
    result = modelway("models", "--config", str(path), "--discover")
    assert result.returncode == 0, result.stderr
    assert "vllm-a: a-model-1, shared-model" in result.stdout
    assert "gone: unavailable" in result.stdout


def test_serve_without_config_runs_the_demo() -> None:
    with Gateway(None) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="anything", max_retries=0)
        completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert completion.choices[0].message.content
        stream = client.chat.completions.create(
            model="demo-chat", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=5
        )
        words = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
        assert len(words) == 5
        vectors = client.embeddings.create(model="demo-embed", input=["a", "b"])
        assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 16
        assert vectors.data[0].embedding != vectors.data[1].embedding
        assert {m.id for m in client.models.list()} >= {"demo-chat", "demo-embed"}
        assert post_json(gateway.url, "/v1/completions", {"model": "demo-chat", "prompt": "x"}).status == 200


def test_modelway_config_env_var_is_the_same_as_flag(tmp_path: Path, upstream_a: Upstream) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"providers: [{{name: vllm-a, kind: vllm, base_url: '{upstream_a.url}/v1'}}]\n"
        "models: [{name: from-env, deployments: [{provider: vllm-a}]}]\n"
    )
    gateway = Gateway(None)
    gateway.env["MODELWAY_CONFIG"] = str(path)
    with gateway:
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "from-env", "messages": [{"role": "u"}]})
        assert reply.status == 200
        assert reply.headers["x-modelway-provider"] == "vllm-a"


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "vllm-gpustack.yaml"
    env = {**os.environ, "VLLM_TOKEN": "t1", "GPUSTACK_TOKEN": "t2"}
    result = modelway("check", "--config", str(example), env=env)
    assert result.returncode == 0, result.stderr
    assert "10 models" in result.stdout


def test_check_no_longer_warns_about_settings_now_enforced(tmp_path: Path) -> None:
    path = tmp_path / "pending.yaml"
    path.write_text(
        "auth:\n  keys: [{name: a, key: k, rpm: 10}]\n  forward_auth: {url: 'http://127.0.0.1:9/check'}\n"
        "state: {backend: redis}\n"
        "providers: [{name: p, kind: vllm, base_url: 'http://127.0.0.1:9/v1'}]\n"
        "models: [{name: m, passthrough_url: 'http://127.0.0.1:9/pass', deployments: [{provider: p}]}]\n"
    )
    result = modelway("check", "--config", str(path))
    assert result.returncode == 0
    # Enforced now: rate limits, forward auth, the redis state backend, passthrough_url.
    assert "warning" not in result.stderr


def test_serve_with_two_workers_and_each_http_protocol(upstream_a: Upstream) -> None:
    """`--workers 2` spawns workers that each load modelway's HTTP protocol (or uvicorn's,
    with MODELWAY_HTTP=uvicorn) and serve; both protocols answer the same way."""
    config = {
        "providers": [{"name": "vllm-a", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "m", "deployments": [{"provider": "vllm-a"}]}],
    }
    for protocol in ("modelway", "uvicorn"):
        gateway = Gateway(config, workers=2)
        gateway.env["MODELWAY_HTTP"] = protocol
        with gateway:
            for _ in range(8):  # a new connection each: the kernel spreads them over the workers
                reply = post_json(gateway.url, "/v1/chat/completions", {"model": "m", "messages": [{"role": "u"}]})
                assert reply.status == 200, (protocol, reply.body)
                assert reply.headers["x-modelway-provider"] == "vllm-a"


def test_serve_refuses_an_unknown_http_protocol() -> None:
    result = modelway("serve", "--port", "1", env={**os.environ, "MODELWAY_HTTP": "h11"})
    assert result.returncode != 0
    assert "MODELWAY_HTTP must be 'modelway' or 'uvicorn'" in result.stderr
