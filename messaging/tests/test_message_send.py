"""Accepting a send: checks, customer lookup, parts, quota, queueing."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from accounts.models import Subscription
from messaging.models import Customer, DailySendCount, Message
from messaging.services import message_send
from messaging.services.sending import message_fail
from whatsapp_saas.exceptions import ApplicationError

from .helpers import customer_make, outbound_make, sent_today, session_connect


def _send(user, **kwargs):
    kwargs.setdefault("content", "Hello")
    return message_send(user=user, **kwargs)


def test_send_to_customer_queues_one_message(alice, django_capture_on_commit_callbacks):
    customer = customer_make(alice)

    with django_capture_on_commit_callbacks() as callbacks:
        messages = _send(alice, customer_code=customer.code)

    assert [m.status for m in messages] == ["queued"]
    assert messages[0].direction == "outbound"
    assert messages[0].source == "api"
    assert len(callbacks) == 1


def test_send_without_redis_queues_message_task_on_commit(
    alice, settings, django_capture_on_commit_callbacks
):
    settings.REDIS_URL = ""
    customer = customer_make(alice)

    with mock.patch("messaging.tasks.message_send.apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=True):
            messages = _send(alice, customer_code=customer.code)

    apply_async.assert_called_once_with((messages[0].pk,), countdown=None)


def test_send_to_typed_number_creates_customer(alice):
    messages = _send(alice, to="(11) 90000-0001")

    customer = Customer.objects.get(owner=alice)
    assert customer.phone == "+5511900000001"
    assert messages[0].customer == customer


def test_send_to_other_spelling_finds_existing_customer(alice):
    customer = customer_make(alice, phone="+5511900000001")

    messages = _send(alice, to="551100000001")

    assert messages[0].customer == customer
    assert Customer.objects.filter(owner=alice).count() == 1


def test_send_to_lid_jid_finds_lid_customer(alice):
    customer = Customer.objects.create(
        owner=alice, lid="100000000000001@lid", phone_unresolved=True
    )

    messages = _send(alice, to="100000000000001:4@lid")

    assert messages[0].customer == customer


@pytest.mark.parametrize("to", ["120363000000000002@g.us", "status@broadcast"])
def test_send_to_group_or_broadcast_is_rejected(alice, to):
    with pytest.raises(ApplicationError) as raised:
        _send(alice, to=to)

    assert raised.value.code == "invalid_recipient"


def test_send_to_invalid_number_names_field(alice):
    with pytest.raises(ApplicationError) as raised:
        _send(alice, to="+55 11 9OOOO-0001")

    assert raised.value.code == "invalid_phone"
    assert raised.value.extra["field"] == "to"
    assert not Customer.objects.exists()


def test_send_to_another_owners_customer_is_not_found(alice, charlie):
    theirs = customer_make(charlie)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=theirs.code)

    assert raised.value.status_code == 404
    assert not Message.objects.exists()


def test_send_needs_exactly_one_recipient(alice):
    customer = customer_make(alice)

    with pytest.raises(ApplicationError):
        _send(alice, customer_code=customer.code, to="+5511900000001")


@pytest.mark.parametrize(
    "content",
    [
        "",
        "   \n",
        None,
        "\u200b",
        "\ufeff",
        " \u200b\u2060\u200d \n",
        "\u00a0",
        "\u3164\u2800",
        "\u00ad\u200e\u202e\u2066",
    ],
)
def test_send_rejects_empty_content(alice, content):
    customer = customer_make(alice)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code, content=content)

    assert raised.value.code == "empty_message"


def test_send_keeps_invisible_characters_in_text(alice):
    customer = customer_make(alice)

    [message] = _send(alice, customer_code=customer.code, content="\u200bOi\u200b")

    assert message.body == "\u200bOi\u200b"


def test_send_rejects_text_over_sixteen_parts(alice):
    customer = customer_make(alice)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code, content="a" * (16 * 4096 + 1))

    assert raised.value.code == "message_too_long"


def test_send_keeps_content_byte_exact(alice):
    customer = customer_make(alice)
    text = "  Olá 👋🏽 👨‍👩‍👧‍👦 مرحبا\u200f!\n"

    messages = _send(alice, customer_code=customer.code, content=text)

    messages[0].refresh_from_db()
    assert messages[0].body == text


def test_send_long_text_becomes_ordered_linked_parts(alice):
    customer = customer_make(alice)
    text = "👍" * 5000

    messages = _send(alice, customer_code=customer.code, content=text)

    assert len(messages) == 3
    assert "".join(m.body for m in messages) == text
    assert [m.metadata for m in messages] == [
        {"part": 1, "parts": 3},
        {"part": 2, "parts": 3},
        {"part": 3, "parts": 3},
    ]
    assert messages[1].previous_part == messages[0]
    assert messages[2].previous_part == messages[1]


def test_send_with_inactive_subscription_is_rejected(alice):
    Subscription.objects.filter(user=alice).update(status="canceled")
    alice.refresh_from_db()
    customer = customer_make(alice)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code)

    assert raised.value.code == "subscription_inactive"
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "state", ["new", "starting", "qr_pending", "qr_expired", "logged_out", "failed"]
)
def test_send_when_not_connected_is_rejected(alice, state):
    session_connect(alice, state=state)
    customer = customer_make(alice)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code)

    assert raised.value.code == "session_not_connected"
    assert raised.value.status_code == 409
    assert raised.value.extra == {"state": state}


def test_send_while_reconnecting_is_queued(alice):
    session_connect(alice, state="disconnected")
    customer = customer_make(alice)

    messages = _send(alice, customer_code=customer.code)

    assert [m.status for m in messages] == ["queued"]


def test_send_without_any_session_is_rejected(alice):
    alice.whatsapp_session.delete()
    alice._state.fields_cache.pop("whatsapp_session", None)
    customer = customer_make(alice)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code)

    assert raised.value.code == "session_not_connected"


def test_send_past_daily_quota_is_rejected(alice):
    Subscription.objects.filter(user=alice).update(daily_message_quota=2)
    alice.refresh_from_db()
    customer = customer_make(alice)
    _send(alice, customer_code=customer.code)
    _send(alice, customer_code=customer.code)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code)

    error = raised.value
    assert error.code == "daily_quota_exceeded"
    assert error.status_code == 429
    assert error.extra["limit"] == 2
    assert error.extra["used"] == 2
    assert "2" in error.message
    assert "resets" in error.message


def test_quota_reset_time_is_next_midnight(alice):
    Subscription.objects.filter(user=alice).update(daily_message_quota=0)
    alice.refresh_from_db()
    customer = customer_make(alice)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code)

    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    assert raised.value.extra["resets_at"] == (midnight + timedelta(days=1)).isoformat()


def test_quota_counts_every_part(alice):
    Subscription.objects.filter(user=alice).update(daily_message_quota=2)
    alice.refresh_from_db()
    customer = customer_make(alice)

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code, content="a" * 9000)

    assert raised.value.extra["requested"] == 3


def test_quota_ignores_phone_typed_messages(alice):
    Subscription.objects.filter(user=alice).update(daily_message_quota=1)
    alice.refresh_from_db()
    customer = customer_make(alice)
    outbound_make(alice, customer, status="sent", source="phone")

    messages = _send(alice, customer_code=customer.code)

    assert len(messages) == 1


def test_quota_ignores_yesterdays_sends(alice):
    Subscription.objects.filter(user=alice).update(daily_message_quota=1)
    alice.refresh_from_db()
    customer = customer_make(alice)
    DailySendCount.objects.create(
        owner=alice, day=timezone.localdate() - timedelta(days=1), sent=1
    )

    messages = _send(alice, customer_code=customer.code)

    assert len(messages) == 1


def test_deleting_sent_messages_gives_no_quota_back(alice):
    Subscription.objects.filter(user=alice).update(daily_message_quota=1)
    alice.refresh_from_db()
    customer = customer_make(alice)
    _send(alice, customer_code=customer.code)
    Message.objects.filter(owner=alice).delete()

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code)

    assert raised.value.code == "daily_quota_exceeded"


def test_rejected_send_does_not_count(alice):
    Subscription.objects.filter(user=alice).update(daily_message_quota=1)
    alice.refresh_from_db()
    customer = customer_make(alice)
    with pytest.raises(ApplicationError):
        _send(alice, customer_code=customer.code, content="a" * 9000)

    messages = _send(alice, customer_code=customer.code)

    assert len(messages) == 1


def _quota_set(user, limit: int) -> None:
    Subscription.objects.filter(user=user).update(daily_message_quota=limit)
    user.refresh_from_db()


def test_unsent_failure_refunds_quota(alice):
    _quota_set(alice, 1)
    customer = customer_make(alice)
    (message,) = _send(alice, customer_code=customer.code)

    message_fail(message_id=message.pk, code="session_not_connected", reason="x")

    assert len(_send(alice, customer_code=customer.code)) == 1


@pytest.mark.parametrize("code", ["gateway_unavailable", "send_in_doubt"])
def test_failure_with_unknown_outcome_keeps_quota(alice, code):
    _quota_set(alice, 1)
    customer = customer_make(alice)
    (message,) = _send(alice, customer_code=customer.code)

    message_fail(message_id=message.pk, code=code, reason="x")

    with pytest.raises(ApplicationError) as raised:
        _send(alice, customer_code=customer.code)
    assert raised.value.code == "daily_quota_exceeded"


def test_unknown_outcome_refunds_later_parts(alice):
    customer = customer_make(alice)
    first, *_rest = _send(alice, customer_code=customer.code, content="a" * 9000)

    message_fail(message_id=first.pk, code="gateway_unavailable", reason="x")

    assert sent_today(alice) == 1


def test_failed_long_text_refunds_every_part(alice):
    _quota_set(alice, 3)
    customer = customer_make(alice)
    first, *_rest = _send(alice, customer_code=customer.code, content="a" * 9000)

    message_fail(message_id=first.pk, code="not_on_whatsapp", reason="x")

    assert sent_today(alice) == 0


def test_second_failure_refunds_nothing(alice):
    customer = customer_make(alice)
    _send(alice, customer_code=customer.code)
    (message,) = _send(alice, customer_code=customer.code)

    message_fail(message_id=message.pk, code="invalid_recipient", reason="x")
    message_fail(message_id=message.pk, code="invalid_recipient", reason="x")

    assert sent_today(alice) == 1


def test_refund_goes_to_send_day(alice):
    customer = customer_make(alice)
    (message,) = _send(alice, customer_code=customer.code)
    yesterday = timezone.now() - timedelta(days=1)
    Message.objects.filter(pk=message.pk).update(timestamp=yesterday)
    DailySendCount.objects.create(
        owner=alice, day=timezone.localdate(yesterday), sent=1
    )

    message_fail(message_id=message.pk, code="no_recipient", reason="x")

    assert sent_today(alice) == 1
    assert DailySendCount.objects.get(day=timezone.localdate(yesterday)).sent == 0


def test_failed_phone_message_refunds_nothing(alice):
    customer = customer_make(alice)
    _send(alice, customer_code=customer.code)
    typed = outbound_make(alice, customer, status="queued", source="phone")

    message_fail(message_id=typed.pk, code="no_recipient", reason="x")

    assert sent_today(alice) == 1


def test_quota_of_one_owner_ignores_another(alice, charlie):
    Subscription.objects.filter(user=alice).update(daily_message_quota=1)
    alice.refresh_from_db()
    theirs = customer_make(charlie)
    outbound_make(charlie, theirs, status="sent")

    messages = _send(alice, to="+5511900000001")

    assert len(messages) == 1


def test_send_survives_broker_outage(alice, django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    customer = customer_make(alice)

    outage = OperationalError("Error 111 connecting to 127.0.0.1:6379")
    with (
        mock.patch("messaging.tasks.message_send.apply_async", side_effect=outage),
        mock.patch(
            "messaging.tasks.message_send_drain.apply_async", side_effect=outage
        ),
    ):
        with django_capture_on_commit_callbacks(execute=True):
            messages = _send(alice, customer_code=customer.code)

    messages[0].refresh_from_db()
    assert messages[0].status == "queued"
