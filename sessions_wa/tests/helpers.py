"""Builders for gateway events and signed callbacks, and a fake gateway."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.urls import reverse

from sessions_wa.signing import SignatureError, sign, verify

# 2024-06-21T20:00:00Z. Event n occurs n seconds later unless a test passes
# occurred_at.
BASE_TIME = datetime(2024, 6, 21, 20, 0, tzinfo=UTC)
OWN_PHONE = "+5511900000009"


def iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def gateway_event(
    user_id: int,
    event_type: str,
    data: dict,
    *,
    seq: int,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> dict:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "seq": seq,
        "type": event_type,
        "user_id": user_id,
        "occurred_at": iso(occurred_at or BASE_TIME + timedelta(seconds=seq)),
        "data": data,
    }


def qr_event(user_id: int, seq: int, **kwargs) -> dict:
    expires = (kwargs.get("occurred_at") or BASE_TIME + timedelta(seconds=seq)) + (
        timedelta(seconds=20)
    )
    data = {"qr": f"2@qr-ref-{seq},pubkey,identity,adv", "expires_at": iso(expires)}
    return gateway_event(user_id, "session.qr", data, seq=seq, **kwargs)


def connected_event(
    user_id: int,
    seq: int,
    *,
    phone: str | None = OWN_PHONE,
    jid: str | None = None,
    **kwargs,
) -> dict:
    data = {
        "jid": jid or f"{OWN_PHONE[1:]}@s.whatsapp.net",
        "phone": phone,
        "push_name": "Shop Owner",
        "lid": "100000000000099@lid",
    }
    return gateway_event(user_id, "session.connected", data, seq=seq, **kwargs)


def disconnected_event(
    user_id: int, seq: int, reason: str, *, will_reconnect: bool = False, **kwargs
) -> dict:
    data = {"reason": reason, "will_reconnect": will_reconnect}
    return gateway_event(user_id, "session.disconnected", data, seq=seq, **kwargs)


def logged_out_event(user_id: int, seq: int, reason: str, **kwargs) -> dict:
    return gateway_event(
        user_id, "session.logged_out", {"reason": reason}, seq=seq, **kwargs
    )


def message_event(user_id: int, seq: int, text: str = "Oi", **kwargs) -> dict:
    data = {
        "gateway_message_id": f"3EB0{seq:08d}",
        "chat_jid": "5511900000001@s.whatsapp.net",
        "chat_type": "direct",
        "sender_jid": "5511900000001@s.whatsapp.net",
        "sender_phone": "+5511900000001",
        "from_me": False,
        "kind": "text",
        "text": text,
        "metadata": {"caption": text},
        "timestamp": iso(BASE_TIME),
    }
    return gateway_event(user_id, "message.received", data, seq=seq, **kwargs)


def callback_path() -> str:
    return reverse("sessions_wa_api:gateway_callback")


def signed_header(body: bytes, *, secret: str | None = None, timestamp=None) -> str:
    return sign(
        secret=secret or settings.WA_GATEWAY_SECRETS[0],
        timestamp=int(time.time()) if timestamp is None else timestamp,
        method="POST",
        path=callback_path(),
        body=body,
    )


def post_callback(client, payload, *, header: str | None = None, **sign_options):
    """POST a signed callback; `payload` is a list of events, a dict or bytes."""
    if isinstance(payload, list):
        payload = {"events": payload}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if header is None:
        header = signed_header(body, **sign_options)
    extra = {"HTTP_X_WA_SIGNATURE": header} if header else {}
    return client.generic(
        "POST", callback_path(), body, content_type="application/json", **extra
    )


class FakeGateway:
    """A gateway on 127.0.0.1 that checks signatures and responds from a script.

    `reply(path, (status, body), ...)` queues responses for a path. Once the
    queue is empty, the path's default response is used.
    """

    DEFAULTS = {
        "/start": (202, {"state": "starting"}),
        "/stop": (200, {}),
        "/logout": (200, {}),
        "/status": (404, {"code": "GW_ERR_SESSION_NOT_FOUND", "message": "unknown"}),
        "/healthz": (200, {"sessions": 0, "engine": "sim", "outbox_pending": 0}),
        "/sim/scan": (200, {}),
    }

    def __init__(self, secrets: list[str]):
        self.secrets = secrets
        self.requests: list[dict] = []
        self.queued: dict[str, deque] = defaultdict(deque)
        self.defaults = dict(self.DEFAULTS)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll interval lets shutdown() return quickly after each test.
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.02},
            daemon=True,
        )

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def reply(self, path: str, *responses: tuple[int, dict]):
        with self._lock:
            self.queued[path].extend(responses)

    def calls(self, path: str) -> list[dict]:
        return [request for request in self.requests if request["path"] == path]

    def _response_for(self, path: str) -> tuple[int, dict]:
        with self._lock:
            if self.queued[path]:
                return self.queued[path].popleft()
        return self.defaults.get(path, (404, {"code": "GW_ERR_NOT_FOUND"}))

    def _handler(self):
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)

                signed = True
                if url.path != "/healthz":
                    try:
                        verify(
                            header=self.headers.get("X-WA-Signature"),
                            secrets=gateway.secrets,
                            method=self.command,
                            path=self.path,
                            body=body,
                            now=int(time.time()),
                        )
                    except SignatureError:
                        signed = False

                gateway.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "json": json.loads(body) if body else None,
                        "signed": signed,
                    }
                )

                status, response_body = (
                    gateway._response_for(url.path)
                    if signed
                    else (401, {"code": "GW_ERR_SIGNATURE"})
                )
                payload = json.dumps(response_body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

        return Handler
