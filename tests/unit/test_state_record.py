"""The redis state backend's in-flight record (state/redis_state.py `tick`): what one
instance publishes every 0.1 s beside its in-flight counts — its held requests per model
(the fleet's line, strategies/holding.py) and the prefill backlog it expects at each
deployment (prefix_affinity) — and what it makes of the others' records, including the
guess of their counts until the next (`DeploymentStats.fleet`). Redis itself is
replaced by the reply its script would give; tests/e2e/test_fleet_line.py runs the real one."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import orjson

from modelway.config.schema import CooldownConfig, StateConfig
from modelway.failover.health import MemoryHealth
from modelway.proxy.attempts import RequestView
from modelway.routes import ModelRoute
from modelway.state.backend import Attached
from modelway.state.redis_state import HELD, PREFILL, WAITED, RedisState

from .helpers import deployment, strategy


def test_a_record_carries_held_requests_and_backlogs_and_the_others_are_read_from_theirs() -> None:
    async def scenario() -> None:
        a, b = deployment(0, "a"), deployment(1, "b")
        chooser = strategy("expected_delay", [a, b])
        route = ModelRoute("m", chooser.model, [a, b], chooser)
        assert route.gate is not None
        state = RedisState(StateConfig(backend="redis"))
        state.attach(Attached(MemoryHealth(CooldownConfig()), {}, lambda: [a, b], {"m": route}))
        now = time.monotonic()
        a.stats.inflight = 3
        a.stats.prefilled_at = now + 1.5  # 1.5 s of prompts this instance sent to a, not yet prefilled
        held = asyncio.ensure_future(route.gate.wait(now - 2.0, 5.0))  # held here for 2 s
        await asyncio.sleep(0)
        published: list[dict[str, int]] = []
        theirs = {a.key: 2, b.key: 1, PREFILL + b.key: 800, HELD + "m": 4, WAITED + "m": 3000}

        def script(keys: list[str], args: list[Any]) -> None:
            published.append(orjson.loads(args[1]))

        async def call(operation: Any, probe: bool = False) -> Any:
            operation(None)  # the script's arguments: this instance's record
            return [b"other-instance", orjson.dumps(theirs)]  # the others' records, as the script returns them

        state.inflight_script = script  # type: ignore[assignment]
        state.link.call = call  # type: ignore[method-assign]
        await state.tick()

        (mine,) = published
        assert mine[a.key] == 3 and b.key not in mine
        assert 1400 <= mine[PREFILL + a.key] <= 1500
        assert mine[HELD + "m"] == 1 and 2000 <= mine[WAITED + "m"] <= 2100
        assert a.stats.others == 2 and b.stats.others == 1
        assert a.stats.peers == 1 and a.stats.published == 3
        view = RequestView(cast(Any, None), None, 0.0)
        assert view.inflight(a) == 3 + 2
        a.stats.inflight = 4  # one more since the tick: the other instance is guessed to have one more too
        assert view.inflight(a) == 4 + 3
        assert a.stats.others_prefilled_at == 0.0
        assert 0.7 < b.stats.others_prefilled_at - time.monotonic() <= 0.8
        (holder,) = route.gate.fleet.holders
        assert holder.instance == "other-instance" and holder.count == 4
        assert 2.9 < time.monotonic() - holder.since < 3.1  # older than the one held here
        assert route.gate.give is not None
        held.cancel()
        await state.link.close()

    asyncio.run(scenario())
