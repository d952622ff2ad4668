import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_wa.models import WhatsAppSession
from sessions_wa.services import (
    TRANSITIONS,
    SessionTransitionError,
    session_transition,
    transition_path,
)

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db

ALLOWED_MOVES = [
    (State.NEW, State.STARTING),
    (State.STARTING, State.QR_PENDING),
    (State.STARTING, State.CONNECTED),
    (State.STARTING, State.DISCONNECTED),
    (State.STARTING, State.LOGGED_OUT),
    (State.STARTING, State.FAILED),
    (State.QR_PENDING, State.QR_EXPIRED),
    (State.QR_PENDING, State.CONNECTED),
    (State.QR_PENDING, State.DISCONNECTED),
    (State.QR_PENDING, State.LOGGED_OUT),
    (State.QR_PENDING, State.FAILED),
    (State.QR_EXPIRED, State.STARTING),
    (State.QR_EXPIRED, State.LOGGED_OUT),
    (State.CONNECTED, State.DISCONNECTED),
    (State.CONNECTED, State.LOGGED_OUT),
    (State.CONNECTED, State.FAILED),
    (State.DISCONNECTED, State.STARTING),
    (State.DISCONNECTED, State.QR_PENDING),
    (State.DISCONNECTED, State.CONNECTED),
    (State.DISCONNECTED, State.LOGGED_OUT),
    (State.DISCONNECTED, State.FAILED),
    (State.LOGGED_OUT, State.STARTING),
    (State.FAILED, State.STARTING),
    (State.FAILED, State.LOGGED_OUT),
]
REJECTED_MOVES = [
    (current, target)
    for current, target in itertools.permutations(State.values, 2)
    if (current, target) not in ALLOWED_MOVES
]


def test_table_matches_the_documented_moves():
    table = {
        (current, target)
        for current, targets in TRANSITIONS.items()
        for target in targets
    }

    assert table == set(ALLOWED_MOVES)


@pytest.mark.parametrize(("current", "target"), ALLOWED_MOVES)
def test_allowed_move_changes_state(make_session, owner, current, target):
    session = make_session(owner, current)

    session_transition(session, target)

    session.refresh_from_db()
    assert session.state == target


@pytest.mark.parametrize(("current", "target"), REJECTED_MOVES)
def test_rejected_move_raises_and_keeps_state(make_session, owner, current, target):
    session = make_session(owner, current)

    with pytest.raises(SessionTransitionError):
        session_transition(session, target)

    session.refresh_from_db()
    assert session.state == current


@pytest.mark.parametrize("state", State.values)
def test_staying_in_a_state_is_allowed(make_session, owner, state):
    session = make_session(owner, state)

    session_transition(session, state)

    assert session.state == state


def test_rejection_message_names_the_allowed_moves(make_session, owner):
    session = make_session(owner, State.CONNECTED)

    with pytest.raises(SessionTransitionError) as caught:
        session_transition(session, State.QR_PENDING)

    message = caught.value.message
    assert "from connected to qr_pending" in message
    assert "disconnected, failed, logged_out" in message


def test_connected_flag_follows_state(make_session, owner):
    session = make_session(owner, State.QR_PENDING)

    session_transition(session, State.CONNECTED)
    assert session.connected is True

    session_transition(session, State.DISCONNECTED)
    assert session.connected is False


def test_connected_since_survives_a_refresh(make_session, owner):
    since = timezone.now() - timedelta(hours=3)
    session = make_session(owner, State.CONNECTED, connected_since=since)

    session_transition(session, State.CONNECTED, fields={"push_name": "New name"})

    assert session.connected_since == since


def test_leaving_qr_pending_clears_the_qr(make_session, owner):
    session = make_session(
        owner, State.QR_PENDING, qr="2@abc", qr_expires_at=timezone.now()
    )

    session_transition(session, State.QR_EXPIRED)

    assert session.qr == ""
    assert session.qr_expires_at is None


def test_logged_out_clears_the_linked_account(make_session, owner):
    session = make_session(
        owner,
        State.CONNECTED,
        jid="5511900000009@s.whatsapp.net",
        phone="+5511900000009",
    )

    session_transition(session, State.LOGGED_OUT)

    assert session.phone == ""
    assert session.jid == ""


def test_error_code_stores_english_sentence(make_session, owner):
    session = make_session(owner, State.STARTING)

    session_transition(session, State.FAILED, error_code="gateway_unreachable")

    assert session.last_error_code == "gateway_unreachable"
    assert session.last_error.startswith("The WhatsApp gateway could not be reached")


def test_transition_without_error_clears_last_error(make_session, owner):
    session = make_session(
        owner, State.FAILED, last_error="old", last_error_code="fatal"
    )

    session_transition(session, State.STARTING)

    assert session.last_error == ""
    assert session.last_error_code == ""


def test_path_goes_through_disconnected_to_reach_a_qr():
    assert transition_path(State.CONNECTED, State.QR_PENDING) == [
        State.DISCONNECTED,
        State.QR_PENDING,
    ]


def test_path_to_the_same_state_is_empty():
    assert transition_path(State.NEW, State.NEW) == []


def test_path_to_a_direct_neighbour_is_one_step():
    assert transition_path(State.STARTING, State.FAILED) == [State.FAILED]


def test_path_to_new_does_not_exist():
    assert transition_path(State.CONNECTED, State.NEW) is None
