"""When a client connection ends, other than by the client closing it: idle after an answer,
a request body late to arrive (SPEC section 2, `server.body_timeout_s`), or the client's EOF
after its requests. A mixin of `ServerProtocol` (`server.py`), whose state it uses.

One timer per connection does it all, armed for the first thing that may have to end the
connection and checked when it fires, rather than cancelled and re-created for every
request: the idle check against the last answer's end; the body check only while a body is
incomplete after the read its head ended in; the EOF checks only after an EOF."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections import deque
from typing import Any

from modelway.http1.cycle import CONTINUE, RequestCycle

log = logging.getLogger("modelway.http")

PEER_CHECKS = (0.05, 2.0)  # a client that sent EOF is checked after 50 ms, then twice as late up to 2 s
LINGER_S = 2.0  # a connection the server closes reads (and drops) what the client still sends for up to this long


class ConnectionTimer:
    # The protocol's state this uses (set in ServerProtocol.__init__).
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    scheme: str
    cycle: RequestCycle | None
    running: RequestCycle | None
    queued: deque[tuple[RequestCycle, dict[str, Any]]]
    read_paused: bool
    keepalive_s: float
    body_timeout_s: float
    idle_since: float
    timer: asyncio.TimerHandle | None
    timer_at: float
    peer_check: float
    probed: bool
    rejection: tuple[int, str, str] | None
    client_eof: bool
    linger_until: float

    def close(self, linger: bool = True) -> None:
        raise NotImplementedError

    def closing(self) -> bool:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def reject(self, status: int, code: str, message: str) -> None:
        raise NotImplementedError

    def stop_parsing(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def eof_received(self) -> bool | None:
        """The client will send nothing more: it half-closed (shutdown(SHUT_WR), which some
        HTTP/1.0 clients and scripts do after their request), or closed. The requests it
        sent whole are answered, then the connection closes; with none, it closes now."""
        self.client_eof = True
        if self.linger_until:
            return None  # the close it waited for
        running = self.running
        if running is None or self.scheme == "https":  # TLS has no half-close: close
            return None  # an answer still being written is not lost
        if running.started and running.head is None:
            # Its answer is on the wire already, a stream most likely: a client that half-closes
            # does so as it sends its request, long before that. This is a client gone, and
            # the stream's next bytes, which would tell (the peer check below), may be seconds
            # away: its request is cancelled now, as SPEC section 5 asks.
            return None
        last = self.cycle
        if last is not None and last.more_body:  # a body that will never end
            if last is running:
                return None  # its app hears of the disconnect
            if self.queued and self.queued[-1][0] is last:  # (a refusal may have dropped it already)
                self.queued.pop()  # it waits behind the running one: dropped
        last = self.queued[-1][0] if self.queued else running
        if self.rejection is None:  # else the refusal, sent after the last answer, ends the connection
            last.keep_alive = False
        self.cycle = last
        self.peer_check = PEER_CHECKS[0]  # but a client that closed must not be answered for nothing
        self.arm(self.loop.time() + self.peer_check)
        return True


    def became_idle(self) -> None:
        now = self.idle_since = self.loop.time()
        deadline = now + self.keepalive_s
        if self.timer is None or self.timer_at > deadline:
            self.arm(deadline)

    def arm(self, when: float) -> None:
        """Have the timer fire at `when`, unless it fires earlier already."""
        timer = self.timer
        if timer is not None:
            if self.timer_at <= when:
                return
            timer.cancel()
        self.timer = self.loop.call_at(when, self.check_timer)
        self.timer_at = when

    def linger(self) -> None:
        """Close as RFC 9112 section 9.6 asks: a socket closed while bytes the client sent are
        unread sends a reset, and a reset can destroy the answer on its way, unread by the
        client yet (a pipelined request after `Connection: close`, a body not read after its
        early answer). So the server only half-closes, after its answers, and reads and drops
        what still comes, until the client closes too or LINGER_S passes. A request still
        running (a refused body's) is treated as its client gone."""
        transport = self.transport
        assert transport is not None
        self.linger_until = self.loop.time() + LINGER_S
        self.stop_parsing()
        running = self.running
        if running is not None:
            running.lost()
        transport.write_eof()
        self.resume_reading()
        self.arm(self.linger_until)

    def check_timer(self) -> None:
        self.timer = None
        if self.linger_until:
            if self.transport is not None and self.loop.time() >= self.linger_until:
                self.transport.close()
            elif self.transport is not None:
                self.arm(self.linger_until)
            return
        if self.closing():
            return
        now = self.loop.time()
        wake = math.inf
        if self.peer_check and self.running is not None:
            if self.peer_gone():
                self.close(linger=False)
                return
            wake = now + self.peer_check
        cycle = self.cycle
        if cycle is not None and cycle.more_body and cycle.deadline:
            if self.read_paused:  # the body waits on us (a request ahead, the app), not the client
                cycle.deadline = now + self.body_timeout_s
            elif now >= cycle.deadline:
                self.body_late(cycle)
                return
            wake = cycle.deadline
        if self.running is None:  # else busy: the end of its answer arms the timer again
            deadline = self.idle_since + self.keepalive_s
            if now >= deadline:
                self.close(linger=False)  # idle: no answer on its way
                return
            wake = min(wake, deadline)
        if wake < math.inf:
            self.arm(wake)

    def peer_gone(self) -> bool:
        """Has the client, which sends no more, closed its socket rather than only its
        sending side? It cannot be told from the FIN; but a closed socket answers the next
        bytes sent to it with a reset. Bytes of the answer do, once it is being written;
        before that, an HTTP/1.1 client is sent a 100 Continue (which every client must be
        able to skip, RFC 9110 section 15.2), and the socket is checked for the reset in the
        timer's next turns, from soon after to every few seconds."""
        self.peer_check = min(self.peer_check * 2, PEER_CHECKS[1])
        running = self.running
        if (
            running is not None
            and running.http_version == "1.1"  # an HTTP/1.0 client may be sent no 1xx
            and (not running.started or running.head is not None)  # nothing of the answer went out yet
            and not self.probed
        ):
            self.probed = True
            self.write(CONTINUE)
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        try:
            return sock is None or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
        except OSError:
            return True

    def body_late(self, cycle: RequestCycle) -> None:
        """A request's body did not arrive in time: a 408, unless its answer went out already
        (one decided from the head alone, as a 413), and the connection closed either way."""
        message = f"the request body did not arrive within server.body_timeout_s ({self.body_timeout_s:g} s)"
        if cycle.complete:
            log.warning("%s", message)
            self.close()
        else:
            self.reject(408, "body_timeout", message)
