"""Which of the client's headers a provider gets (SPEC section 5).

A deny-list: a client header is forwarded unless it is

- hop-by-hop: HOP_BY_HOP, and whatever the client's Connection header names;
- a credential or an identity: the names in CREDENTIALS, and any name containing one of
  CREDENTIAL_WORDS (`x-custom-api-key`, `x-amz-security-token`, `x-auth-…`), since a provider
  must only ever see the credential modelway holds for it, and a client naming another
  account (`OpenAI-Organization`) can make a hosted provider refuse modelway's key;
- one modelway sets itself (`content-type`, `accept-encoding`, `expect`, `x-modelway-*`).

Why not an allow-list: providers add request headers all the time (`anthropic-beta`,
`OpenAI-Beta`, `x-stainless-*`, tracing headers) and clients rely on them passing through;
an allow-list would break each new one silently, while credentials follow recognisable
names. The price is that a credential under a name matching none of these words would be
forwarded: CREDENTIAL_WORDS is deliberately broad (any `…key…` header stays behind, an
`Idempotency-Key` too).

The verdict depends on the name only, so it is kept per name: a request pays one dict
lookup per header.
"""

from __future__ import annotations

from modelway.providers.base import HOP_BY_HOP, PLAIN_CONNECTION, connection_named

CREDENTIALS = frozenset(
    {
        b"authorization",
        b"proxy-authorization",
        b"x-api-key",
        b"api-key",
        b"anthropic-api-key",
        b"x-goog-api-key",
        b"ocp-apim-subscription-key",
        b"x-auth-token",
        b"authentication",
        b"cookie",
        b"cookie2",
        b"openai-organization",
        b"openai-project",
        b"x-goog-user-project",
    }
)
CREDENTIAL_WORDS = (b"auth", b"key", b"token", b"secret", b"password", b"cookie", b"credential")
SET_BY_MODELWAY = frozenset({b"accept-encoding", b"content-type", b"expect"})
NOT_FORWARDED = HOP_BY_HOP | CREDENTIALS | SET_BY_MODELWAY


def forwarded(name: bytes) -> bool:
    """Whether a client header of this (lower-case) name may reach a provider."""
    if name in NOT_FORWARDED or name.startswith(b"x-modelway-"):
        return False
    return not any(word in name for word in CREDENTIAL_WORDS)


# The verdict per header name seen: a memo, bounded (a client may send any names at all).
VERDICTS: dict[bytes, bool] = {}
VERDICTS_MAX = 1024


def learn(raw: list[tuple[bytes, bytes]]) -> None:
    """Give every name of `raw` its verdict."""
    if len(VERDICTS) + len(raw) > VERDICTS_MAX:
        VERDICTS.clear()
    for name, _ in raw:
        if name not in VERDICTS:
            VERDICTS[name] = forwarded(name)


def forwardable(raw: list[tuple[bytes, bytes]], by_name: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """The client's header pairs fit to send upstream, kept as bytes, since they go out as
    bytes. `by_name` is `raw` as a dict (the last of repeated names)."""
    verdicts = VERDICTS
    try:
        kept = [pair for pair in raw if verdicts[pair[0]]]
    except KeyError:  # a name not seen before
        learn(raw)
        kept = [pair for pair in raw if verdicts[pair[0]]]
    connection = by_name.get(b"connection")
    if connection is None or (connection in PLAIN_CONNECTION and len(by_name) == len(raw)):
        return kept
    # Connection names other headers, or it may (a repeated header could be another Connection).
    named = connection_named([value for name, value in raw if name == b"connection"])
    return [pair for pair in kept if pair[0] not in named]
