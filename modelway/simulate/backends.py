"""A simulated inference server: `slots` requests run at once (a serving engine's
max-num-seqs); the rest wait in a FIFO queue. A request that gets a slot has its prompt
prefilled, then decodes at `decode_tps` tokens per second. Prefill is compute-bound, so
the engine's `prefill_tps` is shared: prompts are prefilled one after another, in the
order their requests got their slots (vLLM's chunked prefill, first come first served,
without its slowing of the decodes beside it). Decode rates are per request: continuous
batching keeps them roughly flat up to the slot count. `speed` scales both rates (a
degraded GPU: speed 0.5), applied to requests that start after the change.

A prefix cache of `cache_tokens` (cache.py) holds the KV of prompts it has computed: a
request prefills only what its prompt does not share with them.

Time to first token = wait for a slot + wait for the prefill of those ahead + uncached
prompt / prefill rate; end to end adds output / decode rate.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelway.simulate.cache import PrefixCache

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.routes import ModelRoute
    from modelway.simulate.workload import SimRequest


@dataclass(frozen=True, slots=True)
class BackendSpec:
    name: str
    slots: int
    prefill_tps: float
    decode_tps: float
    weight: int = 1  # the weight its deployments are configured with
    input_cost_per_mtok: float = 0.0
    output_cost_per_mtok: float = 0.0
    speed: float = 1.0  # initial speed
    cache_tokens: int = 0  # prefix-cache capacity (KV blocks of prompts); 0: no cache

    def mean_service_s(self, prompt: float, output: float, speed: float | None = None) -> float:
        s = self.speed if speed is None else speed
        return prompt / (self.prefill_tps * s) + output / (self.decode_tps * s)

    def capacity_rps(self, prompt: float, output: float) -> float:
        """Requests per second it completes when fully loaded, at its initial speed, every
        prompt prefilled in full: what its slots allow, or its prefill throughput, the lower."""
        return min(self.slots / self.mean_service_s(prompt, output), self.prefill_tps * self.speed / max(prompt, 1.0))


@dataclass(slots=True)
class Job:
    request: SimRequest
    backend: Backend
    deployment: Deployment  # the modelway Deployment that sent it (chosen by the strategy, or the oracle)
    route: ModelRoute  # the route whose strategy observes it
    arrival: float
    instance: int = 0  # the gateway instance that routed it
    sent: float = 0.0  # when the gateway sent it: after its arrival if it was held (late binding)
    start: float = 0.0
    first_token: float = 0.0
    done: float = 0.0
    cached: int = 0  # prompt tokens the backend's prefix cache held when it started


@dataclass(eq=False)
class Backend:
    spec: BackendSpec
    block_tokens: int = 16
    speed: float = 1.0
    busy: int = 0
    queue: deque[Job] = field(default_factory=deque)
    ends: list[float] = field(default_factory=list)  # heap: end times of running jobs
    served: int = 0
    prefill_free: float = 0.0  # when the prefills started so far are done
    cache: PrefixCache = field(init=False)

    def __post_init__(self) -> None:
        self.speed = self.spec.speed
        self.cache = PrefixCache(self.spec.cache_tokens, self.block_tokens)

    @property
    def name(self) -> str:
        return self.spec.name

    def cached(self, request: SimRequest) -> int:
        """Prompt tokens of `request` its cache holds now."""
        return self.cache.cached(request.segments) if request.segments else 0

    def prefill_s(self, request: SimRequest, cached: int = 0) -> float:
        uncached = max(request.prompt_tokens - cached, 1) if request.prompt_tokens else 0
        return uncached / (self.spec.prefill_tps * self.speed)

    def decode_s(self, request: SimRequest) -> float:
        return request.output_tokens / (self.spec.decode_tps * self.speed)

    def admit(self, job: Job, now: float) -> bool:
        """Start the job now if a slot is free (True), else queue it (False)."""
        if self.busy < self.spec.slots:
            self.start(job, now)
            return True
        self.queue.append(job)
        return False

    def start(self, job: Job, now: float) -> None:
        self.busy += 1
        request = job.request
        job.start = now
        if request.segments:
            job.cached = self.cache.cached(request.segments)
            self.cache.insert(request.segments)
        job.first_token = self.prefill_free = max(now, self.prefill_free) + self.prefill_s(request, job.cached)
        job.done = job.first_token + self.decode_s(request)
        heapq.heappush(self.ends, job.done)

    def finish(self, job: Job, now: float) -> Job | None:
        """A running job ended; returns the queued job that takes its slot, if any."""
        self.busy -= 1
        self.served += 1
        heapq.heappop(self.ends)  # jobs end in time order, so the smallest is this one
        request = job.request
        if request.segments:  # its blocks are released, as recently used as it gets
            if request.answer is not None:
                answered = request.prompt_tokens + request.output_tokens
                self.cache.insert((*request.segments, (request.answer, answered)))
            else:
                self.cache.insert(request.segments)
        if self.queue:
            nxt = self.queue.popleft()
            self.start(nxt, now)
            return nxt
        return None

    def expected_ttft(self, request: SimRequest, now: float) -> float:
        """Time to first token if `request` arrived here now, as the oracle knows it: exact
        for the running and queued requests' end times, with every prefill counted against
        the cache as it is now."""
        free = [now] * (self.spec.slots - self.busy)
        slots = sorted(self.ends) + free if free else list(self.ends)
        heapq.heapify(slots)
        prefilled = self.prefill_free
        for queued in self.queue:
            at = max(heapq.heappop(slots), now)
            prefilled = max(at, prefilled) + self.prefill_s(queued.request, self.cached(queued.request))
            heapq.heappush(slots, prefilled + self.decode_s(queued.request))
        at = max(heapq.heappop(slots), now, prefilled)
        return at - now + self.prefill_s(request, self.cached(request))
