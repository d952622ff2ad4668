"""Session event sequences seen from real WhatsApp engines, end to end."""

from datetime import timedelta

import pytest

from sessions_wa import reasons
from sessions_wa.models import GatewayEvent, WhatsAppSession
from sessions_wa.services import session_start_request
from sessions_wa.tests.helpers import (
    BASE_TIME,
    OWN_PHONE,
    connected_event,
    disconnected_event,
    logged_out_event,
    post_callback,
    qr_event,
)

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db


@pytest.fixture
def session(owner, make_session):
    return make_session(owner, State.STARTING)


def deliver(client, *events):
    response = post_callback(client, list(events))
    assert response.status_code == 200, response.content
    return response.json()


def outcome_of(event) -> str:
    return GatewayEvent.objects.get(event_id=event["event_id"]).outcome


def test_qr_rotation_shows_the_highest_seq(client, owner, session):
    first, third, late_second = (
        qr_event(owner.pk, 1),
        qr_event(owner.pk, 3),
        qr_event(owner.pk, 2),
    )

    deliver(client, first)
    deliver(client, third)
    deliver(client, late_second)

    session.refresh_from_db()
    assert session.qr == third["data"]["qr"]
    assert outcome_of(late_second) == GatewayEvent.Outcome.STALE


def test_qr_timeout_after_rotation_is_qr_expired(client, owner, session):
    deliver(client, *[qr_event(owner.pk, seq) for seq in range(1, 7)])

    deliver(client, disconnected_event(owner.pk, 7, reasons.QR_TIMEOUT))

    session.refresh_from_db()
    assert session.state == State.QR_EXPIRED
    assert session.qr == ""
    assert session.last_error == ""


def test_late_qr_after_expiry_keeps_qr_expired(client, owner, session):
    deliver(client, *[qr_event(owner.pk, seq) for seq in range(1, 7)])
    deliver(client, disconnected_event(owner.pk, 7, reasons.QR_TIMEOUT))
    late = qr_event(owner.pk, 5)

    deliver(client, late)

    session.refresh_from_db()
    assert session.state == State.QR_EXPIRED
    assert outcome_of(late) == GatewayEvent.Outcome.STALE


def test_new_start_after_expiry_shows_new_qr(client, owner, session, enqueued):
    deliver(client, qr_event(owner.pk, 1))
    deliver(client, disconnected_event(owner.pk, 2, reasons.QR_TIMEOUT))

    session_start_request(user=owner)
    new_qr = qr_event(owner.pk, 3)
    deliver(client, new_qr)

    session.refresh_from_db()
    assert session.state == State.QR_PENDING
    assert session.qr == new_qr["data"]["qr"]


def test_scan_then_silent_restart_goes_straight_to_connected(client, owner, session):
    deliver(client, qr_event(owner.pk, 1))

    deliver(
        client,
        connected_event(owner.pk, 2, phone=None, jid="5511900000009:14@s.whatsapp.net"),
    )

    session.refresh_from_db()
    assert session.state == State.CONNECTED
    assert session.phone == OWN_PHONE
    assert session.jid == "5511900000009@s.whatsapp.net"
    assert not GatewayEvent.objects.filter(type="session.disconnected").exists()


def test_reported_restart_after_scan_never_shows_disconnected(client, owner, session):
    deliver(client, qr_event(owner.pk, 1))
    restart = disconnected_event(owner.pk, 2, reasons.RESTART, will_reconnect=True)

    deliver(client, restart)
    session.refresh_from_db()
    state_after_restart = session.state
    deliver(client, connected_event(owner.pk, 3))

    session.refresh_from_db()
    assert state_after_restart == State.QR_PENDING
    assert outcome_of(restart) == GatewayEvent.Outcome.IGNORED
    assert session.state == State.CONNECTED


def test_device_removed_logs_out_and_forgets_the_number(client, owner, session):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))

    deliver(client, logged_out_event(owner.pk, 3, reasons.DEVICE_REMOVED))

    session.refresh_from_db()
    assert session.state == State.LOGGED_OUT
    assert session.last_error_code == reasons.DEVICE_REMOVED
    assert session.phone == ""


def test_start_after_logout_pairs_again(client, owner, session, enqueued):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))
    deliver(client, logged_out_event(owner.pk, 3, reasons.DEVICE_REMOVED))

    session_start_request(user=owner)
    deliver(client, qr_event(owner.pk, 4), connected_event(owner.pk, 5))

    session.refresh_from_db()
    assert session.state == State.CONNECTED
    assert session.last_error_code == ""


def test_restore_failed_asks_for_new_qr(client, owner, session):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))

    deliver(client, logged_out_event(owner.pk, 3, reasons.RESTORE_FAILED))

    session.refresh_from_db()
    assert session.state == State.LOGGED_OUT
    assert session.last_error_code == reasons.RESTORE_FAILED
    assert "Get a new QR code" in session.last_error


