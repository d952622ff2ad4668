"""HMAC signatures on every request between Django and the gateway.

Header: ``X-WA-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, computed
over the bytes ``<t>.<METHOD>.<path with query>.<raw body>`` with the shared
secret. ``WA_GATEWAY_SECRET`` may list several secrets: the first signs and
any of them verifies, so a secret can be rotated without downtime. The
gateway (``gateway_node/src/signing.js``) implements the same scheme, and both
test suites check ``gateway_node/test/fixtures/signing-vectors.json``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from django.conf import settings

SIGNATURE_HEADER = "X-WA-Signature"
SIGNATURE_META_KEY = "HTTP_X_WA_SIGNATURE"

_HEADER_RE = re.compile(r"^t=(?P<t>[0-9]{1,12}),v1=(?P<v1>[0-9a-f]{64})$")


class SignatureError(Exception):
    """The signature header is missing, malformed, stale or does not match."""


def compute_signature(
    *, secret: str, timestamp: int, method: str, path: str, body: bytes
) -> str:
    """Return the hex HMAC-SHA256 of one request."""
    prefix = f"{timestamp}.{method.upper()}.{path}.".encode()
    return hmac.new(secret.encode(), prefix + body, hashlib.sha256).hexdigest()


def sign(*, secret: str, timestamp: int, method: str, path: str, body: bytes) -> str:
    """Return the full header value for one request."""
    digest = compute_signature(
        secret=secret, timestamp=timestamp, method=method, path=path, body=body
    )
    return f"t={timestamp},v1={digest}"


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def verify(
    *,
    header: str | None,
    secrets: list[str],
    method: str,
    path: str,
    body: bytes,
    now: int,
    max_age: int = 300,
) -> None:
    """Raise SignatureError unless `header` signs this request with a secret."""
    if not header:
        raise SignatureError(f"The {SIGNATURE_HEADER} header is missing.")

    match = _HEADER_RE.match(header.strip())
    if not match:
        raise SignatureError(
            f"The {SIGNATURE_HEADER} header is malformed; expected "
            "t=<unix seconds>,v1=<64 hex characters>."
        )

    timestamp = int(match["t"])
    if abs(now - timestamp) > max_age:
        raise SignatureError(
            f"The signature timestamp {timestamp} is more than {max_age} s away "
            "from the server clock; check both clocks."
        )

    if not _encodable(method) or not _encodable(path):
        # A lone surrogate cannot be signed, so no sender signed this.
        raise SignatureError(
            "The request's method or path contains characters that are not "
            "valid Unicode, so no signature can match it."
        )

    received = match["v1"]
    for secret in secrets:
        expected = compute_signature(
            secret=secret, timestamp=timestamp, method=method, path=path, body=body
        )
        if hmac.compare_digest(expected, received):
            return
    raise SignatureError("The signature does not match any configured secret.")


def signature_header(*, method: str, path: str, body: bytes) -> str:
    """Sign an outgoing request with the first configured secret, now."""
    return sign(
        secret=settings.WA_GATEWAY_SECRETS[0],
        timestamp=int(time.time()),
        method=method,
        path=path,
        body=body,
    )


def verify_request(request) -> None:
    """Verify a Django request's signature against every configured secret."""
    verify(
        header=request.META.get(SIGNATURE_META_KEY),
        secrets=settings.WA_GATEWAY_SECRETS,
        method=request.method,
        path=request.get_full_path(),
        body=request.body,
        now=int(time.time()),
        max_age=settings.WA_SIGNATURE_MAX_AGE,
    )
