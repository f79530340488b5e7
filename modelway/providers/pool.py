"""aiohttp's TCPConnector with a cap on idle keep-alive connections (`keepalive_pool`).

aiohttp caps connections in use (`limit`) but keeps every idle one until
keepalive_timeout. A burst of 1,000 streams would leave 1,000 idle sockets to one
upstream; this trims the idle list to `idle_limit` each time a connection comes back,
closing the oldest first.
"""

from __future__ import annotations

from typing import Any

import aiohttp


class PoolConnector(aiohttp.TCPConnector):
    def __init__(self, *, idle_limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._idle_limit = idle_limit

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        # `_conns` is aiohttp's private idle list per ConnectionKey (oldest first); when a
        # future aiohttp renames it the cap silently stops applying, never breaking requests.
        idle = getattr(self, "_conns", {}).get(key)
        while idle and len(idle) > self._idle_limit:
            stale, _ = idle.popleft()
            stale.close()