def test_connected_again_after_gateway_restart(client, owner, session):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))

    deliver(
        client,
        disconnected_event(owner.pk, 3, reasons.NETWORK, will_reconnect=True),
        connected_event(owner.pk, 4),
    )

    session.refresh_from_db()
    assert session.state == State.CONNECTED


def test_connected_older_than_restart_is_ignored(client, owner, session):
    stale_connected = connected_event(owner.pk, 2)
    deliver(client, qr_event(owner.pk, 1))
    deliver(client, logged_out_event(owner.pk, 3, reasons.RESTORE_FAILED))

    deliver(client, stale_connected)

    session.refresh_from_db()
    assert session.state == State.LOGGED_OUT
    assert outcome_of(stale_connected) == GatewayEvent.Outcome.STALE


def test_qr_while_connected_is_rejected(client, owner, session):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))
    qr = qr_event(owner.pk, 3)

    deliver(client, qr)

    session.refresh_from_db()
    assert session.state == State.CONNECTED
    assert outcome_of(qr) == GatewayEvent.Outcome.REJECTED
    assert (
        "connected to qr_pending"
        in GatewayEvent.objects.get(event_id=qr["event_id"]).detail
    )


def test_qr_after_reconnect_drop_is_shown(client, owner, session):
    deliver(client, qr_event(owner.pk, 1))
    deliver(
        client, disconnected_event(owner.pk, 2, reasons.NETWORK, will_reconnect=True)
    )

    deliver(client, qr_event(owner.pk, 3))

    session.refresh_from_db()
    assert session.state == State.QR_PENDING


def test_same_batch_delivered_three_times_applies_once(client, owner, session):
    batch = [qr_event(owner.pk, 1), connected_event(owner.pk, 2)]

    results = [deliver(client, *batch) for _ in range(3)]

    assert results[0] == {"accepted": 2, "duplicates": 0}
    assert results[1] == results[2] == {"accepted": 0, "duplicates": 2}
    assert GatewayEvent.objects.count() == 2


def test_batches_arriving_out_of_order_keep_newest_state(client, owner, session):
    older = [qr_event(owner.pk, 1), qr_event(owner.pk, 2)]
    newer = [connected_event(owner.pk, 3)]

    deliver(client, *newer)
    deliver(client, *older)

    session.refresh_from_db()
    assert session.state == State.CONNECTED


def test_later_time_wins_over_a_reset_seq(client, owner, session):
    deliver(client, qr_event(owner.pk, 500))
    after_reset = connected_event(
        owner.pk, 1, occurred_at=BASE_TIME + timedelta(hours=1)
    )

    deliver(client, after_reset)

    session.refresh_from_db()
    assert session.state == State.CONNECTED


def test_same_time_is_ordered_by_seq(client, owner, session):
    moment = BASE_TIME + timedelta(minutes=5)
    deliver(client, qr_event(owner.pk, 2, occurred_at=moment))
    lower = qr_event(owner.pk, 1, occurred_at=moment)

    deliver(client, lower)

    assert outcome_of(lower) == GatewayEvent.Outcome.STALE


@pytest.mark.parametrize("reason", [reasons.REPLACED, reasons.BANNED, reasons.FATAL])
def test_terminal_disconnect_reason_fails_session(client, owner, session, reason):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))

    deliver(client, disconnected_event(owner.pk, 3, reason))

    session.refresh_from_db()
    assert session.state == State.FAILED
    assert session.last_error_code == reason


def test_unknown_disconnect_reason_disconnects_with_detail(client, owner, session):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))

    deliver(client, disconnected_event(owner.pk, 3, "solar_flare"))

    session.refresh_from_db()
    assert session.state == State.DISCONNECTED
    assert "solar_flare" in session.last_error


def test_requested_logout_keeps_no_error(client, owner, session):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))

    deliver(client, logged_out_event(owner.pk, 3, reasons.REQUESTED))

    session.refresh_from_db()
    assert session.state == State.LOGGED_OUT
    assert session.last_error == ""


def test_connected_since_is_the_event_time(client, owner, session):
    event = connected_event(owner.pk, 2)

    deliver(client, qr_event(owner.pk, 1), event)

    session.refresh_from_db()
    assert session.connected_since == BASE_TIME + timedelta(seconds=2)


def test_gateway_shutdown_shows_connected_session_reconnecting(client, owner, session):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))

    deliver(
        client, disconnected_event(owner.pk, 3, reasons.RESTART, will_reconnect=True)
    )

    session.refresh_from_db()
    assert session.state == State.DISCONNECTED
    assert session.last_error_code == reasons.RESTART


def test_connected_after_gateway_shutdown_and_restore(client, owner, session):
    deliver(client, qr_event(owner.pk, 1), connected_event(owner.pk, 2))
    deliver(
        client, disconnected_event(owner.pk, 3, reasons.RESTART, will_reconnect=True)
    )

    deliver(client, connected_event(owner.pk, 4))

    session.refresh_from_db()
    assert session.state == State.CONNECTED
