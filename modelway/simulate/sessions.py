"""Generated workloads whose prompts share prefixes (`modelway simulate --workload ...`).

Each is built in two steps: the shape of every session (its requests' token counts, the
segments their prompts are made of, and when each comes after the session's start) from
the seed alone; then the sessions' start times, a Poisson process at the rate that gives
the wanted request rate — so every utilisation runs the same sessions, only closer
together. Segment identities are numbered per workload (cache.py: an identity names the
prompt up to its segment's end).

Lengths are log-normal (shape s), in tokens.

`multiturn` — chat conversations, shaped after Mooncake's conversation trace (prompts of
several thousand tokens, answers of a few hundred). One of 8 system prompts (mean 2,000,
s 0.6, 300..8,000; the first ones more popular: weights 1/k), then turns: a user message
(the first mean 1,500, s 1.2, up to 16,000 — pasted documents; later ones mean 300, s 1.2)
and the answer (mean 350, s 0.8). Each turn's prompt is the previous prompt, its answer
and the new message: about 7,500 tokens on average. Turns per session: geometric, mean
8, at most 40, ending before the prompt would pass 64,000 tokens. The next turn comes
after the answer (its tokens at 20 tok/s, the slowest decoder, plus its prompt at 5,000
tok/s) and a think time (exponential, mean 15 s).

`agents` — tool-using agent loops. One of 4 agents, each with its system prompt and tool
definitions (mean 6,000, s 0.5, 2,000..16,000), a task (mean 500), then steps: the model
answers with a tool call (mean 120) and the next prompt adds it and the tool's result
(mean 600, s 1.2, up to 16,000). Steps: geometric, mean 10, at most 50, ending before the
prompt would pass 64,000 tokens. The next step comes after the answer and the tool's run
(exponential, mean 2 s).

`system-prompts` — single requests that each start with one of 8 long system prompts
(mean 3,000 tokens, 500..12,000; weights 1/k), then a user message (mean 300): no
conversation, only the shared system prompts to cache.

These are open-loop: a turn's time is fixed in advance. When an answer is late (a long
queue), the next turn may arrive before it ends and find the answer not cached yet.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from modelway.simulate.cache import Segment
from modelway.simulate.workload import DEFAULT_MODEL, OUTPUT, LogNormal, SimRequest, Workload

ANSWER_TPS = 20.0  # the slowest decoder: the next turn waits for an answer read at this rate
PROMPT_TPS = 5_000.0  # and for its prompt's prefill at the slowest rate


@dataclass(frozen=True, slots=True)
class Turn:
    """One request of a session, before the session has a start time."""

    offset: float  # seconds after the session starts
    prompt: int
    output: int
    segments: tuple[Segment, ...]
    answer: int | None


Session = list[Turn]


def zipf_pick(rng: random.Random, count: int) -> int:
    return rng.choices(range(count), weights=[1 / (k + 1) for k in range(count)])[0]


def geometric(rng: random.Random, mean: float, high: int) -> int:
    n = 1
    while n < high and rng.random() > 1 / mean:
        n += 1
    return n


def answer_wait(rng: random.Random, prompt: int, output: int, pause_mean_s: float) -> float:
    return output / ANSWER_TPS + prompt / PROMPT_TPS + rng.expovariate(1 / pause_mean_s)


@dataclass(frozen=True)
class Conversation:
    """The shape of a workload of conversations (multiturn and agents)."""

    prefixes: int  # distinct system prompts (+ tools)
    prefix: LogNormal
    first: LogNormal  # the first message (a user's question, an agent's task)
    later: LogNormal  # each later message (a user's, a tool's result)
    output: LogNormal
    turns_mean: float
    turns_max: int
    context_max: int
    pause_mean_s: float  # think time, or a tool's run

    def sessions(self, count: int, seed: int) -> list[Session]:
        rng = random.Random(f"{seed}:sessions")
        ids = itertools.count()
        prefixes = [(next(ids), self.prefix.sample(rng)) for _ in range(self.prefixes)]
        sessions: list[Session] = []
        total = 0
        while total < count:
            system, length = prefixes[zipf_pick(rng, self.prefixes)]
            segments: tuple[Segment, ...] = ((system, length),)
            prompt = length + self.first.sample(rng)
            segments += ((next(ids), prompt),)
            offset = 0.0
            turns: Session = []
            for _ in range(geometric(rng, self.turns_mean, self.turns_max)):
                output = self.output.sample(rng)
                answer = next(ids)
                turns.append(Turn(offset, prompt, output, segments, answer))
                offset += answer_wait(rng, prompt, output, self.pause_mean_s)
                following = prompt + output + self.later.sample(rng)
                if following > self.context_max:
                    break
                segments += ((answer, prompt + output), (next(ids), following))
                prompt = following
            sessions.append(turns)
            total += len(turns)
        return sessions


MULTITURN = Conversation(
    prefixes=8,
    prefix=LogNormal(2000, 0.6, 300, 8000),
    first=LogNormal(1500, 1.2, 10, 16_000),
    later=LogNormal(300, 1.2, 4, 8000),
    output=LogNormal(350, 0.8, 1, 4096),
    turns_mean=8,
    turns_max=40,
    context_max=64_000,
    pause_mean_s=15.0,
)
AGENTS = Conversation(
    prefixes=4,
    prefix=LogNormal(6000, 0.5, 2000, 16_000),
    first=LogNormal(500, 0.8, 20, 4000),
    later=LogNormal(600, 1.2, 10, 16_000),
    output=LogNormal(120, 0.7, 8, 1024),
    turns_mean=10,
    turns_max=50,
    context_max=64_000,
    pause_mean_s=2.0,
)
SYSTEM_PROMPT = LogNormal(3000, 0.6, 500, 12_000)
USER_MESSAGE = LogNormal(300, 1.0, 8, 8000)


def system_prompt_sessions(count: int, seed: int) -> list[Session]:
    rng = random.Random(f"{seed}:sessions")
    ids = itertools.count()
    systems = [(next(ids), SYSTEM_PROMPT.sample(rng)) for _ in range(8)]
    sessions: list[Session] = []
    for _ in range(count):
        system, length = systems[zipf_pick(rng, len(systems))]
        prompt = length + USER_MESSAGE.sample(rng)
        sessions.append([Turn(0.0, prompt, OUTPUT.sample(rng), ((system, length), (next(ids), prompt)), None)])
    return sessions


SHAPES: dict[str, Callable[[int, int], list[Session]]] = {
    "multiturn": MULTITURN.sessions,
    "agents": AGENTS.sessions,
    "system-prompts": system_prompt_sessions,
}


def arranged(sessions: list[Session], count: int, rate: float, seed: int, name: str) -> Workload:
    """The sessions started as a Poisson process, `rate` requests per second in all; the
    first `count` requests by arrival."""
    turns = sum(len(s) for s in sessions)
    session_rate = rate * len(sessions) / turns
    rng = random.Random(f"{seed}:arrivals")
    start = 0.0
    requests: list[SimRequest] = []
    for number, session in enumerate(sessions):
        start += rng.expovariate(session_rate)
        requests.extend(
            SimRequest(
                start + t.offset, t.prompt, t.output, DEFAULT_MODEL, f"s{number}", t.segments, t.answer
            )
            for t in session
        )
    requests.sort(key=lambda r: r.arrival)
    del requests[count:]
    source = f"{name}: {len(sessions)} sessions at {rate:.3g} req/s, {len(requests)} requests, seed {seed}"
    return Workload(requests, source)
