"""Who may see admin pages (/ui, and the admin API): the holder of `auth.admin_key`.

The key is accepted as `Authorization: Bearer <key>` (scripts) or as the password of HTTP
Basic auth (a browser asks for it once, then sends it with the page's own requests), and
compared in constant time. With no admin key configured the status page is open, as the
gateway itself is when it has no client keys.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from modelway.errors import Unauthorized

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="modelway", charset="UTF-8"'}


def presented_key(authorization: bytes | None) -> bytes | None:
    """The key in an Authorization header: a Bearer token, or a Basic password."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        return value.strip()
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


def check_admin(admin_key: str | None, authorization: bytes | None) -> None:
    """Raise 401 (with a Basic challenge, so a browser asks) unless the admin key was given."""
    if admin_key is None:
        return
    key = presented_key(authorization)
    if key is None or not hmac.compare_digest(key, admin_key.encode()):
        raise Unauthorized("this page needs the admin key (auth.admin_key)", headers=BASIC_CHALLENGE)
