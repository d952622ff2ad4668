"""Builders for gateway events, sessions, messages, and a fake gateway."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings
from django.db import transaction
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone, translation

from messaging.models import Customer, DailySendCount, Message
from messaging.phones import match_key
from messaging.services import gateway_event_apply
from sessions_wa.models import WhatsAppSession
from sessions_wa.signing import SignatureError, sign, verify

OWN_PHONE = "+5511900000009"
CUSTOMER_PHONE = "+5511900000001"
CUSTOMER_JID = "5511900000001@s.whatsapp.net"
REFERENCE_ISO = "2024-06-21T20:00:00Z"

_seq = itertools.count(1)


def session_connect(user, *, phone: str = OWN_PHONE, state: str = "connected"):
    """Give `user` a WhatsApp session in `state`, linked to `phone`."""
    digits = phone.lstrip("+")
    session, _created = WhatsAppSession.objects.update_or_create(
        user=user,
        defaults={
            "session_key": WhatsAppSession.key_for_user_id(user.pk),
            "state": state,
            "connected": state == "connected",
            "phone": phone,
            "jid": f"{digits}@s.whatsapp.net",
        },
    )
    # The user object may hold the previous session in its relation cache.
    user._state.fields_cache.pop("whatsapp_session", None)
    return session


def event(user, event_type: str, data: dict, *, occurred_at: str = REFERENCE_ISO):
    return {
        "event_id": str(uuid.uuid4()),
        "seq": next(_seq),
        "type": event_type,
        "user_id": user.pk,
        "occurred_at": occurred_at,
        "data": data,
    }


def apply(user, event_type: str, data: dict, **kwargs) -> str:
    """Apply one event the way the callback service does, in a savepoint.

    What the event left for its commit (such as ignored-event counts) runs
    when the savepoint ends, as it would when the callback commits.
    """
    with TestCase.captureOnCommitCallbacks(execute=True), transaction.atomic():
        return gateway_event_apply(
            user=user, event=event(user, event_type, data, **kwargs)
        )


def callback_post(events: list[dict]) -> dict:
    """POST events to the signed gateway callback as one batch; return the body."""
    path = reverse("sessions_wa_api:gateway_callback")
    body = json.dumps({"events": events}).encode()
    header = sign(
        secret=settings.WA_GATEWAY_SECRETS[0],
        timestamp=int(time.time()),
        method="POST",
        path=path,
        body=body,
    )
    # The test's transaction never commits, so run what the callback left
    # for its commit when the request ends.
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = Client().post(
            path, body, content_type="application/json", HTTP_X_WA_SIGNATURE=header
        )
    assert response.status_code == 200, response.content
    return response.json()


def received_data(**overrides) -> dict:
    """`message.received` data for a text from Customer A, then overrides."""
    data = {
        "gateway_message_id": "3EB0A0000000000000001",
        "chat_jid": CUSTOMER_JID,
        "chat_type": "direct",
        "sender_jid": CUSTOMER_JID,
        "sender_phone": CUSTOMER_PHONE,
        "sender_lid": None,
        "peer_jid": CUSTOMER_JID,
        "peer_phone": CUSTOMER_PHONE,
        "peer_lid": None,
        "push_name": "Customer A",
        "from_me": False,
        "kind": "text",
        "text": "Oi",
        "quoted_id": None,
        "metadata": {},
        "media": None,
        "timestamp": REFERENCE_ISO,
        "offline": False,
    }
    data.update(overrides)
    return data


def receive(user, **overrides) -> str:
    return apply(user, "message.received", received_data(**overrides))


def customer_make(
    user, *, phone: str = CUSTOMER_PHONE, name: str = "Customer A", **fields
):
    return Customer.objects.create(
        owner=user, phone=phone, match_key=match_key(phone), name=name, **fields
    )


def outbound_make(
    user, customer, *, status="queued", body="Hello", source="api", **fields
):
    return Message.objects.create(
        owner=user,
        customer=customer,
        direction=Message.Direction.OUTBOUND,
        source=source,
        kind=Message.Kind.TEXT,
        body=body,
        status=status,
        timestamp=timezone.now(),
        **fields,
    )


@dataclass
class SendCall:
    message_id: str
    to: str
    text: str
    user_id: int


@dataclass
class FakeGateway:
    """A gateway `/send` on 127.0.0.1 that keys sends by message_id.

    `script` contains the responses to the next requests, in order, as
    (status, body, delay seconds); when it is empty every send is accepted.
    The delay is spent after the send was recorded, so a client timeout
    leaves a send the gateway did make, as a slow real gateway would. A
    repeated message_id gets the first successful response, like the real
    gateway, and `sends` counts the messages actually sent.
    """

    script: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    sends: list = field(default_factory=list)
    answers: dict = field(default_factory=dict)
    bad_signatures: int = 0
    batches: list = field(default_factory=list)
    batch_route: bool = True
    batch_script: list = field(default_factory=list)
    # The top-level user_id of each /send/batch body, None when it had none.
    batch_body_users: list = field(default_factory=list)
    # The wait_ms of each /send/batch body, None when it had none.
    batch_waits: list = field(default_factory=list)
    # Users without a session here: their sends get 404
    # GW_ERR_SESSION_NOT_FOUND, as from the real gateway.
    missing_sessions: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_batch(self, payload: dict) -> tuple[int, dict, float]:
        """Respond to `/send/batch` item by item, as the real gateway does.

        `batch_script` contains whole-request responses (status, body,
        delay) for the next batches. `script` still scripts single items,
        and an item scripted with an error status gets it as its error.
        """
        items = payload.get("messages") or []
        with self.lock:
            self.batches.append([item.get("message_id") for item in items])
            self.batch_body_users.append(payload.get("user_id"))
            self.batch_waits.append(payload.get("wait_ms"))
            if self.batch_script:
                return self.batch_script.pop(0)
        results = []
        delay_total = 0.0
        for item in items:
            # An item's own user_id, else the body's, as the real gateway.
            user_id = item.get("user_id", payload.get("user_id"))
            status, body, delay = self.answer({**item, "user_id": user_id})
            delay_total += delay
            if status == 202:
                results.append({"message_id": item["message_id"], **body})
                continue
            error = {"status": status, "code": None, "message": None, **(body or {})}
            results.append({"message_id": item["message_id"], "error": error})
        return 200, {"results": results}, delay_total

    def answer(self, payload: dict) -> tuple[int, dict, float]:
        with self.lock:
            call = SendCall(
                message_id=payload.get("message_id"),
                to=payload.get("to"),
                text=payload.get("text"),
                user_id=payload.get("user_id"),
            )
            self.requests.append(call)
            if call.user_id in self.missing_sessions:
                body = {
                    "code": "GW_ERR_SESSION_NOT_FOUND",
                    "message": f"No WhatsApp session for user {call.user_id}.",
                }
                return 404, body, 0.0
            if call.message_id in self.answers:
                return 202, self.answers[call.message_id], 0.0
            status, body, delay = (
                self.script.pop(0) if self.script else (202, None, 0.0)
            )
            if status == 202:
                body = body or {
                    "gateway_message_id": f"3EB0{uuid.uuid4().hex[:18].upper()}",
                    "to_jid": _jid_for(call.to),
                }
                self.answers[call.message_id] = body
                self.sends.append(call)
            return status, body, delay


def _jid_for(to: str) -> str:
    if "@" in to:
        return to
    return f"{to.lstrip('+')}@s.whatsapp.net"


class _Handler(BaseHTTPRequestHandler):
    gateway: FakeGateway

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            verify(
                header=self.headers.get("X-WA-Signature"),
                secrets=settings.WA_GATEWAY_SECRETS,
                method="POST",
                path=self.path,
                body=body,
                now=int(time.time()),
            )
        except SignatureError:
            self.gateway.bad_signatures += 1
            self._reply(401, {"code": "GW_ERR_SIGNATURE", "message": "bad signature"})
            return
        payload = json.loads(body)
        if self.path == "/send":
            status, answer, delay = self.gateway.answer(payload)
        elif self.path == "/send/batch" and self.gateway.batch_route:
            status, answer, delay = self.gateway.answer_batch(payload)
        else:
            self._reply(404, {"code": "GW_ERR_NOT_FOUND", "message": "no such route"})
            return
        if delay:
            time.sleep(delay)
        self._reply(status, answer)

    def _reply(self, status: int, body: dict):
        data = json.dumps(body or {}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test); the send was still made.
            pass


def fake_gateway_start() -> tuple[FakeGateway, ThreadingHTTPServer]:
    gateway = FakeGateway()
    handler = type("Handler", (_Handler,), {"gateway": gateway})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return gateway, server


def thread_language_kept():
    """Return a context that restores the thread's language when it exits.

    A request with Accept-Language activates its language for the thread,
    which later tests share.
    """
    return translation.override(translation.get_language())


def sent_today(user) -> int:
    """Return how many parts today's quota of `user` has counted."""
    return DailySendCount.objects.get(owner=user, day=timezone.localdate()).sent
