"""Signed HTTP calls, as Django and the gateway make them to each other."""

from __future__ import annotations

import json
import time

from bench.load import http
from sessions_wa.signing import SIGNATURE_HEADER, sign


def signed_post(base_url: str, path: str, payload: dict, *, secret: str, timeout=30):
    """POST `payload` as JSON to `base_url + path` with the signature header."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    header = sign(
        secret=secret, timestamp=int(time.time()), method="POST", path=path, body=body
    )
    return http().post(
        base_url + path,
        data=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: header},
        timeout=timeout,
    )
