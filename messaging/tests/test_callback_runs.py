"""Batches of message events are applied together, with the same result.

The callback applies consecutive `message.received` and `message.status`
events together, of one subscriber or of several: a few queries for the
whole run instead of several per event. These tests post the same
generated events once as one batch and once one event per request, for
subscribers set up alike, and require the same rows and outcomes.
"""

from __future__ import annotations

import json
import random
from unittest import mock

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import subscriber_create
from messaging.models import Customer, Message, PendingMessageUpdate
from sessions_wa.models import GatewayEvent

from .helpers import (
    OWN_PHONE,
    callback_post,
    customer_make,
    event,
    outbound_make,
    received_data,
    session_connect,
)

LID_2 = "100000000000002@lid"
LID_4 = "100000000000004@lid"

# (phone, LID) of the people who write in the generated events. The last
# two share LID_4, so one of them merges a LID-only customer into a phone.
PEERS = [
    ("+5511900000001", None),
    ("+5511900000002", None),
    ("+5511900000002", LID_2),
    ("+5511900000003", None),
    (None, LID_4),
    ("+5511900000005", LID_4),
]
INBOUND_IDS = ["IN1", "IN2", "IN3", "IN4", "IN5"]
OUTBOUND_IDS = ["OUT0", "OUT1", "OUT2"]
TIMES = [f"2024-06-21T20:0{minute}:00Z" for minute in range(6)]


def _jid(phone, lid) -> str:
    return f"{phone[1:]}@s.whatsapp.net" if phone else lid


def _subscriber(email: str):
    """A subscriber with two customers and four outbound messages."""
    user = subscriber_create(email, default_country="BR")
    session_connect(user)
    first = customer_make(user)
    second = customer_make(user, phone="+5511900000002", name="B", lid=LID_2)
    outbound = [
        outbound_make(user, first, status="sending"),
        outbound_make(user, first, status="sent", gateway_message_id="OUT1"),
        outbound_make(
            user,
            second,
            status="failed",
            gateway_message_id="OUT2",
            error_code="gateway_unavailable",
        ),
        outbound_make(user, second, status="queued"),
    ]
    # Both subscribers' messages must compare equal.
    Message.objects.filter(owner=user).update(timestamp=TIMES[0])
    return user, [str(message.code) for message in outbound]


def _received(rng: random.Random) -> tuple[str, dict]:
    phone, lid = rng.choice(PEERS)
    jid = _jid(phone, lid)
    data = received_data(
        gateway_message_id=rng.choice(INBOUND_IDS),
        chat_jid=jid,
        sender_jid=jid,
        sender_phone=phone,
        sender_lid=lid,
        peer_jid=jid,
        peer_phone=phone,
        peer_lid=lid,
        push_name=rng.choice(["Ana", "Bia", None]),
        kind=rng.choice(["text", "text", "undecryptable"]),
        text=rng.choice(["Oi", "Tudo bem?"]),
        timestamp=rng.choice(TIMES),
    )
    if data["kind"] == "undecryptable":
        data["text"] = None
    return "message.received", data


def _echo(rng: random.Random) -> tuple[str, dict]:
    return "message.received", received_data(
        gateway_message_id=rng.choice(OUTBOUND_IDS + INBOUND_IDS[:1]),
        from_me=True,
        push_name=None,
        text="Hello",
        timestamp=rng.choice(TIMES),
    )


def _receipt(rng: random.Random) -> tuple[str, dict]:
    return "message.status", {
        "message_id": rng.choice([None, 0, 1, 2, 3]),
        "gateway_message_id": rng.choice([None, *OUTBOUND_IDS, "IN1", "UNKNOWN"]),
        "chat_jid": _jid(*PEERS[0]),
        "status": rng.choice(["sent", "delivered", "read", "played", "failed"]),
        "error": rng.choice([None, "gone"]),
        "timestamp": rng.choice(TIMES),
        # Receipts the gateway folded together list the lower statuses.
        "earlier": rng.choice(
            [
                None,
                None,
                {"sent": rng.choice(TIMES)},
                {"sent": rng.choice(TIMES), "delivered": rng.choice(TIMES)},
                {"delivered": "not a time", "bogus": rng.choice(TIMES)},
                "not an object",
            ]
        ),
    }


def _other(rng: random.Random) -> tuple[str, dict]:
    return rng.choice(
        [
            (
                "message.received",
                received_data(chat_jid="120363000000000002@g.us", chat_type="group"),
            ),
            (
                "message.received",
                received_data(
                    peer_phone=OWN_PHONE,
                    sender_phone=OWN_PHONE,
                    chat_jid=_jid(OWN_PHONE, None),
                    peer_jid=_jid(OWN_PHONE, None),
                ),
            ),
            ("message.received", received_data(chat_jid=None)),
            ("message.status", {"status": "read"}),
            ("message.status", {"gateway_message_id": "OUT1", "status": "seen"}),
        ]
    )


def _scenario(seed: int, length: int = 40) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    makers = [_received] * 4 + [_echo, _receipt, _receipt, _receipt, _other]
    return [rng.choice(makers)(rng) for _ in range(length)]


