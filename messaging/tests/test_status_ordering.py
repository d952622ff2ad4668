"""Receipts in any order end in the same state."""

from __future__ import annotations

from itertools import permutations

import pytest
from django.utils import timezone

from messaging.models import Message
from whatsapp_saas.exceptions import ApplicationError

from .helpers import apply, customer_make, outbound_make, receive

TIMES = {
    "sent": "2024-06-21T20:00:01Z",
    "delivered": "2024-06-21T20:00:02Z",
    "read": "2024-06-21T20:00:03Z",
    "failed": "2024-06-21T20:00:04Z",
}


def _receipt(user, status, earlier=None):
    data = {
        "gateway_message_id": "3EB0ORDER",
        "message_id": None,
        "status": status,
        "error": None,
        "timestamp": TIMES[status],
    }
    if earlier is not None:
        # Receipts the gateway folded into this one.
        data["earlier"] = earlier
    return apply(user, "message.status", data)


def _state(message):
    message.refresh_from_db()
    return (
        message.status,
        message.sent_at,
        message.delivered_at,
        message.read_at,
        message.failed_at,
    )


def _assert_read_with_every_time(message):
    status, sent_at, delivered_at, read_at, _failed = _state(message)
    assert status == "read"
    assert sent_at.isoformat() == "2024-06-21T20:00:01+00:00"
    assert delivered_at.isoformat() == "2024-06-21T20:00:02+00:00"
    assert read_at.isoformat() == "2024-06-21T20:00:03+00:00"


@pytest.mark.parametrize("order", list(permutations(["sent", "delivered", "read"])))
def test_receipts_in_any_order_end_read(alice, order):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="sending", gateway_message_id="3EB0ORDER"
    )

    for status in order:
        _receipt(alice, status)

    _assert_read_with_every_time(message)


@pytest.mark.parametrize(
    "order", list(permutations(["sent", "delivered", "read", "failed"]))
)
def test_failed_is_final_in_any_order(alice, order):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="sending", gateway_message_id="3EB0ORDER"
    )

    for status in order:
        _receipt(alice, status)

    assert _state(message)[0] == "failed"


@pytest.mark.parametrize("split", range(4))
def test_receipts_held_before_the_message_end_the_same(alice, split):
    order = ["read", "sent", "delivered"]
    for status in order[:split]:
        _receipt(alice, status)

    receive(alice, gateway_message_id="3EB0ORDER", from_me=True)
    for status in order[split:]:
        _receipt(alice, status)

    message = Message.objects.get(owner=alice)
    assert message.status == "read"
    assert message.read_at.isoformat() == "2024-06-21T20:00:03+00:00"


def test_folded_receipt_records_each_time(alice):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="sending", gateway_message_id="3EB0ORDER"
    )

    outcome = _receipt(
        alice, "read", {"sent": TIMES["sent"], "delivered": TIMES["delivered"]}
    )

    assert outcome == "applied"
    _assert_read_with_every_time(message)


def test_held_folded_receipt_keeps_times(alice):
    _receipt(alice, "read", {"delivered": TIMES["delivered"]})

    receive(alice, gateway_message_id="3EB0ORDER", from_me=True)

    message = Message.objects.get(owner=alice)
    assert message.status == "read"
    assert message.delivered_at.isoformat() == "2024-06-21T20:00:02+00:00"


def test_played_keeps_earlier_read_time(alice):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="sent", gateway_message_id="3EB0ORDER"
    )

    apply(
        alice,
        "message.status",
        {
            "gateway_message_id": "3EB0ORDER",
            "status": "played",
            "timestamp": "2024-06-21T20:05:00Z",
            "earlier": {"read": TIMES["read"]},
        },
    )

    assert _state(message)[3].isoformat() == "2024-06-21T20:00:03+00:00"


def test_earlier_not_object_rejected(alice):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="sending", gateway_message_id="3EB0ORDER"
    )

    with pytest.raises(ApplicationError, match="earlier must be an object"):
        _receipt(alice, "read", ["sent", TIMES["sent"]])

    assert _state(message)[0] == "sending"


