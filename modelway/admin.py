"""The admin API (only with `auth.admin_key`; the key as `Authorization: Bearer`, compared in
constant time): GET /admin/state, GET /admin/config, POST /admin/reload.

Nothing in an admin request is evaluated or imported: reload re-reads the config file the
gateway was started with, and state and config are read-only views.
"""

from __future__ import annotations

import time
from typing import Any

from modelway.adminauth import check_admin
from modelway.asgi import Send
from modelway.config.secrets import redacted_config
from modelway.errors import BadRequest, ConfigError, Unauthorized
from modelway.proxy.responses import send_json
from modelway.reload import Reloader
from modelway.runtime import Runtime
from modelway.status import status


def authorize_admin(runtime: Runtime, scope: dict[str, Any]) -> None:
    admin_key = runtime.config.auth.admin_key
    if admin_key is None:
        raise Unauthorized("the admin API is disabled: set auth.admin_key in the config", code="admin_disabled")
    check_admin(admin_key, dict(scope["headers"]).get(b"authorization"))


def key_pools(runtime: Runtime) -> list[dict[str, Any]]:
    """Each provider's credentials by index (never by value), with their state."""
    now = time.monotonic()
    pools = []
    for name, provider in runtime.providers.items():
        pool = provider.credentials
        pools.append({
            "provider": name,
            "pooled": pool.pooled,
            "keys": [
                {
                    "index": c.index,
                    "disabled": c.disabled,
                    "cooldown_s": round(c.cooled_until - now, 1) if c.cooled_until > now else 0.0,
                }
                for c in pool.credentials
            ],
        })
    return pools


async def admin_state(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    authorize_admin(runtime, scope)
    state = status(runtime)
    state["key_pools"] = key_pools(runtime)
    state["state_backend"] = runtime.state.describe()
    await send_json(send, 200, state)


async def admin_config(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    authorize_admin(runtime, scope)
    await send_json(send, 200, redacted_config(runtime.config))


async def admin_reload(runtime: Runtime, scope: dict[str, Any], send: Send, reloader: Reloader) -> None:
    authorize_admin(runtime, scope)
    try:
        changes = await reloader.reload()
    except ConfigError as exc:
        error = BadRequest(f"the config is invalid ({len(exc.errors)} errors); the old config keeps serving: "
                           + "; ".join(f"{p}: {m}" if p else m for p, m in exc.errors), code="invalid_config")
        await send_json(send, 400, {"error": {
            "message": error.message, "type": error.type, "param": None, "code": error.code,
            "errors": [{"path": p, "message": m} for p, m in exc.errors],
        }})
        return
    await send_json(send, 200, {"status": "reloaded", "changes": changes.summary()})