def _events_for(user, codes: list[str], scenario) -> list[dict]:
    events = []
    for event_type, data in scenario:
        data = dict(data)
        if isinstance(data.get("message_id"), int):
            data["message_id"] = codes[data["message_id"]]
        events.append(event(user, event_type, data))
    return events


def _state(user, codes: list[str]) -> dict:
    """Everything the events can change for `user`, free of row ids."""
    names = {code: f"O{index}" for index, code in enumerate(codes)}
    messages = sorted(
        json.dumps(
            {
                "ref": names.get(str(message.code), ""),
                "customer": [message.customer.phone, message.customer.lid],
                **{
                    name: getattr(message, name)
                    for name in (
                        "gateway_message_id",
                        "direction",
                        "source",
                        "kind",
                        "body",
                        "status",
                        "error_code",
                        "error",
                        "chat_jid",
                        "quoted_id",
                        "unread",
                        "reactions",
                        "metadata",
                        "timestamp_estimated",
                    )
                },
                **{
                    name: str(getattr(message, name))
                    for name in ("sent_at", "delivered_at", "read_at", "failed_at")
                },
                "timestamp": (
                    "" if message.timestamp_estimated else str(message.timestamp)
                ),
            },
            sort_keys=True,
        )
        for message in Message.objects.filter(owner=user).select_related("customer")
    )
    customers = sorted(
        Customer.objects.filter(owner=user).values_list(
            "phone", "match_key", "lid", "wa_jid", "push_name", "phone_unresolved"
        ),
        key=str,
    )
    pending_updates = sorted(
        PendingMessageUpdate.objects.filter(owner=user).values_list(
            "gateway_message_id", "kind", "payload"
        ),
        key=str,
    )
    outcomes = list(
        GatewayEvent.objects.filter(user=user)
        .order_by("seq")
        .values_list("type", "outcome", "detail")
    )
    return {
        "messages": messages,
        "customers": customers,
        "held": pending_updates,
        "outcomes": outcomes,
    }


@pytest.mark.parametrize("seed", range(24))
def test_one_batch_ends_as_one_event_per_request(db, seed):
    scenario = _scenario(seed)
    together, together_codes = _subscriber("together@example.com")
    alone, alone_codes = _subscriber("alone@example.com")

    callback_post(_events_for(together, together_codes, scenario))
    for single in _events_for(alone, alone_codes, scenario):
        callback_post([single])

    expected = _state(alone, alone_codes)
    for part, rows in _state(together, together_codes).items():
        assert rows == expected[part], part


@pytest.mark.parametrize("seed", range(12))
def test_two_subscriber_batch_matches_singles(db, seed):
    # Both subscribers have customers, and messages with WhatsApp ids, alike,
    # so a row matched to the wrong owner would show in their state.
    first, first_codes = _subscriber("first@example.com")
    second, second_codes = _subscriber("second@example.com")
    first_alone, first_alone_codes = _subscriber("first-alone@example.com")
    second_alone, second_alone_codes = _subscriber("second-alone@example.com")
    first_scenario = _scenario(seed)
    second_scenario = _scenario(seed + 1000)

    first_events = _events_for(first, first_codes, first_scenario)
    second_events = _events_for(second, second_codes, second_scenario)
    rng = random.Random(seed)
    mixed = []
    while first_events or second_events:
        source = rng.choice([queue for queue in (first_events, second_events) if queue])
        mixed.append(source.pop(0))
    callback_post(mixed)
    for single in _events_for(first_alone, first_alone_codes, first_scenario):
        callback_post([single])
    for single in _events_for(second_alone, second_alone_codes, second_scenario):
        callback_post([single])

    for together, alone in (
        (_state(first, first_codes), _state(first_alone, first_alone_codes)),
        (_state(second, second_codes), _state(second_alone, second_alone_codes)),
    ):
        for part, rows in together.items():
            assert rows == alone[part], part


def test_receipts_of_several_subscribers_saved_in_one_update(alice, charlie):
    receipts, messages = [], []
    for user in (alice, charlie, alice, charlie):
        customer = Customer.objects.filter(owner=user).first() or customer_make(user)
        message = outbound_make(
            user, customer, status="sent", gateway_message_id=f"R{len(messages)}"
        )
        messages.append(message)
        receipts.append(
            event(
                user,
                "message.status",
                {"gateway_message_id": message.gateway_message_id, "status": "read"},
            )
        )

    with CaptureQueriesContext(connection) as queries:
        answer = callback_post(receipts)

    updates = [
        query
        for query in queries.captured_queries
        if query["sql"].startswith('UPDATE "messaging_message"')
    ]
    assert answer == {"accepted": 4, "duplicates": 0}
    assert len(updates) == 1
    assert {Message.objects.get(pk=m.pk).status for m in messages} == {"read"}


