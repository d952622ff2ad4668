"""Concurrent deliveries and the row locks of receipts (PostgreSQL)."""

from __future__ import annotations

from functools import partial

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

from messaging.models import Customer, Message
from messaging.services import gateway_event_apply
from messaging.services.events import _receipt_messages_locked
from whatsapp_saas.testing import run_together

from .helpers import customer_make, event, outbound_make, received_data

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


def _locked_elsewhere(message) -> bool:
    """Return whether another connection finds `message`'s row locked."""
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM messaging_message WHERE id = %s FOR UPDATE NOWAIT",
                [message.pk],
            )
    except OperationalError:
        return True
    finally:
        other.close()
    return False


def test_receipt_lock_takes_own_message(alice):
    message = outbound_make(alice, customer_make(alice), status="sent")

    with transaction.atomic():
        locked = _receipt_messages_locked({alice.pk}, {message.code}, set())

        assert [row.pk for row in locked] == [message.pk]
        assert _locked_elsewhere(message)


def test_receipt_lock_skips_other_owner_message(alice, charlie):
    theirs = outbound_make(
        charlie, customer_make(charlie, phone="+5491100000001"), status="sent"
    )

    with transaction.atomic():
        locked = _receipt_messages_locked({alice.pk}, {theirs.code}, set())

        assert locked == []
        assert not _locked_elsewhere(theirs)
