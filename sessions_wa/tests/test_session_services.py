import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

from accounts.models import Subscription
from accounts.tests.factories import subscriber_create
from sessions_wa import reasons
from sessions_wa.events import events_validate
from sessions_wa.models import WhatsAppSession
from sessions_wa.services import (
    _callback_rows_locked,
    _event_runs,
    session_logout_request,
    session_start_request,
)
from sessions_wa.tests.helpers import message_event, qr_event
from whatsapp_saas.exceptions import ApplicationError

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db


def test_start_creates_session_in_starting(owner, enqueued):
    session, created = session_start_request(user=owner)

    assert created is True
    assert session.state == State.STARTING
    assert session.session_key == f"user_{owner.pk}"


def test_start_enqueues_the_start_task_after_commit(
    owner, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        session, _ = session_start_request(user=owner)

    enqueued["session_start"].assert_called_once_with(session.pk)


def test_start_records_the_gateway_node(owner, enqueued, settings):
    settings.WA_GATEWAY_URLS = ["http://127.0.0.1:3001", "http://127.0.0.1:3002"]

    session, _ = session_start_request(user=owner)

    assert session.gateway_url in settings.WA_GATEWAY_URLS


@pytest.mark.parametrize("state", [State.STARTING, State.QR_PENDING, State.CONNECTED])
def test_start_is_a_no_op_while_live(
    owner, make_session, enqueued, django_capture_on_commit_callbacks, state
):
    existing = make_session(
        owner, state, qr="2@keep" if state == State.QR_PENDING else ""
    )

    with django_capture_on_commit_callbacks(execute=True):
        session, created = session_start_request(user=owner)

    assert created is False
    assert session.state == state
    assert session.qr == existing.qr
    enqueued["session_start"].assert_not_called()


@pytest.mark.parametrize(
    "state", [State.QR_EXPIRED, State.LOGGED_OUT, State.FAILED, State.DISCONNECTED]
)
def test_start_works_again_after_an_end_state(
    owner, make_session, enqueued, django_capture_on_commit_callbacks, state
):
    make_session(owner, state, last_error_code=reasons.FATAL, last_error="old")

    with django_capture_on_commit_callbacks(execute=True):
        session, _ = session_start_request(user=owner)

    assert session.state == State.STARTING
    assert session.last_error == ""
    enqueued["session_start"].assert_called_once_with(session.pk)


@pytest.mark.parametrize(
    "status", [Subscription.Status.PAST_DUE, Subscription.Status.CANCELED]
)
def test_start_rejects_inactive_subscription(enqueued, db, status):
    user = subscriber_create("late@example.com", status=status)

    with pytest.raises(ApplicationError) as caught:
        session_start_request(user=user)

    assert caught.value.code == "subscription_inactive"
    assert not WhatsAppSession.objects.exists()


def test_logout_without_session_returns_none(owner):
    assert session_logout_request(user=owner) is None


def test_logout_moves_to_logged_out_and_enqueues(
    owner, make_session, enqueued, django_capture_on_commit_callbacks
):
    make_session(owner, State.CONNECTED, phone="+5511900000009")

    with django_capture_on_commit_callbacks(execute=True):
        session = session_logout_request(user=owner)

    assert session.state == State.LOGGED_OUT
    enqueued["session_logout"].assert_called_once_with(session.pk)


def test_logout_of_new_session_enqueues_nothing(
    owner, make_session, enqueued, django_capture_on_commit_callbacks
):
    make_session(owner, State.NEW)

    with django_capture_on_commit_callbacks(execute=True):
        session = session_logout_request(user=owner)

    assert session.state == State.NEW
    enqueued["session_logout"].assert_not_called()


def test_logout_is_retried_after_an_unreachable_gateway(
    owner, make_session, enqueued, django_capture_on_commit_callbacks
):
    make_session(owner, State.LOGGED_OUT, last_error_code=reasons.LOGOUT_UNREACHABLE)

    with django_capture_on_commit_callbacks(execute=True):
        session_logout_request(user=owner)

    enqueued["session_logout"].assert_called_once()


def test_logout_of_logged_out_session_enqueues_nothing(
    owner, make_session, enqueued, django_capture_on_commit_callbacks
):
    make_session(owner, State.LOGGED_OUT)

    with django_capture_on_commit_callbacks(execute=True):
        session_logout_request(user=owner)

    enqueued["session_logout"].assert_not_called()


def test_logout_leaves_other_subscribers_session(
    owner, outsider, make_session, enqueued
):
    make_session(owner, State.CONNECTED)
    other = make_session(outsider, State.CONNECTED)

    session_logout_request(user=owner)

    other.refresh_from_db()
    assert other.state == State.CONNECTED


def test_callback_rows_read_users_and_sessions(
    owner, outsider, make_session, django_assert_num_queries
):
    session = make_session(owner, State.CONNECTED, phone="+5511987650001")

    with django_assert_num_queries(2):
        users, sessions = _callback_rows_locked({owner.pk, outsider.pk, 424_242})

    assert users == {owner.pk: owner, outsider.pk: outsider}
    assert sessions == {owner.pk: session}
    assert sessions[owner.pk].phone == "+5511987650001"
    assert users[owner.pk].email == owner.email


@pytest.mark.postgres
def test_callback_rows_one_query_with_sessions(
    owner, outsider, make_session, django_assert_num_queries
):
    make_session(owner)
    make_session(outsider)

    with django_assert_num_queries(1):
        users, sessions = _callback_rows_locked({owner.pk, outsider.pk})

    with django_assert_num_queries(0):
        assert sessions[owner.pk].user is users[owner.pk]
        assert users[owner.pk].whatsapp_session is sessions[owner.pk]
    assert set(sessions) == {owner.pk, outsider.pk}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_callback_rows_lock_sessions(owner, make_session):
    session = make_session(owner)
    other = connections.create_connection(DEFAULT_DB_ALIAS)

    try:
        with transaction.atomic():
            _callback_rows_locked({owner.pk})
            with other.cursor() as cursor, pytest.raises(OperationalError):
                cursor.execute(
                    "SELECT id FROM sessions_wa_whatsappsession "
                    "WHERE id = %s FOR UPDATE NOWAIT",
                    [session.pk],
                )
    finally:
        other.close()


def test_event_runs_share_one_message_event(owner):
    events = events_validate({"events": [message_event(owner.pk, 1)]})

    runs = list(_event_runs(events, {owner.pk: owner}))

    assert runs == [(events, True)]


def test_event_runs_keep_session_events_alone(owner):
    events = events_validate(
        {
            "events": [
                message_event(owner.pk, 1),
                qr_event(owner.pk, 2),
                message_event(owner.pk, 3),
                message_event(424_242, 4),
            ]
        }
    )

    runs = list(_event_runs(events, {owner.pk: owner}))

    assert runs == [
        ([events[0]], True),
        ([events[1]], False),
        ([events[2]], True),
        ([events[3]], False),
    ]
