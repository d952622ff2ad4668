from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Subscription
from sessions_wa import reasons, tasks
from sessions_wa.models import WhatsAppSession
from sessions_wa.services import session_gateway_status_apply

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db


def status(state, **fields):
    return (200, {"user_id": 1, "state": state, "engine": "sim", **fields})


def reconcile(session):
    result = tasks.session_reconcile.apply(args=[session.pk]).get()
    session.refresh_from_db()
    return result


def test_connected_unknown_to_gateway_is_started_again(
    fake_gateway, owner, make_session, enqueued, django_capture_on_commit_callbacks
):
    session = make_session(owner, State.CONNECTED, phone="+5511900000009")

    with django_capture_on_commit_callbacks(execute=True):
        result = reconcile(session)

    assert result == "restarted"
    assert session.state == State.STARTING
    enqueued["session_start"].assert_called_once_with(session.pk)


def test_connected_unknown_to_gateway_without_subscription_stays_down(
    fake_gateway, owner, make_session, enqueued, django_capture_on_commit_callbacks
):
    Subscription.objects.filter(user=owner).update(status=Subscription.Status.CANCELED)
    session = make_session(owner, State.CONNECTED)

    with django_capture_on_commit_callbacks(execute=True):
        reconcile(session)

    assert session.state == State.DISCONNECTED
    assert session.last_error_code == reasons.SUBSCRIPTION_INACTIVE
    enqueued["session_start"].assert_not_called()


def test_starting_unknown_to_gateway_fails_with_reason(
    fake_gateway, owner, make_session
):
    session = make_session(owner, State.STARTING)

    reconcile(session)

    assert session.state == State.FAILED
    assert session.last_error_code == reasons.GATEWAY_LOST


def test_qr_pending_unknown_to_gateway_expires(fake_gateway, owner, make_session):
    session = make_session(owner, State.QR_PENDING, qr="2@x")

    reconcile(session)

    assert session.state == State.QR_EXPIRED
    assert session.qr == ""


def test_connected_but_gateway_disconnected_is_repaired(
    fake_gateway, owner, make_session
):
    fake_gateway.reply("/status", status("disconnected"))
    session = make_session(owner, State.CONNECTED)

    assert reconcile(session) == "repaired"
    assert session.state == State.DISCONNECTED
    assert session.last_error_code == reasons.NETWORK


def test_connected_but_gateway_shows_qr_goes_through_disconnected(
    fake_gateway, owner, make_session
):
    fake_gateway.reply("/status", status("qr_pending"))
    session = make_session(owner, State.CONNECTED)

    reconcile(session)

    assert session.state == State.QR_PENDING


def test_starting_but_gateway_connected_takes_identity(
    fake_gateway, owner, make_session
):
    fake_gateway.reply(
        "/status",
        status(
            "connected", jid="5511900000009:3@s.whatsapp.net", phone="+5511900000009"
        ),
    )
    session = make_session(owner, State.STARTING)

    reconcile(session)

    assert session.state == State.CONNECTED
    assert session.phone == "+5511900000009"
    assert session.jid == "5511900000009@s.whatsapp.net"


def test_gateway_stopped_shows_disconnected(fake_gateway, owner, make_session):
    fake_gateway.reply("/status", status("stopped"))
    session = make_session(owner, State.CONNECTED)

    reconcile(session)

    assert session.state == State.DISCONNECTED
    assert session.last_error_code == reasons.STOPPED


def test_session_in_sync_is_unchanged(fake_gateway, owner, make_session):
    fake_gateway.reply("/status", status("connected", phone="+5511900000009"))
    session = make_session(owner, State.CONNECTED, phone="+5511900000009")

    assert reconcile(session) == "in_sync"
    assert session.state == State.CONNECTED


def test_unreachable_gateway_changes_nothing(unreachable_gateway, owner, make_session):
    session = make_session(owner, State.CONNECTED)

    assert reconcile(session) == "unreachable"
    assert session.state == State.CONNECTED


def test_unreachable_gateway_marks_session(unreachable_gateway, owner, make_session):
    session = make_session(owner, State.CONNECTED)
    updated_at = session.updated_at

    reconcile(session)

    assert session.gateway_unreachable_since is not None
    # Reconcile compares updated_at to spot newer callbacks.
    assert session.updated_at == updated_at


def test_later_miss_keeps_first_unreachable_time(
    unreachable_gateway, owner, make_session
):
    since = timezone.now() - timedelta(minutes=7)
    session = make_session(owner, State.CONNECTED, gateway_unreachable_since=since)

    reconcile(session)

    assert session.gateway_unreachable_since == since


def test_gateway_response_clears_unreachable_mark(fake_gateway, owner, make_session):
    fake_gateway.reply("/status", status("connected", phone="+5511900000009"))
    session = make_session(
        owner,
        State.CONNECTED,
        phone="+5511900000009",
        gateway_unreachable_since=timezone.now(),
    )

    assert reconcile(session) == "in_sync"
    assert session.gateway_unreachable_since is None


def test_unknown_gateway_state_changes_nothing(fake_gateway, owner, make_session):
    fake_gateway.reply("/status", status("hibernating"))
    session = make_session(owner, State.CONNECTED)

    reconcile(session)

    assert session.state == State.CONNECTED


def test_session_updated_after_status_read_is_left_alone(owner, make_session):
    session = make_session(owner, State.CONNECTED)
    read_at = session.updated_at - timedelta(seconds=1)

    result = session_gateway_status_apply(
        session_id=session.pk,
        expected_updated_at=read_at,
        status={"state": "logged_out"},
    )

    session.refresh_from_db()
    assert result == "changed"
    assert session.state == State.CONNECTED


def test_periodic_reconcile_picks_live_sessions_past_grace(
    owner, outsider, canceled_subscriber, make_session, enqueued, settings
):
    settings.WA_RECONCILE_GRACE_SECONDS = 60
    old = timezone.now() - timedelta(minutes=5)
    live = make_session(owner, State.CONNECTED)
    make_session(outsider, State.STARTING)
    ended = make_session(canceled_subscriber, State.LOGGED_OUT)
    WhatsAppSession.objects.filter(pk__in=[live.pk, ended.pk]).update(updated_at=old)

    count = tasks.reconcile.apply().get()

    assert count == 1
    enqueued["session_reconcile"].assert_called_once_with(live.pk)


def test_reconnecting_session_unknown_to_gateway_is_started_again(
    fake_gateway, owner, make_session, enqueued, django_capture_on_commit_callbacks
):
    session = make_session(owner, State.DISCONNECTED, last_error_code=reasons.NETWORK)

    with django_capture_on_commit_callbacks(execute=True):
        result = reconcile(session)

    assert result == "restarted"
    assert session.state == State.STARTING
    enqueued["session_start"].assert_called_once_with(session.pk)


def test_periodic_reconcile_includes_reconnecting_sessions(
    owner, outsider, make_session, enqueued
):
    old = timezone.now() - timedelta(minutes=5)
    reconnecting = make_session(
        owner, State.DISCONNECTED, last_error_code=reasons.NETWORK
    )
    stopped = make_session(
        outsider, State.DISCONNECTED, last_error_code=reasons.STOPPED
    )
    WhatsAppSession.objects.filter(pk__in=[reconnecting.pk, stopped.pk]).update(
        updated_at=old
    )

    tasks.reconcile.apply().get()

    enqueued["session_reconcile"].assert_called_once_with(reconnecting.pk)
