from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_wa import reasons, tasks
from sessions_wa.models import WhatsAppSession
from sessions_wa.services import session_start_request
from sessions_wa.tests.helpers import FakeGateway

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db

UNAVAILABLE = (503, {"code": "GW_ERR_UNAVAILABLE", "message": "Restarting."})


@pytest.fixture
def starting(owner, make_session):
    return make_session(owner, State.STARTING)


def reload(session):
    session.refresh_from_db()
    return session


def test_start_sends_signed_start_with_user_id(fake_gateway, owner, starting):
    tasks.session_start.apply(args=[starting.pk])

    [call] = fake_gateway.calls("/start")
    assert call["signed"] is True
    assert call["json"] == {"user_id": owner.pk}


def test_start_records_the_gateway_node(fake_gateway, starting):
    tasks.session_start.apply(args=[starting.pk])

    assert reload(starting).gateway_url == fake_gateway.url
    assert reload(starting).state == State.STARTING


def test_start_applies_state_returned_by_gateway(fake_gateway, starting):
    fake_gateway.reply("/start", (202, {"state": "qr_pending"}))

    tasks.session_start.apply(args=[starting.pk])

    assert reload(starting).state == State.QR_PENDING


def test_start_retries_after_503(fake_gateway, starting):
    fake_gateway.reply("/start", UNAVAILABLE, UNAVAILABLE)

    tasks.session_start.apply(args=[starting.pk])

    assert len(fake_gateway.calls("/start")) == 3
    assert reload(starting).state == State.STARTING
    assert reload(starting).last_error == ""


def test_start_gives_up_after_max_retries(fake_gateway, starting):
    fake_gateway.defaults["/start"] = UNAVAILABLE

    tasks.session_start.apply(args=[starting.pk])

    session = reload(starting)
    assert len(fake_gateway.calls("/start")) == tasks.MAX_RETRIES + 1
    assert session.state == State.FAILED
    assert session.last_error_code == reasons.GATEWAY_UNREACHABLE
    assert "gateway unreachable" in session.last_error


def test_start_reports_full_gateway(fake_gateway, starting):
    fake_gateway.defaults["/start"] = (
        503,
        {"code": "GW_ERR_MAX_SESSIONS", "message": "No free session slots."},
    )

    tasks.session_start.apply(args=[starting.pk])

    assert reload(starting).last_error_code == reasons.GATEWAY_FULL


def test_start_retries_on_connection_refused(unreachable_gateway, starting):
    tasks.session_start.apply(args=[starting.pk])

    session = reload(starting)
    assert session.state == State.FAILED
    assert session.last_error_code == reasons.GATEWAY_UNREACHABLE
    assert "could not be reached" in session.last_error
    assert "127.0.0.1" not in session.last_error


def test_start_fails_at_once_on_400(fake_gateway, starting):
    fake_gateway.reply(
        "/start",
        (400, {"code": "GW_ERR_INVALID_USER_ID", "message": "user_id is invalid."}),
    )

    tasks.session_start.apply(args=[starting.pk])

    session = reload(starting)
    assert len(fake_gateway.calls("/start")) == 1
    assert session.state == State.FAILED
    assert session.last_error_code == reasons.START_REJECTED
    assert "user_id is invalid." in session.last_error


def test_start_skips_session_no_longer_starting(fake_gateway, owner, make_session):
    session = make_session(owner, State.LOGGED_OUT)

    tasks.session_start.apply(args=[session.pk])

    assert fake_gateway.calls("/start") == []


def test_start_of_deleted_session_does_nothing(fake_gateway):
    tasks.session_start.apply(args=[987_654])

    assert fake_gateway.requests == []


def test_start_keeps_state_changed_by_callback_meanwhile(fake_gateway, starting):
    # The session moved on (a QR arrived) after the task read it.
    fake_gateway.reply("/start", (202, {"state": "starting"}))
    original_start = tasks.GatewayClient.start

    def start_then_qr(client, user_id):
        answer = original_start(client, user_id)
        WhatsAppSession.objects.filter(pk=starting.pk).update(
            state=State.QR_PENDING, qr="2@new", updated_at=timezone.now()
        )
        return answer

    tasks.GatewayClient.start = start_then_qr
    try:
        tasks.session_start.apply(args=[starting.pk])
    finally:
        tasks.GatewayClient.start = original_start

    assert reload(starting).state == State.QR_PENDING


@pytest.mark.parametrize("retries", range(8))
def test_retry_countdown_stays_within_doubling_ceiling(retries):
    ceiling = min(tasks.RETRY_CAP_SECONDS, tasks.RETRY_BASE_SECONDS * 2**retries)

    delays = [tasks.retry_countdown(retries) for _ in range(50)]

    assert min(delays) >= ceiling / 2
    assert max(delays) <= ceiling


def test_retry_countdown_is_jittered():
    assert len({tasks.retry_countdown(3) for _ in range(20)}) > 1


def test_logout_calls_gateway_for_logged_out_session(fake_gateway, owner, make_session):
    session = make_session(owner, State.LOGGED_OUT)

    tasks.session_logout.apply(args=[session.pk])

    assert fake_gateway.calls("/logout")[0]["json"] == {"user_id": owner.pk}
    assert reload(session).last_error == ""