def test_receipt_naming_another_subscribers_message_changes_nothing(alice, charlie):
    alices = outbound_make(
        alice, customer_make(alice), status="sent", gateway_message_id="OWN"
    )
    charlies = outbound_make(
        charlie,
        customer_make(charlie, phone="+5491122223333"),
        status="sent",
        gateway_message_id="THEIRS",
    )
    batch = [
        event(alice, "message.status", {"gateway_message_id": "OWN", "status": "read"}),
        event(
            alice,
            "message.status",
            {
                "message_id": str(charlies.code),
                "gateway_message_id": "THEIRS",
                "status": "read",
            },
        ),
        event(
            charlie,
            "message.status",
            {"gateway_message_id": "THEIRS", "status": "delivered"},
        ),
    ]

    callback_post(batch)

    assert Message.objects.get(pk=alices.pk).status == "read"
    assert Message.objects.get(pk=charlies.pk).status == "delivered"
    assert PendingMessageUpdate.objects.filter(
        owner=alice, gateway_message_id="THEIRS"
    ).exists()


def _inbound_batch(user, size: int, first: int) -> list[dict]:
    return [
        event(
            user,
            "message.received",
            received_data(gateway_message_id=f"BULK{first + index}", push_name="A"),
        )
        for index in range(size)
    ]


# SQLite splits a bulk insert by its limit on query parameters.
@pytest.mark.postgres
def test_batch_queries_do_not_grow_with_size(alice):
    customer_make(alice, push_name="A", wa_jid="5511900000001@s.whatsapp.net")

    with CaptureQueriesContext(connection) as ten:
        callback_post(_inbound_batch(alice, 10, 0))
    with CaptureQueriesContext(connection) as hundred:
        callback_post(_inbound_batch(alice, 100, 10))

    assert Message.objects.filter(owner=alice).count() == 110
    assert len(hundred.captured_queries) == len(ten.captured_queries)


def _sending(user, count: int, prefix: str) -> list:
    customer = customer_make(user)
    return [
        outbound_make(
            user, customer, status="sending", gateway_message_id=f"{prefix}{n}"
        )
        for n in range(count)
    ]


def _receipt_event(user, message, status: str, timestamp: str, **extra) -> dict:
    data = {
        "message_id": str(message.code),
        "gateway_message_id": message.gateway_message_id,
        "status": status,
        "timestamp": timestamp,
        **extra,
    }
    return event(user, "message.status", data)


def test_receipts_saved_in_one_update(alice):
    messages = _sending(alice, 20, "R")
    receipts = [
        _receipt_event(alice, message, status, TIMES[index])
        for message in messages
        for index, status in enumerate(["sent", "delivered", "read"])
    ]

    with CaptureQueriesContext(connection) as queries:
        callback_post(receipts)

    updates = [
        query
        for query in queries.captured_queries
        if query["sql"].startswith('UPDATE "messaging_message"')
    ]
    assert len(updates) == 1
    assert set(
        Message.objects.filter(owner=alice).values_list("status", flat=True)
    ) == {"read"}
    assert Message.objects.filter(owner=alice, delivered_at=TIMES[1]).count() == 20


@pytest.mark.postgres
def test_receipt_queries_do_not_grow_with_size(alice):
    messages = _sending(alice, 55, "Q")
    few, many = messages[:5], messages[5:]

    with CaptureQueriesContext(connection) as small:
        callback_post([_receipt_event(alice, m, "read", TIMES[2]) for m in few])
    with CaptureQueriesContext(connection) as large:
        callback_post([_receipt_event(alice, m, "read", TIMES[2]) for m in many])

    assert len(large.captured_queries) == len(small.captured_queries)
    assert Message.objects.filter(owner=alice, status="read").count() == 55


def test_batch_folded_receipts_record_times(alice):
    messages = _sending(alice, 3, "F")
    earlier = {"sent": TIMES[0], "delivered": TIMES[1]}
    receipts = [
        _receipt_event(alice, message, "read", TIMES[2], earlier=earlier)
        for message in messages
    ]

    callback_post(receipts)

    stored = Message.objects.filter(owner=alice)
    assert set(stored.values_list("status", flat=True)) == {"read"}
    assert stored.filter(sent_at=TIMES[0], delivered_at=TIMES[1]).count() == 3


def test_failed_bulk_insert_falls_back(alice, caplog):
    customer_make(alice, push_name="A", wa_jid="5511900000001@s.whatsapp.net")
    batch = _inbound_batch(alice, 5, 0)

    with mock.patch(
        "messaging.services.events.rows_copy",
        side_effect=IntegrityError("conflict"),
    ):
        answer = callback_post(batch)

    assert answer == {"accepted": 5, "duplicates": 0}
    assert Message.objects.filter(owner=alice).count() == 5
    assert "applying them one by one" in caplog.text


def test_malformed_event_in_a_run_is_rejected_alone(alice):
    batch = _inbound_batch(alice, 3, 0)
    batch[1]["data"]["chat_jid"] = None

    callback_post(batch)

    outcomes = list(
        GatewayEvent.objects.filter(user=alice)
        .order_by("seq")
        .values_list("outcome", flat=True)
    )
    assert outcomes == ["applied", "rejected", "applied"]
    assert Message.objects.filter(owner=alice).count() == 2
