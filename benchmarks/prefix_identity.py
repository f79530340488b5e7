"""Micro-benchmark of the prefix identity `prefix_affinity` routes on (issue 15: at most
5 µs per request for a 32 KB prompt), and of what a request costs a strategy that does not
ask for it (nothing: the View computes it only on `prefix()`).

    python -m benchmarks.prefix_identity [--repeat 7] [--number 20000]

Bodies are chat requests as openai-python writes them (a system prompt, then alternating
user and assistant messages), cut to 2, 4, 32, 64 and 256 KB and closed. For each it
prints the best of `--repeat` timings of `--number` calls, in µs per call, the keys
computed and the bytes hashed. Pure CPU in one process; pin it (`taskset -c 1`) on a
shared machine.
"""

from __future__ import annotations

import argparse
import timeit

import orjson

from modelway.strategies.prefix import BOUNDARIES, FIRST_BLOCK, STRIDE, prefix_of, prompt_start

SIZES_KB = (2, 4, 32, 64, 256)


def chat_body(size: int) -> bytes:
    """A chat/completions body of about `size` bytes."""
    messages = [{"role": "system", "content": "You are a careful assistant for the support desk. " * 40}]
    turn = 0
    while len(orjson.dumps(messages)) < size:
        role = "user" if turn % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"turn {turn}: " + "the quick brown fox jumps over it. " * 30})
        turn += 1
    body = orjson.dumps({"model": "gpt-4o", "messages": messages, "stream": True})
    while len(body) > size and len(messages) > 1:
        messages[-1]["content"] = messages[-1]["content"][: -(len(body) - size) or None]
        body = orjson.dumps({"model": "gpt-4o", "messages": messages, "stream": True})
        if len(body) > size:
            messages.pop()
            body = orjson.dumps({"model": "gpt-4o", "messages": messages, "stream": True})
    return body


def hashed_bytes(body: bytes) -> int:
    size = len(body) - prompt_start(body)
    if size < FIRST_BLOCK:
        return 0
    deepest = max(b for b in BOUNDARIES if b <= size)
    return FIRST_BLOCK + (deepest - FIRST_BLOCK) // STRIDE


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prefix_identity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    print(f"| body | keys | bytes hashed | µs per call (best of {args.repeat} runs of {args.number}) |")
    print("| --- | --- | --- | --- |")
    for kb in SIZES_KB:
        body = chat_body(kb * 1024)
        found = prefix_of(body)
        best = min(timeit.repeat(lambda body=body: prefix_of(body), number=args.number, repeat=args.repeat))
        keys = len(found.keys) if found else 0
        print(f"| {len(body):,} B | {keys} | {hashed_bytes(body):,} | {best / args.number * 1e6:.2f} |")


if __name__ == "__main__":
    main()
