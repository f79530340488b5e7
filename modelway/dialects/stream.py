"""Stream translations: what the relay calls on one (`StreamTranslation`), and the frame the
translators share (`SSETranslator`: SSE parsing, the end, failing)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from modelway.dialects.sse import Event, SSEParser


class StreamTranslation(Protocol):
    @property
    def failure(self) -> str | None:
        """Set when the stream ended in an error frame (the upstream sent an error event or broke
        the SSE format, or `fail` was called): stop reading and count the attempt as failed."""

    @property
    def usage(self) -> tuple[int, int] | None:
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


class SSETranslator:
    """Upstream SSE events are handed to `_event` one by one; `_end` writes the client's
    normal end, `_error_frame` its error frame. An upstream that breaks the SSE format or
    sends an event that is not JSON (a ValueError where it is read) fails the stream."""

    __slots__ = ("_parser", "done", "failure", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.done = False
        self.failure: str | None = None
        self.usage: tuple[int, int] | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        out: list[bytes] = []
        try:
            self._events(self._parser.feed(chunk), out)
        except ValueError as exc:
            out.append(self.fail(f"upstream stream unreadable: {exc}"))
        return b"".join(out)

    def finish(self) -> bytes:
        if self.done:
            return b""
        out: list[bytes] = []
        try:
            self._events(self._parser.close(), out)
        except ValueError as exc:
            out.append(self.fail(f"upstream stream unreadable: {exc}"))
        if not self.done:
            self._end(out)
        return b"".join(out)

    def fail(self, message: str, status: int = 502) -> bytes:
        if self.done:
            return b""
        self.done = True
        self.failure = message
        return self._error_frame(message, status)

    def _events(self, events: Iterable[Event], out: list[bytes]) -> None:
        for _, data in events:
            self._event(data, out)
            if self.done:
                return

    def _event(self, data: bytes, out: list[bytes]) -> None:
        raise NotImplementedError

    def _end(self, out: list[bytes]) -> None:
        raise NotImplementedError

    def _error_frame(self, message: str, status: int) -> bytes:
        raise NotImplementedError
