"""A one-part send to a customer by id, stored by one statement on PostgreSQL.

The statement reads the customer, counts the message against the daily
quota and inserts it. These tests compare it with the general path.
"""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from accounts.models import Subscription
from messaging.models import DailySendCount, Message
from messaging.selectors import whatsapp_state
from messaging.services import message_send
from messaging.services.sending import ONE_SEND_CONSTANTS, _one_send_statement
from whatsapp_saas.exceptions import ApplicationError

from .helpers import customer_make

pytestmark = pytest.mark.postgres

# Fields that differ between any two stored messages.
OWN_FIELDS = {"id", "code", "timestamp", "created_at", "updated_at"}


def _stored(message) -> dict:
    row = model_to_dict(Message.objects.get(pk=message.pk))
    return {name: value for name, value in row.items() if name not in OWN_FIELDS}


def _quota_set(user, limit: int) -> None:
    Subscription.objects.filter(user=user).update(daily_message_quota=limit)
    user.refresh_from_db()


def test_send_row_matches_general_path(alice):
    customer = customer_make(alice, wa_jid="5511988887777@s.whatsapp.net")

    [fast] = message_send(user=alice, customer_code=customer.code, content="Oi")
    with mock.patch(
        "messaging.services.sending._one_statement_fits", return_value=False
    ):
        [general] = message_send(user=alice, customer_code=customer.code, content="Oi")

    assert _stored(fast) == _stored(general)
    assert _stored(fast)["chat_jid"] == "5511988887777@s.whatsapp.net"


def test_returned_message_matches_stored_row(alice):
    customer = customer_make(alice)

    [message] = message_send(user=alice, customer_code=customer.code, content="Oi")

    stored = Message.objects.get(pk=message.pk)
    assert model_to_dict(message) == model_to_dict(stored)
    assert message.code == stored.code
    assert message.created_at == stored.created_at


@pytest.mark.django_db(transaction=True)
def test_send_is_one_statement(alice):
    customer = customer_make(alice)
    # Token authentication reads the plan and the session with the user.
    whatsapp_state(alice)
    assert alice.subscription is not None

    with CaptureQueriesContext(connection) as queries:
        message_send(user=alice, customer_code=customer.code, content="Oi")

    assert len(queries.captured_queries) == 1


def test_returned_customer_needs_no_query(alice, django_assert_num_queries):
    customer = customer_make(alice, name="Ana")
    [message] = message_send(user=alice, customer_code=customer.code, content="Oi")

    with django_assert_num_queries(0):
        assert message.customer.code == customer.code
        assert message.customer.name == "Ana"


def test_send_counts_against_quota(alice):
    customer = customer_make(alice)

    message_send(user=alice, customer_code=customer.code, content="Oi")
    message_send(user=alice, customer_code=customer.code, content="Oi")

    assert DailySendCount.objects.get(owner=alice).sent == 2


def test_send_past_quota_keeps_count(alice):
    _quota_set(alice, 2)
    customer = customer_make(alice)
    for _ in range(2):
        message_send(user=alice, customer_code=customer.code, content="Oi")

    with pytest.raises(ApplicationError) as caught:
        message_send(user=alice, customer_code=customer.code, content="Oi")

    assert caught.value.code == "daily_quota_exceeded"
    assert caught.value.status_code == 429
    assert caught.value.extra["limit"] == 2
    assert caught.value.extra["used"] == 2
    assert caught.value.extra["requested"] == 1
    assert DailySendCount.objects.get(owner=alice).sent == 2
    assert Message.objects.filter(owner=alice).count() == 2


def test_quota_refusal_leaves_callers_transaction_usable(alice):
    _quota_set(alice, 1)
    customer = customer_make(alice)
    message_send(user=alice, customer_code=customer.code, content="Oi")

    with transaction.atomic():
        with pytest.raises(ApplicationError):
            message_send(user=alice, customer_code=customer.code, content="Oi")
        count = DailySendCount.objects.get(owner=alice).sent

    assert count == 1
    assert Message.objects.filter(owner=alice).count() == 1


def test_zero_quota_stores_no_count(alice):
    _quota_set(alice, 0)
    customer = customer_make(alice)

    with pytest.raises(ApplicationError) as caught:
        message_send(user=alice, customer_code=customer.code, content="Oi")

    assert caught.value.code == "daily_quota_exceeded"
    assert caught.value.extra["used"] == 0
    assert not DailySendCount.objects.filter(owner=alice).exists()


def test_unknown_customer_not_counted(alice):
    code = uuid.uuid4()

    with pytest.raises(ApplicationError) as caught:
        message_send(user=alice, customer_code=code, content="Oi")

    assert caught.value.code == "not_found"
    assert caught.value.status_code == 404
    assert str(code) in caught.value.message
    assert not DailySendCount.objects.filter(owner=alice).exists()


def test_other_users_customer_not_found(alice, charlie):
    theirs = customer_make(charlie)

    with pytest.raises(ApplicationError) as caught:
        message_send(user=alice, customer_code=theirs.code, content="Oi")

    assert caught.value.code == "not_found"
    assert not Message.objects.exists()
    assert not DailySendCount.objects.exists()


def test_malformed_customer_id_not_found(alice):
    with pytest.raises(ApplicationError) as caught:
        message_send(user=alice, customer_code="abc", content="Oi")

    assert caught.value.code == "not_found"
    assert caught.value.extra == {"field": "customer_id"}


def test_unknown_customer_reported_before_plan(alice):
    # The general path's order: the customer is checked before the plan.
    Subscription.objects.filter(user=alice).update(status=Subscription.Status.CANCELED)
    alice.refresh_from_db()

    with pytest.raises(ApplicationError) as caught:
        message_send(user=alice, customer_code=uuid.uuid4(), content="Oi")

    assert caught.value.code == "not_found"


def test_wake_waits_for_outer_commit(alice, django_capture_on_commit_callbacks):
    customer = customer_make(alice)

    with (
        mock.patch("messaging.services.send_queue.message_send_wake") as wake,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        [message] = message_send(user=alice, customer_code=customer.code, content="Oi")
        wake.assert_not_called()

    assert len(callbacks) == 1
    wake.assert_called_once_with(alice.pk, message.pk)


def test_percent_signs_stored_verbatim(alice):
    customer = customer_make(alice)
    text = "100% off, %s and %(name)s stay as typed; it's 'quoted'"

    [message] = message_send(user=alice, customer_code=customer.code, content=text)

    assert Message.objects.get(pk=message.pk).body == text


def test_constants_are_same_every_send():
    for name in ONE_SEND_CONSTANTS:
        field = Message._meta.get_field(name)

        assert not getattr(field, "auto_now", False), name
        assert not getattr(field, "auto_now_add", False), name
        # A callable default may only build an empty container.
        default = field.default if field.has_default() else None
        assert not callable(default) or default in (dict, list), name


def test_other_fields_are_parameters():
    _sql, _plan, save_plan = _one_send_statement(connection.vendor)
    from_customer = {"customer", "chat_jid"}

    expected = [
        field.name
        for field in Message._meta.concrete_fields
        if not field.primary_key
        and field.name not in ONE_SEND_CONSTANTS
        and field.name not in from_customer
    ]
    assert [field.name for field, _native_type in save_plan] == expected
