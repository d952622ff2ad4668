"""HTTP client for the Node gateway; only Celery tasks call it.

Every request is signed (see `sessions_wa.signing`). Failures raise
`GatewayError`, whose `permanent` flag shows whether a retry can help:
network errors, timeouts, 408, 429 and 5xx are transient, any other 4xx is
permanent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from urllib.parse import urlencode, urlsplit

import requests
from django.conf import settings

from .signing import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 425, 429})


class GatewayError(Exception):
    """A gateway call failed.

    `status` is the HTTP status (None when no response came), `code` the
    gateway's error code such as ``GW_ERR_CLIENT_NOT_READY``, and `permanent`
    is True when repeating the same call cannot succeed.
    """

    def __init__(self, message, *, status=None, code=None, permanent=False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.permanent = permanent


def gateway_urls() -> list[str]:
    """Return the configured gateway nodes, one URL each."""
    urls = getattr(settings, "WA_GATEWAY_URLS", None) or [settings.WA_GATEWAY_URL]
    return [url.rstrip("/") for url in urls]


def gateway_url_for_user(user_id: int) -> str:
    """Pick the gateway node that runs a user's client, by rendezvous hashing.

    Every Django process computes the same node for a user without shared
    state, and adding a node moves only the users that now hash to it.
    """
    urls = gateway_urls()
    if len(urls) == 1:
        return urls[0]

    def weight(url: str) -> int:
        digest = hashlib.sha256(f"{url}|{user_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    return max(urls, key=weight)


_local = threading.local()


def _http() -> requests.Session:
    # One pooled session per thread keeps connections to the gateway open
    # across tasks without sharing a Session between threads. The gateway is
    # an internal service reached directly: ignoring HTTP_PROXY, NO_PROXY
    # and .netrc also saves reading them on every call.
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False
        _local.session = session
    return session


class GatewayClient:
    """Signed calls to the gateway node that runs one user's client."""

    def __init__(self, base_url: str | None = None, *, timeout: float | None = None):
        self.base_url = base_url.rstrip("/") if base_url else None
        self.timeout = timeout or settings.WA_GATEWAY_TIMEOUT

    def _url_for(self, user_id: int) -> str:
        return self.base_url or gateway_url_for_user(user_id)

    def request(
        self, method: str, path: str, *, user_id: int, payload=None, query=None
    ):
        """Send one signed request and return the decoded JSON response."""
        base = self._url_for(user_id)
        full_path = path
        if query:
            full_path = f"{path}?{urlencode(query)}"
        body = (
            b""
            if payload is None
            else json.dumps(payload, separators=(",", ":")).encode()
        )
        signed_path = urlsplit(base).path.rstrip("/") + full_path
        headers = {
            SIGNATURE_HEADER: signature_header(
                method=method, path=signed_path, body=body
            ),
            "Accept": "application/json",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"

        try:
            response = _http().request(
                method,
                base + full_path,
                data=body or None,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.Timeout as exc:
            raise GatewayError(
                f"The gateway at {base} did not respond to {method} {path} within "
                f"{self.timeout} s.",
            ) from exc
        except requests.RequestException as exc:
            raise GatewayError(
                f"The gateway at {base} could not be reached for {method} {path}: "
                f"{exc.__class__.__name__}.",
            ) from exc

        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = {}

        if response.status_code >= 400:
            permanent = (
                response.status_code < 500
                and response.status_code not in TRANSIENT_STATUSES
            )
            message = data.get("message") if isinstance(data, dict) else None
            code = data.get("code") if isinstance(data, dict) else None
            raise GatewayError(
                message
                or f"The gateway answered {response.status_code} to {method} {path}.",
                status=response.status_code,
                code=code,
                permanent=permanent,
            )
        return data

    def start(self, user_id: int) -> dict:
        return self.request(
            "POST", "/start", user_id=user_id, payload={"user_id": user_id}
        )

    def stop(self, user_id: int) -> dict:
        return self.request(
            "POST", "/stop", user_id=user_id, payload={"user_id": user_id}
        )

    def logout(self, user_id: int) -> dict:
        return self.request(
            "POST", "/logout", user_id=user_id, payload={"user_id": user_id}
        )

    def status(self, user_id: int) -> dict:
        return self.request(
            "GET", "/status", user_id=user_id, query={"user_id": user_id}
        )

    def qr(self, user_id: int) -> dict:
        return self.request("GET", "/qr", user_id=user_id, query={"user_id": user_id})

    def dead_letters_requeue(self, user_id: int | None = None) -> dict:
        """Put a node's dead-lettered callback events back into its outbox.

        With `user_id`, only that user's, on the node that runs the user.
        Without, every user's on this client's `base_url`. Returns
        ``{"requeued": count}``.
        """
        if user_id is None and self.base_url is None:
            raise ValueError("Give user_id or a base_url to requeue dead letters.")
        return self.request(
            "POST",
            "/outbox/dead-letters/requeue",
            user_id=user_id or 0,
            payload={} if user_id is None else {"user_id": user_id},
        )

    def send(self, user_id: int, *, message_id: str, to: str, text: str) -> dict:
        payload = {"user_id": user_id, "message_id": message_id, "to": to, "text": text}
        return self.request("POST", "/send", user_id=user_id, payload=payload)

    def send_batch(self, user_id: int, messages: list[dict]) -> list[dict]:
        """Send several messages of one user in order; return one result each.

        `messages` holds ``{message_id, to, text}`` items. A result is
        ``{message_id, gateway_message_id, to_jid}`` for a message the
        gateway took, or ``{message_id, error: {status, code, message}}``
        with what `/send` would have answered for that message alone. A
        failure of the whole request raises GatewayError.
        """
        payload = {"user_id": user_id, "messages": messages}
        answer = self.request("POST", "/send/batch", user_id=user_id, payload=payload)
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(messages):
            raise GatewayError(
                "The gateway answered /send/batch without one result per message.",
                status=502,
            )
        return results

    def health(self, base_url: str | None = None) -> dict:
        base = (base_url or self.base_url or gateway_urls()[0]).rstrip("/")
        response = _http().get(base + "/healthz", timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def sim(self, action: str, user_id: int, **fields) -> dict:
        """Call a development-only `/sim/<action>` endpoint of the sim engine."""
        payload = {"user_id": user_id, **fields}
        return self.request("POST", f"/sim/{action}", user_id=user_id, payload=payload)
