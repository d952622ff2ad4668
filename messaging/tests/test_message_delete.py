"""Deleting messages: later parts go along, unsent parts give quota back."""

from __future__ import annotations

import pytest

from messaging.models import Message
from messaging.services import message_send, messages_delete

from .helpers import customer_make, outbound_make, receive, sent_today

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(alice):
    return customer_make(alice)


def test_queued_part_delete_refunds_quota(
    alice, customer, django_capture_on_commit_callbacks
):
    (message,) = message_send(user=alice, customer_code=customer.code, content="Hi")

    with django_capture_on_commit_callbacks(execute=True):
        messages_delete(message_ids=[message.pk])

    assert not Message.objects.filter(pk=message.pk).exists()
    assert sent_today(alice) == 0


def test_sent_part_delete_keeps_quota(
    alice, customer, django_capture_on_commit_callbacks
):
    (message,) = message_send(user=alice, customer_code=customer.code, content="Hi")
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENT)

    with django_capture_on_commit_callbacks(execute=True):
        messages_delete(message_ids=[message.pk])

    assert sent_today(alice) == 1


def test_first_part_delete_takes_later_parts(
    alice, customer, django_capture_on_commit_callbacks
):
    parts = message_send(user=alice, customer_code=customer.code, content="👍" * 5000)

    with django_capture_on_commit_callbacks(execute=True):
        deleted = messages_delete(message_ids=[parts[0].pk])

    assert deleted == 3
    assert not Message.objects.filter(owner=alice).exists()
    assert sent_today(alice) == 0


def test_middle_part_delete_keeps_first(
    alice, customer, django_capture_on_commit_callbacks
):
    parts = message_send(user=alice, customer_code=customer.code, content="👍" * 5000)

    with django_capture_on_commit_callbacks(execute=True):
        messages_delete(message_ids=[parts[1].pk])

    assert list(Message.objects.filter(owner=alice).values_list("pk", flat=True)) == [
        parts[0].pk
    ]
    assert sent_today(alice) == 1


def test_part_and_next_refunded_once(
    alice, customer, django_capture_on_commit_callbacks
):
    parts = message_send(user=alice, customer_code=customer.code, content="👍" * 5000)

    with django_capture_on_commit_callbacks(execute=True):
        deleted = messages_delete(message_ids=[parts[1].pk, parts[2].pk])

    assert deleted == 2
    assert sent_today(alice) == 1


def test_phone_message_delete_keeps_quota(
    alice, customer, django_capture_on_commit_callbacks
):
    message_send(user=alice, customer_code=customer.code, content="Counted")
    typed_on_phone = outbound_make(alice, customer, source=Message.Source.PHONE)

    with django_capture_on_commit_callbacks(execute=True):
        messages_delete(message_ids=[typed_on_phone.pk])

    assert sent_today(alice) == 1


def test_inbound_delete_keeps_quota(
    alice, customer, django_capture_on_commit_callbacks
):
    message_send(user=alice, customer_code=customer.code, content="Counted")
    receive(alice)
    inbound = Message.objects.get(owner=alice, direction=Message.Direction.INBOUND)

    with django_capture_on_commit_callbacks(execute=True):
        messages_delete(message_ids=[inbound.pk])

    assert not Message.objects.filter(pk=inbound.pk).exists()
    assert sent_today(alice) == 1


def test_delete_refunds_each_owner(
    alice, charlie, customer, django_capture_on_commit_callbacks
):
    (mine,) = message_send(user=alice, customer_code=customer.code, content="A")
    code = customer_make(charlie, phone="+5491100000001").code
    message_send(user=charlie, customer_code=code, content="C1")
    (theirs,) = message_send(user=charlie, customer_code=code, content="C2")

    with django_capture_on_commit_callbacks(execute=True):
        messages_delete(message_ids=[mine.pk, theirs.pk])

    assert (sent_today(alice), sent_today(charlie)) == (0, 1)


def test_empty_delete_deletes_nothing(alice, customer):
    message_send(user=alice, customer_code=customer.code, content="Stays")

    assert messages_delete(message_ids=[]) == 0
    assert Message.objects.filter(owner=alice).count() == 1
