"""Message events through the signed gateway callback, end to end in Django."""

from __future__ import annotations

import json

from messaging.models import Customer, Message
from sessions_wa.models import GatewayEvent

from .helpers import CUSTOMER_JID, callback_post, event, received_data


def test_receipt_before_its_message_in_one_batch(alice):
    receipt = event(
        alice,
        "message.status",
        {
            "gateway_message_id": "3EB0X3",
            "message_id": None,
            "chat_jid": CUSTOMER_JID,
            "status": "delivered",
            "error": None,
            "timestamp": "2024-06-21T20:03:20Z",
        },
    )
    message = event(
        alice,
        "message.received",
        received_data(
            gateway_message_id="3EB0X3",
            from_me=True,
            text="Thanks",
            timestamp="2024-06-21T20:01:40Z",
        ),
    )

    callback_post([receipt, message])

    stored = Message.objects.get(owner=alice)
    assert stored.status == "delivered"
    assert stored.delivered_at.isoformat() == "2024-06-21T20:03:20+00:00"


def test_batch_delivered_three_times_stores_one_message(alice):
    batch = [event(alice, "message.received", received_data(gateway_message_id="DUP2"))]

    answers = [callback_post(batch) for _ in range(3)]

    assert Message.objects.filter(owner=alice).count() == 1
    assert [a["duplicates"] for a in answers] == [0, 1, 1]


def test_same_message_in_new_events_stores_one_message(alice):
    for _ in range(3):
        callback_post(
            [event(alice, "message.received", received_data(gateway_message_id="DUP3"))]
        )

    assert Message.objects.filter(owner=alice).count() == 1


def test_outcomes_are_logged_per_event(alice):
    status = event(
        alice, "message.status", {"gateway_message_id": "LATE", "status": "read"}
    )
    group = event(
        alice,
        "message.received",
        received_data(chat_jid="120363000000000002@g.us", chat_type="group"),
    )
    text = event(alice, "message.received", received_data(gateway_message_id="T1"))

    callback_post([status, group, text])

    outcomes = dict(
        GatewayEvent.objects.values_list("type", "outcome")
        .order_by("seq")
        .filter(type="message.status")
    )
    assert outcomes == {"message.status": "held"}
    assert GatewayEvent.objects.filter(outcome="ignored").count() == 1
    assert Customer.objects.filter(owner=alice).count() == 1


def test_message_text_is_not_kept_in_event_log(alice):
    callback_post([event(alice, "message.received", received_data(text="segredo"))])

    assert "segredo" not in json.dumps(list(GatewayEvent.objects.values_list("data")))
    assert Message.objects.get(owner=alice).body == "segredo"


def test_nul_in_inbound_text_is_stored_without_it(alice):
    text = "Ol\x00á \U0001f44b\u200f\u05e9\u05dc\u05d5\u05dd \U0001f468\u200d\U0001f469"
    callback_post([event(alice, "message.received", received_data(text=text))])

    assert Message.objects.get(owner=alice).body == text.replace("\x00", "")


def test_nul_in_push_name_and_metadata_is_stored_without_it(alice):
    data = received_data(push_name="An\x00a", metadata={"filename": "a\x00.pdf"})
    callback_post([event(alice, "message.received", data)])

    message = Message.objects.get(owner=alice)
    assert message.metadata["filename"] == "a.pdf"
    assert message.customer.push_name == "Ana"
