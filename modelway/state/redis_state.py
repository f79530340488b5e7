"""The redis state backend: instances share state through one Redis, beside the request path.

Keys (all under `state.key_prefix`, with hash tags so that Redis Cluster keeps each group
on one slot):

    <prefix>{limit}:<key name>           rpm/tpm buckets (state/limits.py), one script per request
    <prefix>{state}:events               a stream of health and pool-key events (state/shared.py)
    <prefix>{state}:affinity             a stream of batches of affinity records (state/affinity.py)
    <prefix>{state}:instances            a sorted set of the live instances
    <prefix>{state}:inflight:<instance>  an instance's in-flight counts, with a TTL

Three background tasks, none of them on the request path:

- the writer sends what this instance publishes (events, tpm charges) as soon as there is
  some, in one pipeline per batch;
- the reader waits on both streams (XREAD BLOCK on a connection of its own) and applies
  the others' events to the local records at once: a cooldown set by one instance is
  honoured by every other within milliseconds (1 s promised). At start it reads the last
  hour's events, so an instance that joins honours the cooldowns in force (but no past
  affinity: it learns prefixes from the records published after it started);
- the ticker, every INFLIGHT_INTERVAL_S, writes this instance's in-flight counts under its
  own key with a TTL of INFLIGHT_TTL_S and reads the others' (one script): a crashed
  instance's counts expire with its key. It is also what finds Redis back after an outage
  (the link's probe); this instance then announces its cooldowns and key states again, so
  that a Redis that lost everything, and the instances that missed events, reconverge.
  Then it publishes the affinity records made since its last tick as one batch (one XADD):
  the others route a conversation's next turn where this instance sent its last one
  within INFLIGHT_INTERVAL_S. While Redis is down they wait in a bounded outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aioredis

from modelway.state.affinity import AffinityExchange
from modelway.state.limits import RedisLimits
from modelway.state.link import RedisLink, connect
from modelway.state.shared import Event, SharedHealth
from modelway.strategies.holding import FleetLine, Holder

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelway.config.schema import CooldownConfig, StateConfig
    from modelway.deployment import Deployment
    from modelway.failover.health import HealthState
    from modelway.state.backend import Attached
    from modelway.strategies.affinity import AffinityTable, MemoryAffinity

log = logging.getLogger("modelway.state")

INFLIGHT_INTERVAL_S = 0.1  # late binding waits on others' counts this fresh (docs/load-aware-routing.md)
# Beside the deployments' counts (keys "model|provider|upstream"), a record carries each model's
# held requests (late binding): HELD + model -> how many, WAITED + model -> the oldest's wait in ms;
# and the prefill backlog it expects at each deployment (prefix_affinity): PREFILL + key -> ms.
# Instances that do not know these keys add them up under names no deployment has.
HELD = "\x00held|"
WAITED = "\x00waited|"
PREFILL = "\x00prefill|"
SLOTS_MAXLEN = 256  # slots passed to an instance, kept (approximately): it reads them within ms
SLOT_LATE_S = 1.0  # a slot passed longer ago than this is not taken: rechecks have seen it since
INFLIGHT_TTL_S = 2.0
STREAM_MAXLEN = 10_000  # events kept (approximately): catching up reads at most these
AFFINITY_MAXLEN = 256  # affinity batches kept (approximately): the others read them within ms
CATCHUP_S = 3600  # the longest cooldown an event can announce (a Retry-After is capped at an hour)
READ_BLOCK_MS = 1000
READ_COUNT = 500
BROKEN = (aioredis.RedisError, OSError, TimeoutError)

# KEYS: the registry of instances, this instance's key. ARGV: instance id, its counts (JSON),
# TTL in ms, the prefix of instances' keys. Returns [id, counts, id, counts, ...] of the others.
INFLIGHT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 10)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= ARGV[1] then
    local counts = redis.call('GET', ARGV[4] .. id)
    if counts then
      out[#out + 1] = id
      out[#out + 1] = counts
    end
  end
end
return out
"""


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisState:
    name = "redis"

    def __init__(self, config: StateConfig) -> None:
        self.link = RedisLink(config.redis_url, config.timeout_ms, config.key_prefix)
        self.limits = RedisLimits(self.link)
        self.limits.wake = self.wake
        self.instance = instance_id()
        self.stream = self.link.key("state", "events")
        self.affinity_stream = self.link.key("state", "affinity")
        self.slots_prefix = self.link.key("state", "slots", "")
        self.slots_stream = self.slots_prefix + self.instance  # slots freed elsewhere for this instance's held requests
        self.exchange = AffinityExchange()
        self.registry = self.link.key("state", "instances")
        self.own_key = self.link.key("state", "inflight", self.instance)
        self.inflight_prefix = self.link.key("state", "inflight", "")
        self.inflight_script = self.link.client.register_script(INFLIGHT_SCRIPT)
        # The reader blocks up to READ_BLOCK_MS on its own connection: its timeout is longer.
        self.reader = connect(config.redis_url, READ_BLOCK_MS / 1000 + self.link.timeout_s, self.link.timeout_s)
        self.outbox: deque[Event] = deque()
        self.slots_out: deque[tuple[str, str, str]] = deque()  # (instance, model, deployment key) to tell
        self.slots_given = 0
        self.slots_taken = 0
        self.wakeup = asyncio.Event()
        self.attached: Attached | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.clock_offset = 0.0  # Redis's clock minus ours (wall clocks), to age stream entries
        self.others_seen = 0  # other instances that published in-flight counts at the last tick
        self.last_tick = 0.0  # monotonic time of the last successful tick
        self.link.on_up.append(self.announce)

    # -- the interface ------------------------------------------------------------------

    def health(self, cooldown: CooldownConfig) -> HealthState:
        return SharedHealth(cooldown, self.publish)

    def attach(self, attached: Attached) -> None:
        self.attached = attached

    def affinity(self, deployments: Sequence[Deployment], table: MemoryAffinity) -> AffinityTable:
        return self.exchange.table(deployments, table)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self.write_loop(), name="modelway-state-writer"),
            loop.create_task(self.read_loop(), name="modelway-state-reader"),
            loop.create_task(self.tick_loop(), name="modelway-state-ticker"),
        ]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        if self.link.up:  # flush what is left, and leave: this instance's counts go at once
            await self.send_outbox()
            await self.limits.flush()
            await self.send_affinity()  # the others may take this instance's conversations on

            async def leave(client: aioredis.Redis) -> Any:
                pipe = client.pipeline(transaction=False)
                pipe.delete(self.own_key)
                pipe.zrem(self.registry, self.instance)
                return await pipe.execute()

            await self.link.call(leave)
        await self.link.close()
        with contextlib.suppress(Exception):
            await self.reader.aclose()

    def errors(self) -> int:
        return self.link.errors

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "shared": True,
            **self.link.describe(),
            "instance": self.instance,
            "other_instances": self.others_seen,
            **self.exchange.describe(),
            "slots_given": self.slots_given,
            "slots_taken": self.slots_taken,
        }

    # -- publishing ---------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Queue an event for the writer; dropped while Redis is down (this instance
        announces its state again when Redis is back)."""
        if self.link.up:
            self.outbox.append(event)
            self.wakeup.set()

    def wake(self) -> None:
        self.wakeup.set()

    def give(self, instance: str, deployment: Deployment) -> None:
        """A slot freed here goes to an older request held at `instance` (SlotGate.freed): it
        is told at once, and meanwhile the slot counts as that instance's, so that this one's
        rechecks do not take it back (the next tick's counts replace the guess)."""
        if not self.link.up:
            return  # the recheck finds the slot
        deployment.stats.others += 1
        self.slots_out.append((instance, deployment.model_name, deployment.key))
        self.slots_given += 1
        self.wakeup.set()

    def announce(self) -> None:
        attached = self.attached
        if attached is not None and isinstance(attached.health, SharedHealth):
            for event in attached.health.announcement(attached.providers):
                self.publish(event)

    async def write_loop(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await self.send_outbox()
            await self.limits.flush()

    async def send_outbox(self) -> None:
        if not self.outbox and not self.slots_out:
            return
        batch = list(self.outbox)
        self.outbox.clear()
        slots = list(self.slots_out)
        self.slots_out.clear()

        async def send(client: aioredis.Redis) -> Any:
            pipe = client.pipeline(transaction=False)
            for event in batch:
                fields: dict[Any, Any] = {"o": self.instance, **event}
                pipe.xadd(self.stream, fields, maxlen=STREAM_MAXLEN, approximate=True)
            for instance, model, key in slots:
                stream = self.slots_prefix + instance
                pipe.xadd(stream, {"m": model, "k": key}, maxlen=SLOTS_MAXLEN, approximate=True)
                pipe.pexpire(stream, int(INFLIGHT_TTL_S * 1000))  # gone with its instance
            return await pipe.execute()

        await self.link.call(send)  # lost when Redis fails: announced again when it is back

    async def send_affinity(self) -> None:
        """The affinity records made since the last call, as one batch; kept (the latest
        OUTBOX_MAX) while Redis is down, lost if the call fails."""
        if not self.link.up:
            return
        payload = self.exchange.batch()
        if payload is None:
            return
        fields: dict[Any, Any] = {"o": self.instance, "b": payload}
        await self.link.call(
            lambda client: client.xadd(self.affinity_stream, fields, maxlen=AFFINITY_MAXLEN, approximate=True)
        )

    # -- reading the others' events -----------------------------------------------------

    async def read_loop(self) -> None:
        last: dict[Any, Any] | None = None  # stream → where it is read on from
        affinity = self.affinity_stream.encode()
        slots = self.slots_stream.encode()
        own = self.instance.encode()
        while True:
            if not self.link.up:
                await asyncio.sleep(INFLIGHT_INTERVAL_S)  # the ticker finds Redis back
                continue
            try:
                if last is None:
                    last = await self.catch_up()
                    continue
                reply: Any = await self.reader.xread(last, count=READ_COUNT, block=READ_BLOCK_MS)
            except BROKEN as exc:
                self.link.failed(exc)
                continue
            for stream, entries in reply or ():
                name = bytes(stream)
                for entry_id, fields in entries:
                    last[name] = entry_id
                    if name == affinity:
                        if fields.get(b"o") != own:
                            self.exchange.apply(fields.get(b"b", b""))
                    elif name == slots:
                        self.take_slot(entry_id, fields)
                    else:
                        self.apply(entry_id, fields)

    async def catch_up(self) -> dict[Any, Any]:
        """Apply the events of the last CATCHUP_S (cooldowns still in force), and return
        where the reading of each stream goes on from (affinity: from now)."""
        now: Any = await self.reader.time()
        seconds, micros = now
        now_ms = seconds * 1000 + micros // 1000
        self.clock_offset = now_ms / 1000 - time.time()
        entries: Any = await self.reader.xrange(self.stream, min=str(now_ms - CATCHUP_S * 1000), max="+",
                                           count=STREAM_MAXLEN)
        for entry_id, fields in entries:
            self.apply(entry_id, fields)
        events = bytes(entries[-1][0]) if entries else f"{now_ms}-0"
        return {
            self.stream.encode(): events,
            self.affinity_stream.encode(): f"{now_ms}-0",
            self.slots_stream.encode(): f"{now_ms}-0",
        }

    def take_slot(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Another instance passed this one a slot it freed (`give`): the slot no longer counts
        as the other's, and the model's held requests look again."""
        attached = self.attached
        if attached is None:
            return
        stamped_ms = int(entry_id.split(b"-", 1)[0])
        if time.time() + self.clock_offset - stamped_ms / 1000 > SLOT_LATE_S:
            return
        route = attached.routes.get(fields.get(b"m", b"").decode())
        if route is None or route.gate is None:
            return
        key = fields.get(b"k", b"").decode()
        for deployment in route.deployments:
            if deployment.key == key:
                if deployment.stats.others > 0:
                    deployment.stats.others -= 1
                break
        self.slots_taken += 1
        route.gate.wake()

    def apply(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        attached = self.attached
        if fields.get(b"o") == self.instance.encode() or attached is None:
            return
        health = attached.health
        if not isinstance(health, SharedHealth):
            return
        stamped_ms = int(entry_id.split(b"-", 1)[0])
        age = max(0.0, time.time() + self.clock_offset - stamped_ms / 1000)
        health.apply(fields, age, attached.providers)

    # -- in-flight counts ---------------------------------------------------------------

    async def tick_loop(self) -> None:
        while True:
            try:
                await self.tick()
                await self.send_affinity()
            except Exception:  # a bug here must not stop sharing for good
                log.exception("state backend: publishing in-flight counts or affinity failed")
            await asyncio.sleep(INFLIGHT_INTERVAL_S)

    async def tick(self) -> None:
        attached = self.attached
        counts: dict[str, int] = {}
        deployments = list(attached.deployments()) if attached is not None else []
        started = time.monotonic()
        for deployment in deployments:
            stats = deployment.stats
            stats.published = stats.inflight  # the guess of the others' counts starts from here
            if stats.inflight:
                counts[deployment.key] = counts.get(deployment.key, 0) + stats.inflight
            if stats.prefilled_at > started:
                counts[PREFILL + deployment.key] = int((stats.prefilled_at - started) * 1000)
        gates = {name: route.gate for name, route in attached.routes.items() if route.gate} if attached else {}
        for name, gate in gates.items():
            oldest = gate.oldest()
            if gate.held and oldest is not None:
                counts[HELD + name] = gate.held
                counts[WAITED + name] = int((started - oldest) * 1000)
        payload = orjson.dumps(counts)
        args: list[str | bytes | int] = [self.instance, payload, int(INFLIGHT_TTL_S * 1000), self.inflight_prefix]
        reply = await self.link.call(
            lambda _client: self.inflight_script(keys=[self.registry, self.own_key], args=args), probe=True
        )
        now = time.monotonic()
        if reply is None:
            for gate in gates.values():
                gate.fleet = FleetLine()  # nothing is passed on while the others cannot be told
            if now - self.last_tick > INFLIGHT_TTL_S:  # what we know of the others has expired too
                for deployment in deployments:
                    stats = deployment.stats
                    stats.others = stats.peers = 0
                    stats.others_prefilled_at = 0.0
            return
        self.last_tick = now
        totals: dict[str, int] = {}
        lines: dict[str, list[Holder]] = {}
        for i in range(1, len(reply), 2):
            try:
                theirs = orjson.loads(reply[i])
            except orjson.JSONDecodeError:
                continue
            for key, count in theirs.items():
                if key.startswith(HELD):
                    model = key[len(HELD) :]
                    waited = theirs.get(WAITED + model, 0) / 1000
                    holder = Holder(now - waited, bytes(reply[i - 1]).decode(), int(count))
                    lines.setdefault(model, []).append(holder)
                elif not key.startswith(WAITED):  # a deployment's count, or PREFILL: its backlog
                    totals[key] = totals.get(key, 0) + int(count)
        self.others_seen = len(reply) // 2
        for deployment in deployments:
            stats = deployment.stats
            stats.others = totals.get(deployment.key, 0)
            stats.peers = self.others_seen
            backlog_ms = totals.get(PREFILL + deployment.key)  # every instance's prompts wait in one engine
            stats.others_prefilled_at = now + backlog_ms / 1000 if backlog_ms else 0.0
        for name, gate in gates.items():
            holders = lines.get(name)
            gate.fleet = FleetLine(sorted(holders, key=lambda h: h.since) if holders else None)
            gate.give = self.give
