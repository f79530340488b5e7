"""The /ui status page in a real browser: headless Chromium loads it after traffic, and the
rendered page shows every provider and model of the config and numbers that moved. A
screenshot is kept as a test artifact (tests/artifacts/status-page.png)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from support.gateway import Gateway
from support.http import request

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ADMIN_KEY = "admin-canary-4f1d"
CONFIG = {
    "auth": {"admin_key": ADMIN_KEY},
    "providers": [
        {"name": "sim-fast", "kind": "simulated", "simulate": {"latency_ms": 5, "tokens_per_s": 2000}},
        {"name": "sim-slow", "kind": "simulated", "simulate": {"latency_ms": 20, "tokens_per_s": 1000}},
    ],
    "models": [
        {"name": "chat-main", "deployments": [
            {"provider": "sim-fast", "model": "fast-7b", "weight": 3, "input_cost_per_mtok": 1.0,
             "output_cost_per_mtok": 2.0},
            {"provider": "sim-slow", "model": "slow-70b", "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0},
        ]},
        {"name": "chat-spare", "deployments": [{"provider": "sim-slow", "model": "spare-8b"}]},
    ],
}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("chromium is not installed (scripts/test.sh installs Debian's chromium package)")
    return found


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with Gateway(CONFIG) as gw:
        yield gw


def render(browser: str, url: str, screenshot: Path | None = None) -> str:
    """The page's DOM once its script has fetched and rendered the status."""
    with tempfile.TemporaryDirectory() as profile:
        flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--window-size=1400,1000"]
        dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=True)
        if screenshot is not None:
            subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=60, check=True)
    return dom.stdout


def test_status_page_shows_the_fleet_and_moving_numbers(gateway: Gateway) -> None:
    browser = chromium()
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    for _ in range(12):
        client.chat.completions.create(model="chat-main", messages=[{"role": "user", "content": "hello there"}])
    for _chunk in client.chat.completions.create(
        model="chat-main", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream please"}],
    ):
        pass
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    url = f"http://admin:{ADMIN_KEY}@127.0.0.1:{gateway.port}/ui"
    dom = render(browser, url, shot)
    for name in ("sim-fast", "sim-slow", "chat-main", "chat-spare", "fast-7b", "slow-70b", "spare-8b"):
        assert name in dom, name
    assert 'id="error" style="display: none;"' in dom  # the last refresh worked
    # 13 requests went through: the total and the decisions table show them
    assert '<div class="value" id="t-requests">13</div>' in dom
    assert dom.count("strategy weighted_round_robin") >= 13
    assert shot.stat().st_size > 10_000
    assert ADMIN_KEY not in dom


def test_status_json_moves_and_is_protected(gateway: Gateway) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    before = request(gateway.url, "GET", "/ui/status.json", headers=auth).json()
    openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0).chat.completions.create(
        model="chat-spare", messages=[{"role": "user", "content": "hi"}]
    )
    after = request(gateway.url, "GET", "/ui/status.json", headers=auth).json()
    assert after["totals"]["requests"] == before["totals"]["requests"] + 1
    spare = next(d for d in after["deployments"] if d["model"] == "chat-spare")
    assert spare["requests"] >= 1 and spare["output_tokens"] > 0 and spare["latency_p50_s"] > 0
    assert after["decisions"][0]["model"] == "chat-spare"

    for path in ("/ui", "/ui/status.json"):
        denied = request(gateway.url, "GET", path)
        assert denied.status == 401
        assert denied.headers["www-authenticate"].startswith("Basic")
        wrong = request(gateway.url, "GET", path, headers={"Authorization": "Bearer not-the-key"})
        assert wrong.status == 401
        basic = base64.b64encode(f"anyone:{ADMIN_KEY}".encode()).decode()
        assert request(gateway.url, "GET", path, headers={"Authorization": f"Basic {basic}"}).status == 200
