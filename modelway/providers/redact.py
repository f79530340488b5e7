"""A provider's own credentials kept out of the error answers modelway passes on (SPEC
section 5: secrets never appear in answers).

A request that made one attempt and got an HTTP error passes that answer through unchanged,
so the provider's own message reaches the client. Some providers echo what they were sent
in such an answer ("invalid key 'sk-…'", a debug dump of the request's headers or URL), and
what they were sent is modelway's credential for them. Error answers (status 400 and above)
are read whole before they are relayed, so their body and header values are cleaned of the
provider's configured secrets first: every credential of its pool or `auth` (header and
query values, and the token of a "Bearer <token>" value alone, percent-encoded too, as a
query is echoed) and its static headers. A successful answer is relayed untouched, as SPEC
says, and nothing is searched on that path.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from modelway.config.schema import ProviderConfig
from modelway.config.secrets import MIN_SECRET_LENGTH, REDACTED, credential_values

REDACTED_BYTES = REDACTED.encode()


def provider_secrets(config: ProviderConfig) -> tuple[bytes, ...]:
    """The provider's secret values (as config/secrets.py knows them) as bytes, longest
    first (a secret holding another is replaced whole)."""
    values = [*config.headers.values()]
    for auth in (config.auth, *config.keys):
        values += credential_values(auth)
    found = {v.strip() for v in values if len(v.strip()) >= MIN_SECRET_LENGTH}
    found |= {quote(v, safe="") for v in found}
    return tuple(sorted((v.encode("utf-8") for v in found), key=len, reverse=True))


def redact(data: bytes, secrets: Sequence[bytes]) -> bytes:
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, REDACTED_BYTES)
    return data


def redact_answer(
    body: bytes, headers: list[tuple[bytes, bytes]], secrets: Sequence[bytes]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An error answer's body and header values without `secrets`."""
    if not secrets:
        return body, headers
    return redact(body, secrets), [(name, redact(value, secrets)) for name, value in headers]
