"""The body of a request asking to switch protocols (`Upgrade: h2c` from `curl --http2 -d`,
`Upgrade: websocket`), which modelway answers as plain HTTP/1.1.

httptools stops at such a request's head: it ends the request there (no body) and takes
every byte after it for the other protocol. The server, having no protocol to switch to,
hands those bytes to an `UpgradeBody` instead: a parser of its own, primed with a head that
carries only the request's framing (its Content-Length, or chunked), so that it reads the
body as the request's own parser would have, and passes it on. The connection closes after
the answer; anything after the body is not read."""

from __future__ import annotations

from typing import Any

import httptools


def body_framing(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The header that frames the request's body, or None when it has none."""
    for name, value in headers:
        if name == b"content-length":
            return b"content-length: " + value
        if name == b"transfer-encoding":
            return b"transfer-encoding: chunked"  # the only coding the server lets through
    return None


class UpgradeBody:
    def __init__(self, protocol: Any, framing: bytes) -> None:
        self.protocol = protocol  # a ServerProtocol: gets on_body and on_message_complete
        self.done = False
        self.parser = httptools.HttpRequestParser(self)
        self.parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if not self.done:
            self.protocol.on_body(body)

    def on_message_complete(self) -> None:
        if not self.done:
            self.done = True
            self.protocol.on_message_complete()
