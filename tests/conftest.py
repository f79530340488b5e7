from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.upstream import Upstream


@pytest.fixture(scope="module")
def upstream_a() -> Iterator[Upstream]:
    server = Upstream("upstream-a", models=["a-model-1", "shared-model"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def upstream_b() -> Iterator[Upstream]:
    server = Upstream("upstream-b", models=["b-model-1", "shared-model"]).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_upstreams(request: pytest.FixtureRequest) -> None:
    for name in ("upstream_a", "upstream_b"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()