@pytest.mark.parametrize(
    "earlier",
    [
        {"queued": TIMES["sent"]},
        {"failed": TIMES["failed"]},
        {"delivered": "yesterday"},
        {"played": TIMES["sent"]},
        {"read": TIMES["sent"]},
    ],
)
def test_bad_earlier_entry_left_out(alice, caplog, earlier):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="sending", gateway_message_id="3EB0ORDER"
    )

    outcome = _receipt(alice, "read", earlier)

    assert outcome == "applied"
    status, _sent, delivered_at, read_at, failed_at = _state(message)
    assert (status, delivered_at, failed_at) == ("read", None, None)
    assert read_at.isoformat() == "2024-06-21T20:00:03+00:00"
    assert "Left out invalid earlier statuses" in caplog.text


def test_bad_earlier_entries_logged_once(alice, caplog):
    customer = customer_make(alice)
    outbound_make(alice, customer, status="sending", gateway_message_id="3EB0ORDER")

    _receipt(alice, "read", {"queued": TIMES["sent"], "delivered": "yesterday"})

    assert caplog.text.count("Left out invalid earlier statuses") == 1
    assert "'queued', 'delivered'" in caplog.text


def test_earlier_with_too_many_entries_rejected(alice):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="sending", gateway_message_id="3EB0ORDER"
    )
    earlier = {f"word{number}": TIMES["sent"] for number in range(5)}

    with pytest.raises(ApplicationError, match="at most 4 lower status words"):
        _receipt(alice, "read", earlier)

    assert _state(message)[0] == "sending"


def test_repeated_receipt_is_a_duplicate(alice):
    customer = customer_make(alice)
    outbound_make(alice, customer, status="sent", gateway_message_id="3EB0ORDER")
    _receipt(alice, "delivered")

    assert _receipt(alice, "delivered") == "duplicate"


def test_lower_receipt_never_moves_status_back(alice):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="read", gateway_message_id="3EB0ORDER"
    )

    _receipt(alice, "delivered")

    assert _state(message)[0] == "read"


def _given_up(user, *, error_code="gateway_unavailable"):
    """An outbound message the send task marked failed without a gateway id."""
    customer = customer_make(user)
    return outbound_make(
        user,
        customer,
        status="failed",
        error_code=error_code,
        error="The WhatsApp gateway could not be reached after 3 attempts.",
        failed_at=timezone.now(),
    )


def _receipt_by_code(user, message, status):
    return apply(
        user,
        "message.status",
        {
            "gateway_message_id": "3EB0LATE",
            "message_id": str(message.code),
            "status": status,
            "error": "not delivered" if status == "failed" else None,
            "timestamp": TIMES[status],
        },
    )


@pytest.mark.parametrize("error_code", ["gateway_unavailable", "send_in_doubt"])
@pytest.mark.parametrize("order", list(permutations(["sent", "delivered", "read"])))
def test_receipts_undo_unknown_outcome_failure(alice, error_code, order):
    message = _given_up(alice, error_code=error_code)

    for status in order:
        _receipt_by_code(alice, message, status)

    message.refresh_from_db()
    assert message.status == "read"
    assert (message.error_code, message.error, message.failed_at) == ("", "", None)
    assert message.gateway_message_id == "3EB0LATE"
    assert message.read_at.isoformat() == "2024-06-21T20:00:03+00:00"


@pytest.mark.parametrize("order", list(permutations(["sent", "read", "failed"])))
def test_reported_failure_after_give_up_is_final(alice, order):
    message = _given_up(alice)

    for status in order:
        _receipt_by_code(alice, message, status)

    message.refresh_from_db()
    assert message.status == "failed"
    assert message.error_code == "delivery_failed"
    assert message.failed_at.isoformat() == "2024-06-21T20:00:04+00:00"


@pytest.mark.parametrize("error_code", ["not_on_whatsapp", "delivery_failed"])
def test_receipt_keeps_a_reported_failure(alice, error_code):
    message = _given_up(alice, error_code=error_code)

    _receipt_by_code(alice, message, "read")

    message.refresh_from_db()
    assert message.status == "failed"
    assert message.error_code == error_code
