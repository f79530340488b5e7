"""An incremental parser of Server-Sent Events, for translating upstream streams.

Upstream bytes arrive split anywhere (mid-line, mid-UTF-8 sequence, between the two
newlines ending an event); `SSEParser.feed` returns the events completed so far. Lines end
in "\\n" or "\\r\\n" (a lone "\\r" is not taken as a line end: no LLM server sends one). A
partial line waiting for its end is bounded (`max_line`), and so is one event's data: a
stream that exceeds either is refused with `SSEError` instead of growing without limit.

Each chunk is split once; a partial line is kept as a list of pieces and joined once,
when its end arrives, so a long line in tiny chunks costs no more than in one.
"""

from __future__ import annotations

MAX_LINE = 16 * 1024 * 1024  # one chunk of a model's answer; generous for tool arguments sent whole

Event = tuple[bytes, bytes]
"""(event name, data): the name is b"" when the event had no `event:` line."""


class SSEError(ValueError):
    """The stream broke the parser's bounds."""


class SSEParser:
    __slots__ = ("_data", "_data_size", "_event", "_max", "_tail", "_tail_size")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max = max_line
        self._tail: list[bytes] = []
        self._tail_size = 0
        self._event = b""
        self._data: list[bytes] = []
        self._data_size = 0

    def feed(self, chunk: bytes) -> list[Event]:
        if self._tail:
            if b"\n" not in chunk:
                self._keep(chunk)
                return []
            self._tail.append(chunk)
            chunk = b"".join(self._tail)
            self._tail = []
            self._tail_size = 0
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            self._keep(rest)
        events: list[Event] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[Event]:
        """At the end of the stream: the last line and event even without their ending newlines
        (a lenient reading: some servers end on "data: [DONE]\n")."""
        events: list[Event] = []
        if self._tail:
            line = b"".join(self._tail)
            self._tail = []
            self._tail_size = 0
            self._line(line, events)
        self._line(b"", events)
        return events

    def _keep(self, piece: bytes) -> None:
        self._tail_size += len(piece)
        if self._tail_size > self._max:
            raise SSEError(f"an SSE line longer than {self._max} bytes")
        self._tail.append(piece)

    def _line(self, line: bytes, events: list[Event]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append((self._event, data))
                self._data = []
                self._data_size = 0
            self._event = b""
            return
        if line.startswith(b"data:"):
            value = line[6:] if line[5:6] == b" " else line[5:]
            self._data_size += len(value)
            if self._data_size > self._max:
                raise SSEError(f"an SSE event with more than {self._max} bytes of data")
            self._data.append(value)
        elif line.startswith(b"event:"):
            self._event = line[6:].strip()
        # comments (":..."), id:, retry: and unknown fields are ignored


def frame(event: bytes, data: bytes) -> bytes:
    """One SSE event with a name: `event: <name>` then its data line."""
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


def data_frame(data: bytes) -> bytes:
    """One unnamed SSE event (OpenAI's streams)."""
    return b"data: " + data + b"\n\n"
