"""Receipts of one message applied in any order end in one final state.

The gateway delivers `message.status` events in the order WhatsApp produced
them, but a reconnect, an outbox retry or a send task that records its
result late can reorder them. Every permutation is applied here through the
callback service (`sessions_wa.services.gateway_events_apply`), one batch
per event as separate callbacks would arrive, on the real database.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from itertools import count

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.tests.factories import subscriber_create
from messaging.models import Customer, Message, PendingMessageUpdate
from messaging.services import (
    message_claim,
    message_fail,
    message_record_sent,
    message_send,
)
from sessions_wa.models import WhatsAppSession
from sessions_wa.services import gateway_events_apply

pytestmark = pytest.mark.django_db

RECEIPT_OFFSETS = {"sent": 1, "delivered": 5, "read": 9, "played": 12, "failed": 7}
STATE_FIELDS = (
    "status",
    "error_code",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "gateway_message_id",
)

_seq = count(1)

receipt_sets = st.lists(st.sampled_from(list(RECEIPT_OFFSETS)), min_size=1, max_size=6)
fuzz_settings = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class _Rollback(Exception):
    pass


@pytest.fixture
def connected_subscriber(db):
    user = subscriber_create(f"receipts-{uuid.uuid4().hex[:8]}@example.com")
    WhatsAppSession.objects.create(
        user=user,
        session_key=WhatsAppSession.key_for_user_id(user.pk),
        state=WhatsAppSession.State.CONNECTED,
        connected=True,
        jid="5511900000009@s.whatsapp.net",
        phone="+5511900000009",
    )
    return user


def _event(user, event_type: str, data: dict, occurred_at) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "seq": next(_seq),
        "type": event_type,
        "user_id": user.pk,
        "occurred_at": occurred_at.isoformat(),
        "data": data,
    }


def _receipt(user, status: str, *, gateway_id: str, message_code, base) -> dict:
    moment = base + timedelta(seconds=RECEIPT_OFFSETS[status])
    data = {
        "gateway_message_id": gateway_id,
        "message_id": str(message_code) if message_code else None,
        "chat_jid": "5511900000001@s.whatsapp.net",
        "status": status,
        "error": "simulated failure" if status == "failed" else None,
        "timestamp": moment.isoformat(),
    }
    return _event(user, "message.status", data, moment)


def _state(message: Message) -> dict:
    message.refresh_from_db()
    return {field: getattr(message, field) for field in STATE_FIELDS}


def _in_savepoint(function):
    """Run `function` and undo its writes; return what it returned."""
    result = {}
    try:
        with transaction.atomic():
            result["value"] = function()
            raise _Rollback
    except _Rollback:
        pass
    return result["value"]


def _send_and_apply(user, steps: list[str], base) -> dict:
    """Send one message through the API service, then run `steps` in order.

    A step is a receipt status, or ``record_sent``: the send task recording
    the gateway's response, which can come after the first receipts.
    """
    customer = Customer.objects.create(
        owner=user, phone="+5511900000001", match_key="551100000001"
    )
    [message] = message_send(user=user, content="Hello", customer_code=customer.code)
    assert message_claim(message.pk)
    gateway_id = f"3EB0{uuid.uuid4().hex[:16].upper()}"

    for step in steps:
        if step == "record_sent":
            message_record_sent(
                message_id=message.pk,
                gateway_message_id=gateway_id,
                to_jid="5511900000001@s.whatsapp.net",
            )
            continue
        if step == "give_up":
            message_fail(
                message_id=message.pk,
                code="gateway_unavailable",
                reason="The WhatsApp gateway could not be reached.",
            )
            continue
        receipt = _receipt(
            user, step, gateway_id=gateway_id, message_code=message.code, base=base
        )
        gateway_events_apply({"events": [receipt]})

    state = _state(message)
    state["gateway_message_id"] = state["gateway_message_id"] == gateway_id
    # The send task stamps sent_at with its own clock when no receipt did;
    # only whether it is set is independent of the order.
    state["sent_at"] = state["sent_at"] is not None
    return state


def _phone_message_and_apply(user, steps: list[str], base) -> dict:
    """Receive a message typed on the phone and its receipts, in `steps` order.

    A step is a receipt status, or ``received``: the `message.received` echo
    that stores the message; receipts before it are held.
    """
    gateway_id = f"3A{uuid.uuid4().hex[:18].upper()}"

    for step in steps:
        if step == "received":
            data = {
                "gateway_message_id": gateway_id,
                "chat_jid": "5511900000001@s.whatsapp.net",
                "chat_type": "direct",
                "sender_jid": "5511900000009@s.whatsapp.net",
                "sender_phone": "+5511900000009",
                "peer_jid": "5511900000001@s.whatsapp.net",
                "peer_phone": "+5511900000001",
                "from_me": True,
                "kind": "text",
                "text": "On my way",
                "timestamp": base.isoformat(),
                "offline": False,
            }
            event = _event(user, "message.received", data, base)
        else:
            event = _receipt(
                user, step, gateway_id=gateway_id, message_code=None, base=base
            )
        gateway_events_apply({"events": [event]})

    message = Message.objects.get(owner=user, gateway_message_id=gateway_id)
    assert not PendingMessageUpdate.objects.filter(
        owner=user, gateway_message_id=gateway_id
    ).exists(), "held receipts were left behind after their message arrived"
    state = _state(message)
    state["gateway_message_id"] = state["gateway_message_id"] == gateway_id
    return state


@fuzz_settings
@given(receipts=receipt_sets, data=st.data())
def test_sent_message_receipts_in_any_order_end_equal(
    connected_subscriber, receipts, data
):
    steps = ["record_sent", *receipts]
    shuffled = data.draw(st.permutations(steps))

    base = timezone.now()

    in_order = _in_savepoint(lambda: _send_and_apply(connected_subscriber, steps, base))
    reordered = _in_savepoint(
        lambda: _send_and_apply(connected_subscriber, shuffled, base)
    )

    assert reordered == in_order, f"order {shuffled} ended differently from {steps}"


@fuzz_settings
@given(receipts=receipt_sets, data=st.data())
def test_receipts_after_give_up_end_equal(connected_subscriber, receipts, data):
    shuffled = data.draw(st.permutations(receipts))
    rank = ["sent", "delivered", "read", "failed"]
    words = {"played": "read"}
    expected = max((words.get(r, r) for r in receipts), key=rank.index)

    base = timezone.now()

    in_order = _in_savepoint(
        lambda: _send_and_apply(connected_subscriber, ["give_up", *receipts], base)
    )
    reordered = _in_savepoint(
        lambda: _send_and_apply(connected_subscriber, ["give_up", *shuffled], base)
    )

    assert reordered == in_order, f"order {shuffled} ended differently"
    assert in_order["status"] == expected
    if expected != "failed":
        assert in_order["error_code"] == ""


@fuzz_settings
@given(receipts=receipt_sets, data=st.data())
def test_phone_message_receipts_in_any_order_end_equal(
    connected_subscriber, receipts, data
):
    steps = ["received", *receipts]
    shuffled = data.draw(st.permutations(steps))

    base = timezone.now().replace(microsecond=0)

    in_order = _in_savepoint(
        lambda: _phone_message_and_apply(connected_subscriber, steps, base)
    )
    reordered = _in_savepoint(
        lambda: _phone_message_and_apply(connected_subscriber, shuffled, base)
    )

    assert reordered == in_order, f"order {shuffled} ended differently from {steps}"


@fuzz_settings
@given(receipts=receipt_sets, data=st.data())
def test_final_status_is_highest_receipt(connected_subscriber, receipts, data):
    shuffled = data.draw(st.permutations(["record_sent", *receipts]))
    rank = ["sent", "delivered", "read", "failed"]
    words = {"played": "read"}
    expected = max((words.get(r, r) for r in receipts), key=rank.index)

    state = _in_savepoint(
        lambda: _send_and_apply(connected_subscriber, shuffled, timezone.now())
    )

    assert state["status"] == expected


def test_played_before_read_keeps_read_time(connected_subscriber):
    base = timezone.now()
    read_at = base + timedelta(seconds=RECEIPT_OFFSETS["read"])

    state = _send_and_apply(
        connected_subscriber, ["record_sent", "played", "read"], base
    )

    assert state["status"] == Message.Status.READ
    assert state["read_at"] == read_at
