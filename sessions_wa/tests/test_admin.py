import pytest
from django.urls import reverse

from sessions_wa.models import GatewayEvent, WhatsAppSession
from sessions_wa.tests.helpers import post_callback, qr_event

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db


@pytest.fixture
def connected(owner, make_session):
    return make_session(owner, State.CONNECTED, phone="+5511900000009")


def test_session_list_filters_by_state_and_plan(admin_client, connected):
    url = reverse("admin:sessions_wa_whatsappsession_changelist")

    response = admin_client.get(
        url, {"state__exact": "connected", "user__subscription__plan__exact": "starter"}
    )

    assert response.status_code == 200
    assert connected.session_key in response.content.decode()


def test_session_list_filter_excludes_other_states(admin_client, connected):
    url = reverse("admin:sessions_wa_whatsappsession_changelist")

    response = admin_client.get(url, {"state__exact": "failed"})

    assert connected.session_key not in response.content.decode()


@pytest.mark.parametrize("query", ["owner@example", "+5511900000009"])
def test_session_list_searches_email_and_phone(admin_client, connected, query):
    url = reverse("admin:sessions_wa_whatsappsession_changelist")

    response = admin_client.get(url, {"q": query})

    assert connected.session_key in response.content.decode()


def test_session_change_page_loads_read_only(admin_client, connected):
    url = reverse("admin:sessions_wa_whatsappsession_change", args=[connected.pk])

    response = admin_client.get(url)

    assert response.status_code == 200
    assert 'name="state"' not in response.content.decode()


def test_force_logout_action_enqueues_logout(
    admin_client, connected, enqueued, django_capture_on_commit_callbacks
):
    url = reverse("admin:sessions_wa_whatsappsession_changelist")

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            url, {"action": "force_logout", "_selected_action": [connected.pk]}
        )

    connected.refresh_from_db()
    assert connected.state == State.LOGGED_OUT
    enqueued["session_logout"].assert_called_once_with(connected.pk)


def test_event_log_lists_events(admin_client, client, owner, make_session):
    make_session(owner, State.STARTING)
    post_callback(client, [qr_event(owner.pk, 1)])

    response = admin_client.get(reverse("admin:sessions_wa_gatewayevent_changelist"))

    assert response.status_code == 200
    assert "session.qr" in response.content.decode()


def test_event_log_cannot_be_added_to(admin_client):
    response = admin_client.get(reverse("admin:sessions_wa_gatewayevent_add"))

    assert response.status_code == 403


def test_event_log_entry_is_read_only(admin_client, client, owner, make_session):
    make_session(owner, State.STARTING)
    post_callback(client, [qr_event(owner.pk, 1)])
    event = GatewayEvent.objects.get()
    url = reverse("admin:sessions_wa_gatewayevent_change", args=[event.pk])

    page = admin_client.get(url).content.decode()
    admin_client.post(url, {"outcome": "ignored"})

    event.refresh_from_db()
    assert 'name="outcome"' not in page
    assert event.outcome == GatewayEvent.Outcome.APPLIED


def test_event_log_entry_cannot_be_deleted(admin_client, client, owner, make_session):
    make_session(owner, State.STARTING)
    post_callback(client, [qr_event(owner.pk, 1)])
    event = GatewayEvent.objects.get()
    url = reverse("admin:sessions_wa_gatewayevent_delete", args=[event.pk])

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 403
    assert GatewayEvent.objects.filter(pk=event.pk).exists()


def test_session_cannot_move_to_other_user(admin_client, connected, outsider):
    url = reverse("admin:sessions_wa_whatsappsession_change", args=[connected.pk])

    admin_client.post(url, {"user": outsider.pk, "session_key": "user_moved"})

    connected.refresh_from_db()
    assert connected.user_id != outsider.pk
    assert connected.session_key != "user_moved"


def test_session_add_page_is_forbidden(admin_client):
    response = admin_client.get(reverse("admin:sessions_wa_whatsappsession_add"))

    assert response.status_code == 403
