"""Concurrency on PostgreSQL: one subscriber's parallel sends (quota and
idempotency), and a receipt held while its send is recorded."""

from __future__ import annotations

import threading
from functools import partial

import pytest
from django.db import transaction

from accounts.models import Subscription
from messaging.models import DailySendCount, Message, PendingMessageUpdate
from messaging.services import gateway_event_apply, message_send
from messaging.services.sending import message_record_sent
from whatsapp_saas.exceptions import ApplicationError
from whatsapp_saas.testing import run_together

from .helpers import customer_make, event, outbound_make

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _send_together(user, count: int, *, per_thread=None, **kwargs) -> list:
    """Call message_send from `count` threads at once and return results or errors.

    `per_thread(index)` returns the arguments that differ between threads.
    """
    calls = []
    for index in range(count):
        extra = per_thread(index) if per_thread else {}
        calls.append(partial(message_send, user=user, **kwargs, **extra))
    return run_together(calls)


def _codes(results) -> list[str]:
    return sorted(
        result.code if isinstance(result, ApplicationError) else "queued"
        for result in results
    )


def test_parallel_sends_stop_at_quota(alice):
    Subscription.objects.filter(user=alice).update(daily_message_quota=3)
    alice.refresh_from_db()
    customer = customer_make(alice)

    results = _send_together(alice, 6, customer_code=customer.code, content="Oi")

    assert _codes(results) == ["daily_quota_exceeded"] * 3 + ["queued"] * 3
    assert Message.objects.filter(owner=alice).count() == 3
    assert DailySendCount.objects.get(owner=alice).sent == 3


def test_parallel_sends_with_one_key_store_one_message(alice):
    customer = customer_make(alice)

    results = _send_together(
        alice, 4, customer_code=customer.code, content="Oi", idempotency_key="k-1"
    )

    assert _codes(results) == ["queued"] * 4
    assert len({result[0].pk for result in results}) == 1
    assert Message.objects.filter(owner=alice).count() == 1
    assert DailySendCount.objects.get(owner=alice).sent == 1


def test_parallel_keyed_sends_to_new_number(alice):
    results = _send_together(
        alice, 4, to="+5511900000007", content="Oi", idempotency_key="k-2"
    )

    assert _codes(results) == ["queued"] * 4
    assert Message.objects.filter(owner=alice).count() == 1


def test_parallel_keyed_sends_to_other_numbers(alice):
    results = _send_together(
        alice,
        4,
        per_thread=lambda index: {"to": f"+55119000000{index + 10}"},
        content="Oi",
        idempotency_key="k-3",
    )

    assert _codes(results) == ["idempotency_key_reused"] * 3 + ["queued"]
    assert Message.objects.filter(owner=alice).count() == 1


def test_receipt_held_during_send_record(alice):
    # The receipt names only the WhatsApp id, as after a gateway restart. It
    # finds no message and is held. The send task records that id before the
    # hold commits, so it cannot see the hold. Only the check after the
    # hold's commit applies the receipt.
    message = outbound_make(alice, customer_make(alice), status="sending")
    receipt_held = threading.Event()
    send_recorded = threading.Event()

    def receipt_apply():
        receipt = {"gateway_message_id": "3EB0RACE", "status": "delivered"}
        with transaction.atomic():
            outcome = gateway_event_apply(
                user=alice, event=event(alice, "message.status", receipt)
            )
            receipt_held.set()
            send_recorded.wait(5)
        return outcome

    def send_record():
        receipt_held.wait(5)
        message_record_sent(message_id=message.pk, gateway_message_id="3EB0RACE")
        send_recorded.set()

    outcomes = run_together([receipt_apply, send_record])

    message.refresh_from_db()
    assert outcomes[0] == "held"
    assert message.status == "delivered"
    assert not PendingMessageUpdate.objects.exists()
