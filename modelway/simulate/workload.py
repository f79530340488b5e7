"""Requests to simulate: generated (Poisson arrivals, log-normal token lengths; prompts
that share prefixes come from sessions.py) or read from a JSONL trace, one request per line:

    {"t": 0.12, "model": "auto", "prompt_tokens": 812, "output_tokens": 240}

`t` is the arrival time in seconds (any origin; `arrival` and `time` are accepted too);
`model` defaults to "auto"; `session` (optional) feeds consistent_hash. Mooncake's trace
format is read as well: `timestamp` (milliseconds), `input_length`, `output_length` and
`hash_ids`, its blocks' identities (512 tokens each: `--block-tokens 512`). `prefix`
(optional) is the prompt's identity for the backends' prefix caches (cache.py): a list
of chained identities of its successive parts — strings or numbers — each either one
block of `--block-tokens` tokens (`"prefix": ["9f3a", "1c0e", ...]`, as hashes of
successive prompt blocks) or a part with its token count (`[["sys-7", 1200],
["s41-u1", 310]]`, e.g. one per message). An identity must name the whole prompt up to
the end of its part, as chained hashes do. Parts beyond `prompt_tokens` are ignored.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelway.simulate.cache import Segment

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
    segments: tuple[Segment, ...] = ()  # the prompt's parts, for the prefix caches; () shares nothing
    answer: int | None = None  # identity of the answer as a part of the next prompt (a conversation's)


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


def trace_segments(
    parts: Any, prompt: int, block_tokens: int, identities: dict[str, int]
) -> tuple[Segment, ...]:
    """A trace line's `prefix` as segments; identities are numbered in order of appearance."""
    if not isinstance(parts, list):
        raise ValueError("prefix must be a list")
    segments: list[Segment] = []
    end = 0
    for part in parts:
        if isinstance(part, list | tuple):
            if len(part) != 2 or not isinstance(part[1], int) or isinstance(part[1], bool) or part[1] < 1:
                raise ValueError(f"prefix part {part!r} is not [identity, tokens >= 1]")
            name, tokens = part
        else:
            name, tokens = part, block_tokens
        if not isinstance(name, str | int) or isinstance(name, bool):
            raise ValueError(f"prefix identity {name!r} is not a string or a number")
        end = min(end + tokens, prompt)
        segments.append((identities.setdefault(str(name), len(identities)), end))
        if end >= prompt:
            break
    return tuple(segments)


def read_trace(path: str | Path, block_tokens: int = 16) -> Workload:
    requests = []
    identities: dict[str, int] = {}
    with Path(path).open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if "timestamp" in row:  # Mooncake's format: milliseconds
                    arrival = float(row["timestamp"]) / 1000
                else:
                    arrival = float(next(row[k] for k in ("t", "arrival", "time") if k in row))
                prompt = int(row["prompt_tokens"] if "prompt_tokens" in row else row["input_length"])
                output = int(row["output_tokens"] if "output_tokens" in row else row["output_length"])
            except (ValueError, KeyError, TypeError, StopIteration) as exc:
                raise TraceError(
                    f"{path}:{number}: expected JSON with t, prompt_tokens, output_tokens "
                    f"(or Mooncake's timestamp, input_length, output_length) ({exc!r})"
                ) from None
            if prompt < 0 or output < 1 or not math.isfinite(arrival):
                raise TraceError(f"{path}:{number}: token counts must be >= 0 (output >= 1), t finite")
            try:
                parts = row["prefix"] if "prefix" in row else row.get("hash_ids", [])
                segments = trace_segments(parts, prompt, block_tokens, identities)
            except ValueError as exc:
                raise TraceError(f"{path}:{number}: {exc}") from None
            session = row.get("session")
            requests.append(
                SimRequest(
                    arrival,
                    prompt,
                    output,
                    str(row.get("model") or DEFAULT_MODEL),
                    str(session) if session is not None else None,
                    segments,
                )
            )
    if not requests:
        raise TraceError(f"{path}: no requests")
    requests.sort(key=lambda r: r.arrival)
    origin = requests[0].arrival
    requests = [replace(r, arrival=r.arrival - origin) for r in requests]
    return Workload(requests, f"trace {path}, {len(requests)} requests")


def rescaled(workload: Workload, factor: float) -> Workload:
    """The same requests with arrival times divided by `factor` (factor 2: twice the rate)."""
    requests = [replace(r, arrival=r.arrival / factor) for r in workload.requests]
    return Workload(requests, f"{workload.source}, time scaled x{1 / factor:.3g}")
