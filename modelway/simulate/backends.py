"""A simulated inference server: `slots` requests run at once, each prefilling its prompt
at `prefill_tps` and then decoding at `decode_tps` tokens per second; the rest wait in a
FIFO queue. `speed` scales both rates (a degraded GPU: speed 0.5), applied to requests
that start after the change.

Time to first token = queue wait + prompt / prefill rate; end to end adds output / decode
rate. Rates are per request (continuous batching keeps them roughly flat up to the slot
count, which is what a serving engine's max-num-seqs is for).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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

    def mean_service_s(self, prompt: float, output: float, speed: float | None = None) -> float:
        s = self.speed if speed is None else speed
        return prompt / (self.prefill_tps * s) + output / (self.decode_tps * s)

    def capacity_rps(self, prompt: float, output: float) -> float:
        """Requests per second it completes when every slot is busy, at its initial speed."""
        return self.slots / self.mean_service_s(prompt, output)


@dataclass(slots=True)
class Job:
    request: SimRequest
    backend: Backend
    deployment: Deployment  # the modelway Deployment that sent it (chosen by the strategy, or the oracle)
    route: ModelRoute  # the route whose strategy observes it
    arrival: float
    start: float = 0.0
    first_token: float = 0.0
    done: float = 0.0


@dataclass(eq=False)
class Backend:
    spec: BackendSpec
    speed: float = 1.0
    busy: int = 0
    queue: deque[Job] = field(default_factory=deque)
    ends: list[float] = field(default_factory=list)  # heap: end times of running jobs
    served: int = 0

    def __post_init__(self) -> None:
        self.speed = self.spec.speed

    @property
    def name(self) -> str:
        return self.spec.name

    def prefill_s(self, request: SimRequest) -> float:
        return request.prompt_tokens / (self.spec.prefill_tps * self.speed)

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
        job.start = now
        job.first_token = now + self.prefill_s(job.request)
        job.done = job.first_token + self.decode_s(job.request)
        heapq.heappush(self.ends, job.done)

    def finish(self, job: Job, now: float) -> Job | None:
        """A running job ended; returns the queued job that takes its slot, if any."""
        self.busy -= 1
        self.served += 1
        heapq.heappop(self.ends)  # jobs end in time order, so the smallest is this one
        if self.queue:
            nxt = self.queue.popleft()
            self.start(nxt, now)
            return nxt
        return None

    def expected_ttft(self, request: SimRequest, now: float) -> float:
        """Exact time to first token if `request` arrived here now (what the oracle knows)."""
        free = [now] * (self.spec.slots - self.busy)
        slots = sorted(self.ends) + free if free else list(self.ends)
        heapq.heapify(slots)
        for queued in self.queue:
            at = max(heapq.heappop(slots), now)
            heapq.heappush(slots, at + self.prefill_s(queued.request) + self.decode_s(queued.request))
        return max(heapq.heappop(slots), now) - now + self.prefill_s(request)
