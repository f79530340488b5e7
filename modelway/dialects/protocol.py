"""What the relay calls on a stream translation, whichever dialects it joins."""

from __future__ import annotations

from typing import Protocol


class StreamTranslation(Protocol):
    failure: str | None
    """Set when the stream ended in an error frame (the upstream sent an error event or broke
    the SSE format, or `fail` was called): stop reading and count the attempt as failed."""

    usage: tuple[int, int] | None
    """(prompt tokens, completion tokens) once the upstream told them."""

    def feed(self, chunk: bytes) -> bytes:
        """Upstream bytes, split anywhere, in; the client's frames completed by them out
        (b"" when none). Never raises."""

    def finish(self) -> bytes:
        """The upstream ended cleanly: the frames that end the client's stream."""

    def fail(self, message: str, status: int = 502) -> bytes:
        """The upstream broke or timed out: the dialect's error frame (b"" once ended)."""

    def ping(self) -> bytes:
        """A keep-alive frame for a client waiting on a silent upstream."""
