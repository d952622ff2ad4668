from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Subscription
from accounts.tests.factories import subscriber_create
from sessions_wa import reasons, tasks
from sessions_wa.models import GatewayEvent, WhatsAppSession

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db


def run_cleanup():
    return tasks.cleanup.apply().get()


def test_cleanup_stops_session_of_canceled_subscription(
    canceled_subscriber, make_session, enqueued
):
    session = make_session(canceled_subscriber, State.CONNECTED)

    run_cleanup()

    enqueued["session_stop"].assert_called_once_with(
        session.pk, reasons.SUBSCRIPTION_INACTIVE
    )


def test_cleanup_stops_session_past_its_period(make_session, enqueued):
    user = subscriber_create(
        "lapsed@example.com", status=Subscription.Status.ACTIVE, period_days=-1
    )
    session = make_session(user, State.CONNECTED)

    run_cleanup()

    enqueued["session_stop"].assert_called_once_with(
        session.pk, reasons.SUBSCRIPTION_INACTIVE
    )


def test_cleanup_keeps_past_due_session_running(make_session, enqueued):
    user = subscriber_create("late@example.com", status=Subscription.Status.PAST_DUE)
    make_session(user, State.CONNECTED)

    run_cleanup()

    enqueued["session_stop"].assert_not_called()


def test_cleanup_keeps_active_session_running(owner, make_session, enqueued):
    make_session(owner, State.CONNECTED)

    run_cleanup()

    enqueued["session_stop"].assert_not_called()


def test_cleanup_does_not_stop_a_stopped_session_again(
    canceled_subscriber, make_session, enqueued
):
    make_session(
        canceled_subscriber,
        State.DISCONNECTED,
        last_error_code=reasons.SUBSCRIPTION_INACTIVE,
    )

    run_cleanup()

    enqueued["session_stop"].assert_not_called()


def test_cleanup_stop_reaches_the_gateway(
    fake_gateway, canceled_subscriber, make_session, eager_tasks
):
    session = make_session(canceled_subscriber, State.CONNECTED)

    run_cleanup()

    session.refresh_from_db()
    assert len(fake_gateway.calls("/stop")) == 1
    assert session.state == State.DISCONNECTED
    assert session.last_error_code == reasons.SUBSCRIPTION_INACTIVE


def test_cleanup_logs_out_and_deletes_unused_session(
    owner, make_session, enqueued, settings
):
    settings.WA_SESSION_MAX_IDLE_DAYS = 30
    session = make_session(
        owner, State.QR_EXPIRED, last_activity_at=timezone.now() - timedelta(days=31)
    )

    run_cleanup()

    [call] = enqueued["session_logout"].call_args_list
    assert call.args == (session.pk,)
    assert "idle_cutoff" in call.kwargs


def test_cleanup_keeps_recently_used_session(owner, make_session, enqueued, settings):
    settings.WA_SESSION_MAX_IDLE_DAYS = 30
    make_session(
        owner, State.QR_EXPIRED, last_activity_at=timezone.now() - timedelta(days=29)
    )

    run_cleanup()

    enqueued["session_logout"].assert_not_called()


def test_cleanup_keeps_connected_session_without_traffic(
    owner, make_session, enqueued, settings
):
    settings.WA_SESSION_MAX_IDLE_DAYS = 30
    make_session(
        owner, State.CONNECTED, last_activity_at=timezone.now() - timedelta(days=90)
    )

    run_cleanup()

    enqueued["session_logout"].assert_not_called()


def test_cleanup_honours_configured_idle_days(owner, make_session, enqueued, settings):
    settings.WA_SESSION_MAX_IDLE_DAYS = 7
    make_session(
        owner, State.FAILED, last_activity_at=timezone.now() - timedelta(days=8)
    )

    run_cleanup()

    enqueued["session_logout"].assert_called_once()


def test_cleanup_prunes_old_gateway_events(owner, settings, enqueued):
    settings.WA_EVENT_LOG_RETENTION_DAYS = 30
    now = timezone.now()
    common = {
        "user": owner,
        "gateway_user_id": owner.pk,
        "seq": 1,
        "type": "session.qr",
    }
    old = GatewayEvent.objects.create(
        event_id="00000000-0000-4000-8000-000000000001",
        occurred_at=now,
        received_at=now - timedelta(days=31),
        outcome="applied",
        **common,
    )
    recent = GatewayEvent.objects.create(
        event_id="00000000-0000-4000-8000-000000000002",
        occurred_at=now,
        received_at=now - timedelta(days=1),
        outcome="applied",
        **common,
    )

    result = run_cleanup()

    assert result["pruned"] == 1
    assert not GatewayEvent.objects.filter(pk=old.pk).exists()
    assert GatewayEvent.objects.filter(pk=recent.pk).exists()