def test_logout_skips_session_started_again(fake_gateway, owner, make_session):
    session = make_session(owner, State.STARTING)

    tasks.session_logout.apply(args=[session.pk])

    assert fake_gateway.calls("/logout") == []


def test_logout_unknown_to_gateway_is_done(fake_gateway, owner, make_session):
    fake_gateway.reply("/logout", (404, {"code": "GW_ERR_SESSION_NOT_FOUND"}))
    session = make_session(owner, State.LOGGED_OUT)

    tasks.session_logout.apply(args=[session.pk])

    assert reload(session).last_error_code == ""


def test_logout_tells_user_to_unlink_when_gateway_unreachable(
    unreachable_gateway, owner, make_session
):
    session = make_session(owner, State.LOGGED_OUT)

    tasks.session_logout.apply(args=[session.pk])

    session = reload(session)
    assert session.state == State.LOGGED_OUT
    assert session.last_error_code == reasons.LOGOUT_UNREACHABLE
    assert "127.0.0.1" not in session.last_error


def test_stop_closes_client_and_shows_disconnected(fake_gateway, owner, make_session):
    session = make_session(owner, State.CONNECTED, phone="+5511900000009")

    tasks.session_stop.apply(args=[session.pk, reasons.SUBSCRIPTION_INACTIVE])

    session = reload(session)
    assert len(fake_gateway.calls("/stop")) == 1
    assert session.state == State.DISCONNECTED
    assert session.last_error_code == reasons.SUBSCRIPTION_INACTIVE
    assert session.phone == "+5511900000009"


def test_stop_leaves_state_when_gateway_unreachable(
    unreachable_gateway, owner, make_session
):
    session = make_session(owner, State.CONNECTED)

    tasks.session_stop.apply(args=[session.pk])

    assert reload(session).state == State.CONNECTED


def test_sim_scan_posts_phone_to_sim_engine(fake_gateway, owner, make_session):
    session = make_session(owner, State.QR_PENDING, qr="2@x")

    tasks.session_sim_scan.apply(args=[session.pk, "+5511900000009"])

    [call] = fake_gateway.calls("/sim/scan")
    assert call["json"] == {"user_id": owner.pk, "phone": "+5511900000009"}


def test_sim_scan_skips_session_without_qr(fake_gateway, owner, make_session):
    session = make_session(owner, State.CONNECTED)

    tasks.session_sim_scan.apply(args=[session.pk, "+5511900000009"])

    assert fake_gateway.calls("/sim/scan") == []


def test_start_request_runs_start_task_in_process_when_eager(
    fake_gateway, owner, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        session_start_request(user=owner)

    assert len(fake_gateway.calls("/start")) == 1


def test_idle_logout_deletes_unused_session(fake_gateway, owner, make_session):
    cutoff = timezone.now() - timedelta(days=30)
    session = make_session(
        owner, State.LOGGED_OUT, last_activity_at=cutoff - timedelta(days=1)
    )

    tasks.session_logout.apply(
        args=[session.pk], kwargs={"idle_cutoff": cutoff.isoformat()}
    )

    assert len(fake_gateway.calls("/logout")) == 1
    assert not WhatsAppSession.objects.filter(pk=session.pk).exists()


def test_idle_logout_skips_session_used_again(fake_gateway, owner, make_session):
    cutoff = timezone.now() - timedelta(days=30)
    session = make_session(owner, State.LOGGED_OUT)

    tasks.session_logout.apply(
        args=[session.pk], kwargs={"idle_cutoff": cutoff.isoformat()}
    )

    assert fake_gateway.calls("/logout") == []
    assert WhatsAppSession.objects.filter(pk=session.pk).exists()


def test_start_stops_old_node_first(fake_gateway, owner, make_session, settings):
    old_node = FakeGateway(settings.WA_GATEWAY_SECRETS).start()
    try:
        session = make_session(owner, State.STARTING, gateway_url=old_node.url)

        tasks.session_start.apply(args=[session.pk])

        assert len(old_node.calls("/stop")) == 1
        assert old_node.calls("/start") == []
    finally:
        old_node.close()
    assert len(fake_gateway.calls("/start")) == 1
    assert reload(session).gateway_url == fake_gateway.url


def test_start_goes_ahead_when_old_node_is_gone(
    unreachable_gateway, fake_gateway, owner, make_session
):
    # unreachable_gateway only supplies a dead URL; fake_gateway, set up
    # after it, is the node the user hashes to now.
    session = make_session(owner, State.STARTING, gateway_url=unreachable_gateway)

    tasks.session_start.apply(args=[session.pk])

    assert len(fake_gateway.calls("/start")) == 1
    assert reload(session).gateway_url == fake_gateway.url


def test_logout_goes_to_the_node_holding_the_session(
    fake_gateway, owner, make_session, settings
):
    holder = FakeGateway(settings.WA_GATEWAY_SECRETS).start()
    try:
        session = make_session(owner, State.LOGGED_OUT, gateway_url=holder.url)

        tasks.session_logout.apply(args=[session.pk])

        assert len(holder.calls("/logout")) == 1
    finally:
        holder.close()
    assert fake_gateway.calls("/logout") == []
