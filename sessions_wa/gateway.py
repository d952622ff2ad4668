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

# The shortest wait_ms that the gateway's /send/batch accepts.
BATCH_WAIT_MIN_MS = 100


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


def gateway_error_from_reply(status: int, body, *, fallback: str) -> GatewayError:
    """Build the GatewayError for an error status and the gateway's JSON body.

    The body's `message` and `code` are used when present, `fallback` as the
    message otherwise. 5xx, 408, 425 and 429 are transient.
    """
    body = body if isinstance(body, dict) else {}
    return GatewayError(
        body.get("message") or fallback,
        status=status,
        code=body.get("code"),
        permanent=status < 500 and status not in TRANSIENT_STATUSES,
    )


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
            raise gateway_error_from_reply(
                response.status_code,
                data,
                fallback=(
                    f"The gateway answered {response.status_code} to {method} {path}."
                ),
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

    def batch_wait_ms(self) -> int:
        """Return how long `/send/batch` may wait for sends, in milliseconds.

        Four fifths of this client's timeout, and at least the gateway's
        minimum of 100 ms, leave the rest for the request and its response.
        """
        return max(BATCH_WAIT_MIN_MS, int(self.timeout * 1000 * 4 / 5))

    def send_batch(self, messages: list[dict]) -> dict[str, dict | GatewayError]:
        """Send several messages, of one user or several, in order.

        `messages` contains ``{user_id, message_id, to, text}`` items, and
        every user must run on one gateway node: this client's `base_url`,
        or else the node of the first item's user (see
        `gateway_url_for_user`). Returns, by message id,
        ``{gateway_message_id, to_jid}`` for a message the gateway took, or
        the GatewayError that `/send` would have raised for that message
        alone. A message id without a result maps to a transient
        GatewayError. A failure of the whole request raises GatewayError.
        """
        user_ids = {item["user_id"] for item in messages}
        first_user = messages[0]["user_id"]
        if self.base_url is None and len(user_ids) > 1:
            nodes = {gateway_url_for_user(user_id) for user_id in user_ids}
            if len(nodes) > 1:
                raise ValueError(
                    "send_batch got users of several gateway nodes. Group the "
                    "messages by gateway_url_for_user first."
                )
        # The gateway responds within this wait, or its own shorter
        # WA_SEND_BATCH_WAIT_MS, so its response arrives before this request
        # times out. A gateway older than the field ignores it.
        payload: dict = {"messages": messages, "wait_ms": self.batch_wait_ms()}
        if len(user_ids) == 1:
            # Only for one user: a gateway node older than per-item user ids
            # sends every item as the top-level user, and rejects a body
            # without one (400 GW_ERR_USER_ID_REQUIRED).
            payload["user_id"] = first_user
        reply = self.request("POST", "/send/batch", user_id=first_user, payload=payload)
        results = reply.get("results") if isinstance(reply, dict) else None
        if not isinstance(results, list) or len(results) != len(messages):
            raise GatewayError(
                "The gateway returned /send/batch results that do not match "
                "the messages sent, one result each.",
                status=502,
            )

        by_id = {
            result.get("message_id"): result
            for result in results
            if isinstance(result, dict)
        }
        outcomes: dict[str, dict | GatewayError] = {}
        for item in messages:
            result = by_id.get(item["message_id"])
            if result is None:
                outcomes[item["message_id"]] = GatewayError(
                    "The gateway returned no result for this message.", status=502
                )
                continue
            error = result.get("error")
            if error is None:
                outcomes[item["message_id"]] = result
                continue
            status = error.get("status") if isinstance(error, dict) else None
            status = status if isinstance(status, int) else 502
            outcomes[item["message_id"]] = gateway_error_from_reply(
                status,
                error,
                fallback=f"The gateway answered {status} for this message.",
            )
        return outcomes

    def health(self, base_url: str | None = None) -> dict:
        base = (base_url or self.base_url or gateway_urls()[0]).rstrip("/")
        response = _http().get(base + "/healthz", timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def sim(self, action: str, user_id: int, **fields) -> dict:
        """Call a development-only `/sim/<action>` endpoint of the sim engine."""
        payload = {"user_id": user_id, **fields}
        return self.request("POST", f"/sim/{action}", user_id=user_id, payload=payload)
