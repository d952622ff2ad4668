"""Recovery of sends whose task was lost."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from messaging.models import Message, PendingMessageUpdate
from messaging.tasks import message_pending_updates_purge, message_requeue_stuck

from .helpers import customer_make, outbound_make


def _age(message, minutes: int):
    Message.objects.filter(pk=message.pk).update(
        updated_at=timezone.now() - timedelta(minutes=minutes)
    )


@pytest.fixture
def enqueue():
    with mock.patch("messaging.tasks.message_send_enqueue") as patched:
        yield patched


def test_requeue_queues_old_queued_message_again(alice, enqueue):
    message = outbound_make(alice, customer_make(alice))
    _age(message, 10)

    assert message_requeue_stuck() == 1
    enqueue.assert_called_once_with(message.pk)


def test_requeue_leaves_recent_messages(alice, enqueue):
    outbound_make(alice, customer_make(alice))

    assert message_requeue_stuck() == 0
    enqueue.assert_not_called()


def test_requeue_releases_message_stuck_sending(alice, enqueue):
    message = outbound_make(alice, customer_make(alice), status="sending")
    _age(message, 10)

    message_requeue_stuck()

    message.refresh_from_db()
    assert message.status == "queued"
    enqueue.assert_called_once_with(message.pk)


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "failed"])
def test_requeue_ignores_finished_messages(alice, enqueue, status):
    message = outbound_make(alice, customer_make(alice), status=status)
    _age(message, 60)

    assert message_requeue_stuck() == 0


def test_requeue_covers_every_owner(alice, charlie, enqueue):
    for user in (alice, charlie):
        _age(outbound_make(user, customer_make(user)), 10)

    assert message_requeue_stuck() == 2


def test_requeue_after_worker_died_mid_send_sends_once(
    alice, fake_gateway, celery_eager
):
    message = outbound_make(alice, customer_make(alice), status="sending")
    _age(message, 10)
    # The dead worker's call reached the gateway, which sent the message.
    first_answer = {
        "gateway_message_id": "3EB0FIRST",
        "to_jid": "5511900000001@s.whatsapp.net",
    }
    fake_gateway.answers[str(message.code)] = first_answer
    fake_gateway.sends.append(str(message.code))

    message_requeue_stuck()

    message.refresh_from_db()
    assert message.status == "sent"
    assert message.gateway_message_id == "3EB0FIRST"
    assert len(fake_gateway.sends) == 1


def test_purge_deletes_old_held_updates_only(alice):
    old = PendingMessageUpdate.objects.create(
        owner=alice, gateway_message_id="OLD", kind="status", payload={}
    )
    PendingMessageUpdate.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=8)
    )
    PendingMessageUpdate.objects.create(
        owner=alice, gateway_message_id="NEW", kind="status", payload={}
    )

    assert message_pending_updates_purge() == 1
    assert list(
        PendingMessageUpdate.objects.values_list("gateway_message_id", flat=True)
    ) == ["NEW"]


def test_purge_applies_updates_of_stored_messages(alice):
    customer = customer_make(alice)
    message = outbound_make(
        alice, customer, status="sent", gateway_message_id="3EB0LATE"
    )
    PendingMessageUpdate.objects.create(
        owner=alice,
        gateway_message_id="3EB0LATE",
        kind="status",
        payload={"status": "read"},
    )

    message_pending_updates_purge()

    message.refresh_from_db()
    assert message.status == "read"
    assert not PendingMessageUpdate.objects.exists()


def test_requeue_leaves_paced_message(alice, enqueue):
    from messaging.services.sending import message_postpone

    message = outbound_make(alice, customer_make(alice))
    _age(message, 10)
    message_postpone(message.pk)

    assert message_requeue_stuck() == 0
