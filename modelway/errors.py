"""The exception tree.

    ModelwayError
    ├── ConfigError                 invalid config; carries every (yaml path, message) pair
    ├── GatewayError                answered to the client as-is: status + OpenAI/Anthropic-shaped body
    │   ├── BadRequest              400
    │   ├── Unauthorized            401
    │   ├── Forbidden               403
    │   ├── NotFound                404 (unknown model, unknown path)
    │   ├── MethodNotAllowed        405
    │   ├── RequestTimeout          408 (the body did not arrive in time)
    │   ├── PayloadTooLarge         413
    │   ├── TooManyRequests         429 (the client key's rpm/tpm), with Retry-After
    │   ├── AuthServiceAnswer       the forward auth service's refusal, its status and body as they are
    │   ├── InternalError           500 (a bug: the log has the traceback, the answer only its class)
    │   ├── AllAttemptsFailed       502 (message summarises each attempt)
    │   ├── NoHealthyDeployment     503
    │   └── GatewayTimeout          504
    └── UpstreamError               one attempt failed; the attempt loop decides what follows
        ├── UpstreamConnectError    refused, reset or unreachable before a response
        │   ├── UpstreamStaleConnection  a reused keep-alive connection closed without answering
        │   └── UpstreamPoolFull    no connection free within connect_timeout (max_connections)
        ├── UpstreamTimeout         no response (or no next chunk) within timeout_ms
        ├── UpstreamBrokenStream    the response started and then broke
        └── UpstreamTooLarge        a non-stream answer over the provider's max_response_bytes

Lower-layer errors become UpstreamError subclasses at two boundaries, one per client:
socket, TLS and HTTP-parse errors of the forwarding client inside `modelway.http1`, and
aiohttp's errors (discovery, health probes) in `modelway.providers.http.map_client_errors`.
"""

from __future__ import annotations

from modelway.dialects.anthropic import ERROR_TYPES

CLIP = 100  # characters of a client's input echoed in an error message


def clip(text: str, limit: int = CLIP) -> str:
    """A client's input shown in a message: at most `limit` characters, then "…"."""
    return text if len(text) <= limit else text[:limit] + "…"


class ModelwayError(Exception):
    """Base of every error modelway raises on purpose."""


class ConfigError(ModelwayError):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("\n".join(format_config_error(p, m) for p, m in errors))


def format_config_error(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


class GatewayError(ModelwayError):
    status = 500
    type = "api_error"
    code: str | None = None
    raw: tuple[bytes, bytes] | None = None  # (body, content type): sent as is instead of an error body

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


def bad_field(path: str, message: str) -> BadRequest:
    """A 400 naming the place in the body that is wrong, e.g. `messages[3].content[0].type: ...`."""
    return BadRequest(f"{path}: {message}", param=path)


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "body_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class TooManyRequests(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class AuthServiceAnswer(GatewayError):
    """The forward auth service refused (`raw` is its body), or could not be asked
    (`status_on_error`, with an error body of our own in the client's dialect)."""

    type = "authentication_error"
    code = "forward_auth"

    def __init__(self, status: int, message: str, raw: tuple[bytes, bytes] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = ERROR_TYPES.get(status, "api_error")  # as the Anthropic dialect names them
        self.raw = raw


class InternalError(GatewayError):
    status = 500
    type = "api_error"
    code = "internal_error"


class AllAttemptsFailed(GatewayError):
    status = 502
    type = "upstream_error"
    code = "all_attempts_failed"


class NoHealthyDeployment(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "no_healthy_deployment"


class GatewayTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamError(ModelwayError):
    """One upstream attempt failed. `kind` is the retry_on class it belongs to."""

    kind = "error"
    local = False  # the gateway's own limit, not the upstream's failure: not held against its health

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamConnectError(UpstreamError):
    kind = "connect_error"


class UpstreamStaleConnection(UpstreamConnectError):
    """The upstream closed a keep-alive connection as it was reused: most likely its idle
    timeout, not a failure of the deployment. The attempt loop re-sends on a fresh one."""


class UpstreamPoolFull(UpstreamConnectError):
    """Retried as a connect_error, but the deployment is busy, not failing."""

    local = True


class UpstreamTimeout(UpstreamError):
    kind = "timeout"


class UpstreamBrokenStream(UpstreamError):
    kind = "broken_stream"


class UpstreamTooLarge(UpstreamError):
    """Never retried (not a retry_on class) and not held against the deployment's health."""

    kind = "response_too_large"
