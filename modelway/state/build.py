"""The state backend a config asks for (`state.backend`)."""

from __future__ import annotations

from modelway.config.schema import StateConfig
from modelway.state.backend import MemoryState, StateBackend


def build_state(config: StateConfig) -> StateBackend:
    if config.backend == "redis":
        from modelway.state.redis_state import RedisState  # only a redis backend pays for its import

        return RedisState(config)
    return MemoryState()
