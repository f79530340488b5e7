"""Admission, before routing: the forward auth service (`auth.forward_auth`), then the
client key's model allowlist and rpm/tpm limits (`auth.keys[].rpm`, `tpm`).

    Incoming → forward auth → allowlist → take from the key's buckets → Incoming, Ticket

A gateway with neither forward auth nor a limited key has no Gate: requests pay nothing.
A key without limits pays nothing either. A key with limits takes one request and its
prompt's estimated tokens from its buckets (state/limits.py; one atomic Redis script with
the redis state backend); over the limit the answer is a 429 with Retry-After in whole
seconds. The `Ticket` then settles the difference once the answer's real usage is known
(`settle`, by the relay, before the answer's last byte), or gives the estimate back when no
upstream answered (`refund`), without making the request wait for either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelway.errors import AuthServiceAnswer, TooManyRequests
from modelway.proxy.auth import authorize
from modelway.state.limits import estimate_tokens, retry_after_s

if TYPE_CHECKING:
    from modelway.forward_auth import ForwardAuthClient
    from modelway.proxy.auth import ClientKeys
    from modelway.proxy.incoming import Incoming
    from modelway.state.limits import Limits, RateLimiter


@dataclass(slots=True)
class Ticket:
    """What a limited key's request took from its buckets, to settle when its answer is known."""

    limiter: RateLimiter
    name: str
    limits: Limits
    estimate: int  # tokens taken before the answer

    def settle(self, usage: tuple[int, int] | None, answered: bool) -> None:
        """Charge the answer's real usage (prompt 0: not reported, the estimate stands for
        it). No usage: the estimate stands, or is given back when the upstream refused."""
        if self.limits.tpm is None:
            return
        if usage is None:
            if not answered:
                self.refund()
            return
        prompt, completion = usage
        used = (prompt or self.estimate) + completion
        if used != self.estimate:
            self.limiter.charge_soon(self.name, self.limits, used - self.estimate)

    def refund(self) -> None:
        if self.limits.tpm is not None:
            self.limiter.charge_soon(self.name, self.limits, -self.estimate)


class Gate:
    def __init__(self, limiter: RateLimiter, forward_auth: ForwardAuthClient | None) -> None:
        self.limiter = limiter
        self.forward_auth = forward_auth
        self.replaced = frozenset(
            name.lower().encode("latin-1") for name in (forward_auth.config.upstream_headers if forward_auth else ())
        )

    @classmethod
    def build(cls, limiter: RateLimiter, forward_auth: ForwardAuthClient | None, keys: ClientKeys) -> Gate | None:
        return cls(limiter, forward_auth) if forward_auth is not None or keys.limited else None

    async def admit(self, request: Incoming, model: str) -> tuple[Incoming, Ticket | None]:
        """The request, with the auth service's headers for the upstream, and its ticket
        (None for a key without limits); or a GatewayError (the auth service's refusal, 403, 429)."""
        if self.forward_auth is not None:
            request = await self.ask_auth_service(request, self.forward_auth)
        client = request.client
        if client is None or client.limits is None:
            return request, None
        authorize(client, model)  # a model the key may not use costs it nothing
        limits = client.limits
        tokens = estimate_tokens(len(request.raw_body))
        wait = await self.limiter.take(client.name, limits, tokens)
        if wait > 0:
            seconds = retry_after_s(wait)
            rules = ", ".join(f"{n} {v}" for n, v in (("rpm", limits.rpm), ("tpm", limits.tpm)) if v is not None)
            raise TooManyRequests(
                f"key {client.name!r} is over its rate limit ({rules}); retry in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        return request, Ticket(self.limiter, client.name, limits, tokens)

    async def ask_auth_service(self, request: Incoming, service: ForwardAuthClient) -> Incoming:
        query = request.raw_query.decode("latin-1")
        uri = f"{request.path}?{query}" if query else request.path
        verdict = await service.check(request.raw_headers, "POST", uri)
        if verdict.failed:
            raise AuthServiceAnswer(verdict.status, "the authorization service did not answer; try again later")
        if not verdict.allowed:
            raw = (verdict.body, verdict.content_type.encode("latin-1", "replace")) if verdict.body else None
            raise AuthServiceAnswer(verdict.status, f"refused by the authorization service (HTTP {verdict.status})",
                                    raw)
        replaced = self.replaced
        if not replaced:
            return request
        kept = [pair for pair in request.forward_headers if pair[0] not in replaced]
        return dataclasses.replace(request, forward_headers=[*kept, *verdict.upstream_headers])
