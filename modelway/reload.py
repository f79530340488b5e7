"""Reloading the config without a restart: on a change of the file (`server.watch_config`)
and on POST /admin/reload.

A reload reads and validates the file, builds a new Runtime from it (taking over what did
not change: see Runtime), starts it, and swaps the one reference requests start on.
Requests and streams in flight finish on the old runtime, which closes once they have.
An invalid file changes nothing: the old config keeps serving, every error is logged with
its YAML path, and `modelway_config_reloads_total{result="error"}` counts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelway.config import load_config
from modelway.config.schema import Config
from modelway.config.secrets import config_secrets
from modelway.errors import ConfigError
from modelway.logs import add_secrets
from modelway.runtime import Runtime, RuntimeRef

log = logging.getLogger("modelway.reload")

# watchfiles waits this long for a burst of writes to settle (its default is 1.6 s, which
# with the time to build the runtime would break the promise of a reload within 2 s).
WATCH_DEBOUNCE_MS = 200
WATCH_STEP_MS = 50


@dataclass(slots=True)
class Changes:
    """What a reload changed, by name."""

    providers: dict[str, list[str]] = field(default_factory=dict)  # added / removed / changed / kept
    models: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"providers": self.providers, "models": self.models}

    def describe(self) -> str:
        parts = []
        for kind, groups in (("providers", self.providers), ("models", self.models)):
            for verb in ("added", "removed", "changed"):
                if groups.get(verb):
                    parts.append(f"{kind} {verb}: {', '.join(groups[verb])}")
        return "; ".join(parts) or "no provider or model changed"


def compare(old: Config, new: Config) -> Changes:
    changes = Changes()
    for kind, before, after in (
        ("providers", {p.name: p for p in old.providers}, {p.name: p for p in new.providers}),
        ("models", {m.name: m for m in old.models}, {m.name: m for m in new.models}),
    ):
        groups = {
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
            "changed": sorted(n for n in before.keys() & after.keys() if before[n] != after[n]),
            "kept": sorted(n for n in before.keys() & after.keys() if before[n] == after[n]),
        }
        setattr(changes, kind, groups)
    return changes


class Reloader:
    """Owns the swap of `ref.current`; one reload at a time."""

    def __init__(self, ref: RuntimeRef, path: str | None) -> None:
        self.ref = ref
        self.path = path
        self.lock = asyncio.Lock()
        self.retiring: set[asyncio.Task[None]] = set()
        self.watcher: asyncio.Task[None] | None = None

    async def reload(self) -> Changes:
        """Load the file again and swap it in; raises ConfigError (nothing changed) when invalid."""
        async with self.lock:
            old = self.ref.current
            if self.path is None:
                error = ConfigError([("", "the gateway serves the embedded demo config: there is no file to reload")])
                self.failed(old, error)
                raise error
            try:
                config = await asyncio.to_thread(load_config, self.path)
                new = Runtime(config, previous=old)
                await new.start()
            except ConfigError as exc:
                self.failed(old, exc)
                raise
            add_secrets(config_secrets(config))  # the old ones stay redacted as well
            self.ref.current = new
            changes = compare(old.config, config)
            old.metrics.config_reloads["ok"] += 1
            log.info("config reloaded from %s: %s", self.path, changes.describe())
            task = asyncio.get_running_loop().create_task(old.retire(new))
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)
            return changes

    def failed(self, runtime: Runtime, error: ConfigError) -> None:
        runtime.metrics.config_reloads["error"] += 1
        log.error("config reload failed (%d error%s); the old config keeps serving", len(error.errors),
                  "s" * (len(error.errors) != 1))
        for line in str(error).splitlines():
            log.error("config: %s", line)

    def watch(self) -> None:
        """Reload whenever the config file changes (server.watch_config)."""
        if self.path is not None and self.watcher is None:
            self.watcher = asyncio.get_running_loop().create_task(self.watch_file(self.path))

    async def watch_file(self, path: str) -> None:
        from watchfiles import awatch  # imported only when watching: nothing is paid otherwise

        target = Path(path).resolve()
        # The directory is watched, not the file: editors and config-map updates replace
        # the file (a rename), which a watch on the old file would not see.
        async for _ in awatch(
            target.parent,
            watch_filter=lambda _change, changed: Path(changed).resolve() == target
            or os.path.basename(changed) == "..data",  # Kubernetes swaps a ConfigMap's files by this link
            debounce=WATCH_DEBOUNCE_MS,
            step=WATCH_STEP_MS,
        ):
            try:
                await self.reload()
            except ConfigError:
                pass  # logged and counted; the old config serves on
            except Exception:
                log.exception("config reload failed; the old config keeps serving")

    async def close(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            await asyncio.gather(self.watcher, return_exceptions=True)
            self.watcher = None
