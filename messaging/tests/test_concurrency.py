"""Concurrent deliveries of one message or one new customer (PostgreSQL)."""

from __future__ import annotations

from functools import partial

import pytest
from django.db import transaction

from messaging.models import Customer, Message
from messaging.services import gateway_event_apply

from .helpers import event, received_data, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _apply_in_transaction(user, data: dict):
    with transaction.atomic():
        return gateway_event_apply(
            user=user, event=event(user, "message.received", data)
        )


def _apply_together(user, datas: list[dict]) -> list:
    """Apply events from parallel threads, each in its own transaction."""
    return run_together([partial(_apply_in_transaction, user, data) for data in datas])


def test_parallel_deliveries_of_one_message_store_one_row(alice):
    results = _apply_together(alice, [received_data(gateway_message_id="DUP2")] * 3)

    assert sorted(results) == ["applied", "duplicate", "duplicate"]
    assert Message.objects.filter(owner=alice).count() == 1


def test_parallel_first_messages_create_one_customer(alice):
    datas = [received_data(gateway_message_id=f"NEW{index}") for index in range(3)]

    results = _apply_together(alice, datas)

    assert results == ["applied"] * 3
    assert Customer.objects.filter(owner=alice).count() == 1
    assert Message.objects.filter(owner=alice).count() == 3
