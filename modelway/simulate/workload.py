"""Requests to simulate: generated (Poisson arrivals, log-normal token lengths) or read
from a JSONL trace, one request per line:

    {"t": 0.12, "model": "auto", "prompt_tokens": 812, "output_tokens": 240}

`t` is the arrival time in seconds (any origin; `arrival` and `time` are accepted too);
`model` defaults to "auto"; `session` (optional) feeds consistent_hash.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "auto"


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Token lengths: log-normal with this mean and shape, clipped to [low, high]."""

    mean: float
    sigma: float
    low: int = 1
    high: int = 32768

    def sample(self, rng: random.Random) -> int:
        mu = math.log(self.mean) - self.sigma**2 / 2
        return int(min(self.high, max(self.low, round(rng.lognormvariate(mu, self.sigma)))))


@dataclass(frozen=True, slots=True)
class SimRequest:
    arrival: float
    prompt_tokens: int
    output_tokens: int
    model: str = DEFAULT_MODEL
    session: str | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    requests: list[SimRequest]
    source: str  # how it was made, for the report

    @property
    def span_s(self) -> float:
        return self.requests[-1].arrival - self.requests[0].arrival if self.requests else 0.0


PROMPT = LogNormal(mean=1000, sigma=1.0, low=16, high=32000)
OUTPUT = LogNormal(mean=250, sigma=0.8, low=1, high=4096)


def token_lengths(
    count: int, seed: int, prompt: LogNormal = PROMPT, output: LogNormal = OUTPUT
) -> list[tuple[int, int]]:
    rng = random.Random(f"{seed}:tokens")
    return [(prompt.sample(rng), output.sample(rng)) for _ in range(count)]


def poisson(
    lengths: list[tuple[int, int]], rate: float, seed: int, sessions: int = 256, model: str = DEFAULT_MODEL
) -> Workload:
    """Poisson arrivals at `rate` per second for the given (prompt, output) lengths."""
    rng = random.Random(f"{seed}:arrivals")
    t = 0.0
    requests = []
    for prompt, output in lengths:
        t += rng.expovariate(rate)
        requests.append(SimRequest(t, prompt, output, model, f"s{rng.randrange(sessions)}"))
    return Workload(requests, f"poisson {rate:.3g} req/s, {len(requests)} requests, seed {seed}")


class TraceError(ValueError):
    pass


def read_trace(path: str | Path) -> Workload:
    requests = []
    with Path(path).open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                arrival = float(next(row[k] for k in ("t", "arrival", "time") if k in row))
                prompt = int(row["prompt_tokens"])
                output = int(row["output_tokens"])
            except (ValueError, KeyError, TypeError, StopIteration) as exc:
                raise TraceError(
                    f"{path}:{number}: expected JSON with t, prompt_tokens, output_tokens ({exc!r})"
                ) from None
            if prompt < 0 or output < 1 or not math.isfinite(arrival):
                raise TraceError(f"{path}:{number}: token counts must be >= 0 (output >= 1), t finite")
            session = row.get("session")
            requests.append(
                SimRequest(
                    arrival,
                    prompt,
                    output,
                    str(row.get("model") or DEFAULT_MODEL),
                    str(session) if session is not None else None,
                )
            )
    if not requests:
        raise TraceError(f"{path}: no requests")
    requests.sort(key=lambda r: r.arrival)
    origin = requests[0].arrival
    requests = [
        SimRequest(r.arrival - origin, r.prompt_tokens, r.output_tokens, r.model, r.session) for r in requests
    ]
    return Workload(requests, f"trace {path}, {len(requests)} requests")


def rescaled(workload: Workload, factor: float) -> Workload:
    """The same requests with arrival times divided by `factor` (factor 2: twice the rate)."""
    requests = [
        SimRequest(r.arrival / factor, r.prompt_tokens, r.output_tokens, r.model, r.session)
        for r in workload.requests
    ]
    return Workload(requests, f"{workload.source}, time scaled x{1 / factor:.3g}")
