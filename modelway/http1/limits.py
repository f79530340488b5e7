"""What a client may send the server (SPEC section 2, `server:`): bounds on a request head,
checked while it is parsed, and on the time its body takes to arrive. `modelway.server`
builds them from the config and hands them to every connection's protocol (a
`functools.partial`, which uvicorn's workers receive pickled)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_URL_BYTES = 8192  # a longer request target is a 414 (SPEC section 2)


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 65536  # request line and header fields (then trailers) → 431
    max_headers: int = 100  # header fields → 431
    max_url_bytes: int = MAX_URL_BYTES  # → 414
    body_timeout_s: float = 30.0  # from the head to the body's end → 408


DEFAULT_LIMITS = Limits()
