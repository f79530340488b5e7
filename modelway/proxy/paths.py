"""The path a request is forwarded to, checked so that it can never leave the provider's
base URL, however its dot segments or slashes are encoded (SPEC section 5).

The server hands the pipeline the path decoded once (`scope["path"]`) and the bytes as they
came (`scope["raw_path"]`). The provider is sent the decoded path percent-encoded again,
appended to its base path as it is: no URL library resolves anything on the way, so what
the provider decodes is what was checked here. A path is refused (400, `invalid_path`) when

- a segment is `.` or `..`, written plainly or percent-encoded in any case or number of
  layers (`%2e%2e`, `.%2E`, `%252e%252e`, `%25%32%65`, …), since a server that decodes
  once more than we did would resolve it;
- it carries an encoded `/` or `\\` (`%2F`, `%5C`, at any layer), which a server may take
  for a separator, or a backslash at all;
- it has more layers of percent-encoding than anyone sends (MAX_DECODES).

Most paths (`/v1/chat/completions`) contain no `%` and nothing to encode: they are checked
with two substring tests and forwarded as they are.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from modelway.errors import BadRequest

# Characters a path segment may carry unencoded (RFC 3986 pchar, minus '%'), and '/'.
SAFE = "/-._~!$&'()*+,;=:@"
NEEDS_ENCODING = re.compile(r"[^A-Za-z0-9/\-._~!$&'()*+,;=:@]")
ENCODED_SEPARATOR = re.compile(r"%(?:2[fF]|5[cC])")
MAX_DECODES = 4
SHOWN = 100  # characters of a refused path echoed in the error


def forward_path(path: str, raw_path: bytes | None) -> str:
    """The path to send upstream, percent-encoded for the request line (the same as `path`
    for ordinary paths). Raises BadRequest for a path that could leave a base URL."""
    if (raw_path is None or b"%" not in raw_path) and NEEDS_ENCODING.search(path) is None:
        if "/." in path and has_dot_segment(path):
            raise refused(path, raw_path, "a '.' or '..' segment")
        return path
    problem = path_problem(path, raw_path)
    if problem is not None:
        raise refused(path, raw_path, problem)
    return quote(path, safe=SAFE)


def relative(path: str) -> str:
    """The path relative to a provider's base_url: "/v1/chat/completions" → "chat/completions"."""
    if path.startswith("/v1/"):
        return path[4:]
    return path.lstrip("/")


def has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def path_problem(path: str, raw_path: bytes | None) -> str | None:
    """What makes `path` (decoded once from `raw_path`) unsafe to forward, or None."""
    if raw_path is not None and ENCODED_SEPARATOR.search(raw_path.decode("latin-1")):
        return "an encoded '/' or '\\' (%2F or %5C)"
    if "\\" in path:
        return "a backslash"
    layer = path
    for decodes in range(1, MAX_DECODES + 2):
        if has_dot_segment(layer):
            return "a '.' or '..' segment" + (f" once decoded {decodes} times" if decodes > 1 else "")
        if "%" not in layer:
            return None
        if ENCODED_SEPARATOR.search(layer):
            return "a percent-encoded '/' or '\\' (%2F or %5C)"
        decoded = unquote(layer)
        if decoded == layer:
            return None
        layer = decoded
    return f"more than {MAX_DECODES} layers of percent-encoding"


def refused(path: str, raw_path: bytes | None, problem: str) -> BadRequest:
    shown = raw_path.decode("latin-1") if raw_path is not None else path
    if len(shown) > SHOWN:
        shown = shown[:SHOWN] + "…"
    return BadRequest(
        f"path {shown!r} has {problem}: it could reach a path outside the provider's base URL",
        param="path",
        code="invalid_path",
    )
