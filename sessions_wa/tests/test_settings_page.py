from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import Subscription
from accounts.tests.factories import subscriber_create
from sessions_wa import reasons, tasks
from sessions_wa.models import WhatsAppSession

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db

SETTINGS_URL = reverse("sessions_wa:settings")
CARD_URL = reverse("sessions_wa:card")
START_URL = reverse("sessions_wa:start")
DISCONNECT_URL = reverse("sessions_wa:disconnect")
SIM_URL = reverse("sessions_wa:simulate_scan")
QR = "2@qr-ref-1,pubkey,identity,adv"


@pytest.fixture
def page(client, owner):
    client.force_login(owner)

    def get(url=SETTINGS_URL, **headers):
        response = client.get(url, **headers)
        assert response.status_code == 200
        return response.content.decode()

    return get


def test_page_without_session_offers_qr_code(page):
    assert "Get my QR code" in page()


def test_starting_page_polls_the_card(page, owner, make_session):
    make_session(owner, State.STARTING)

    html = page()

    assert "Preparing your QR code" in html
    assert 'hx-trigger="every 2s"' in html
    assert f'hx-get="{CARD_URL}"' in html


def test_qr_pending_page_draws_svg_and_polls(
    page, owner, make_session, unreachable_gateway
):
    make_session(owner, State.QR_PENDING, qr=QR)

    html = page()

    assert "<svg" in html
    assert "QR code to link WhatsApp" in html
    assert 'hx-trigger="every 2s"' in html


def test_qr_pending_page_never_prints_the_raw_qr(
    page, owner, make_session, unreachable_gateway
):
    make_session(owner, State.QR_PENDING, qr=QR)

    assert QR not in page()


def test_card_shows_rotated_qr(page, owner, make_session, unreachable_gateway):
    session = make_session(owner, State.QR_PENDING, qr=QR)
    first = page(CARD_URL)

    session.qr = "2@qr-ref-2,pubkey,identity,adv"
    session.save()
    second = page(CARD_URL)

    assert first != second
    assert "<svg" in second


def test_card_shows_connected_and_stops_polling(page, owner, make_session):
    make_session(
        owner,
        State.CONNECTED,
        phone="+5511900000009",
        connected_since=timezone.now() - timedelta(hours=1),
    )

    html = page(CARD_URL)

    assert "+5511900000009" in html
    assert "Connected since" in html
    assert "hx-trigger" not in html
    assert "<html" not in html


def test_card_warns_gateway_unreachable(page, owner, make_session):
    since = timezone.now() - timedelta(minutes=3)
    make_session(owner, State.CONNECTED, gateway_unreachable_since=since)

    html = page(CARD_URL)

    assert "has not responded since" in html
    assert "may be out of date" in html


def test_card_without_mark_has_no_warning(page, owner, make_session):
    make_session(owner, State.CONNECTED, phone="+5511900000009")

    html = page(CARD_URL)

    assert "has not responded since" not in html


def test_qr_expired_page_offers_new_qr(page, owner, make_session):
    make_session(owner, State.QR_EXPIRED)

    assert "Get a new QR code" in page()


def test_disconnected_page_says_it_reconnects(page, owner, make_session):
    make_session(owner, State.DISCONNECTED, last_error_code=reasons.NETWORK)

    html = page()

    assert "It reconnects by itself" in html
    assert 'hx-trigger="every 5s"' in html


def test_logged_out_page_explains_device_removal(page, owner, make_session):
    make_session(owner, State.LOGGED_OUT, last_error_code=reasons.DEVICE_REMOVED)

    html = page()

    assert "removed from Linked devices" in html
    assert "Get my QR code" in html


def test_failed_page_shows_unreachable_gateway_sentence(page, owner, make_session):
    make_session(
        owner,
        State.FAILED,
        last_error_code=reasons.GATEWAY_UNREACHABLE,
        last_error="gateway unreachable after 6 attempts: ConnectionError",
    )

    html = page()

    assert "The WhatsApp gateway could not be reached" in html
    assert "ConnectionError" not in html
    assert "Try again" in html


def test_page_in_simplified_chinese(page, owner, make_session):
    make_session(owner, State.QR_EXPIRED)

    html = page(HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert "获取新的二维码" in html
    assert 'lang="zh-hans"' in html


def test_language_switch_sets_chinese(client, owner):
    client.force_login(owner)

    client.post(reverse("set_language"), {"language": "zh-hans", "next": SETTINGS_URL})
    html = client.get(SETTINGS_URL).content.decode()

    assert "获取我的二维码" in html


def test_outsider_page_shows_nothing_of_owner_session(
    client, outsider, owner, make_session
):
    make_session(owner, State.CONNECTED, phone="+5511900000009", push_name="Owner Shop")
    client.force_login(outsider)

    html = client.get(SETTINGS_URL).content.decode()

    assert "+5511900000009" not in html
    assert "Owner Shop" not in html
    assert "Get my QR code" in html


def test_outsider_card_shows_nothing_of_owner_qr(client, outsider, owner, make_session):
    make_session(owner, State.QR_PENDING, qr=QR)
    client.force_login(outsider)

    html = client.get(CARD_URL).content.decode()

    assert "<svg" not in html


def test_start_button_starts_session(
    client, owner, enqueued, django_capture_on_commit_callbacks
):
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(START_URL)

    assert response.status_code == 302
    assert WhatsAppSession.objects.get(user=owner).state == State.STARTING
    enqueued["session_start"].assert_called_once()


def test_start_button_from_htmx_returns_the_card(client, owner, enqueued):
    client.force_login(owner)

    response = client.post(START_URL, HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="whatsapp-card"' in html
    assert "<html" not in html


def test_start_requires_post(client, owner):
    client.force_login(owner)

    assert client.get(START_URL).status_code == 405


def test_start_with_inactive_subscription_shows_reason(client, enqueued):
    user = subscriber_create("late@example.com", status=Subscription.Status.PAST_DUE)
    client.force_login(user)

    response = client.post(START_URL, follow=True)

    assert "payment did not go through" in response.content.decode()
    assert not WhatsAppSession.objects.exists()


def test_inactive_subscription_hides_the_start_button(client, make_session):
    user = subscriber_create("gone@example.com", status=Subscription.Status.CANCELED)
    make_session(user, State.LOGGED_OUT)
    client.force_login(user)

    html = client.get(SETTINGS_URL).content.decode()

    assert "Get my QR code" not in html
    assert "canceled" in html


def test_disconnect_asks_for_confirmation_first(client, owner, make_session):
    session = make_session(owner, State.CONNECTED, phone="+5511900000009")
    client.force_login(owner)

    html = client.get(DISCONNECT_URL).content.decode()

    session.refresh_from_db()
    assert "Disconnect WhatsApp?" in html
    assert session.state == State.CONNECTED


def test_confirmed_disconnect_logs_out(client, owner, make_session, enqueued):
    make_session(owner, State.CONNECTED)
    client.force_login(owner)

    response = client.post(DISCONNECT_URL, follow=True)

    assert WhatsAppSession.objects.get(user=owner).state == State.LOGGED_OUT
    assert "WhatsApp is disconnected" in response.content.decode()


def test_disconnect_without_session_is_404(client, outsider, owner, make_session):
    make_session(owner, State.CONNECTED)
    client.force_login(outsider)

    assert client.get(DISCONNECT_URL).status_code == 404
    assert client.post(DISCONNECT_URL).status_code == 404


def test_sim_control_shown_with_sim_engine(page, owner, make_session, fake_gateway):
    make_session(owner, State.QR_PENDING, qr=QR)

    html = page()

    assert "Simulate scan" in html
    assert 'value="+5511900000009"' in html


def test_sim_control_hidden_with_baileys_engine(
    page, owner, make_session, fake_gateway
):
    fake_gateway.defaults["/healthz"] = (200, {"engine": "baileys"})
    make_session(owner, State.QR_PENDING, qr=QR)

    assert "Simulate scan" not in page()


def test_sim_control_hidden_when_gateway_unreachable(
    page, owner, make_session, unreachable_gateway
):
    make_session(owner, State.QR_PENDING, qr=QR)

    assert "Simulate scan" not in page()


def test_engine_is_asked_once_while_cached(page, owner, make_session, fake_gateway):
    make_session(owner, State.QR_PENDING, qr=QR)

    page()
    page(CARD_URL)

    assert len(fake_gateway.calls("/healthz")) == 1


def test_simulate_scan_enqueues_with_typed_phone(
    client, owner, make_session, fake_gateway
):
    session = make_session(owner, State.QR_PENDING, qr=QR)
    client.force_login(owner)

    with mock.patch.object(tasks.session_sim_scan, "apply_async") as apply_async:
        client.post(SIM_URL, {"phone": "+55 11 90000-0008"})

    kwargs = apply_async.call_args.kwargs
    assert kwargs["args"] == [session.pk, "+5511900000008"]
    assert "+5511900000008" not in kwargs["argsrepr"]


def test_simulate_scan_rejects_invalid_phone(client, owner, make_session, fake_gateway):
    make_session(owner, State.QR_PENDING, qr=QR)
    client.force_login(owner)

    with mock.patch.object(tasks.session_sim_scan, "apply_async") as apply_async:
        response = client.post(
            SIM_URL, {"phone": "+55 11 9OOOO"}, HTTP_HX_REQUEST="true"
        )

    assert "is not a valid phone number" in response.content.decode()
    apply_async.assert_not_called()


def test_simulate_scan_is_404_without_sim_engine(
    client, owner, make_session, fake_gateway
):
    fake_gateway.defaults["/healthz"] = (200, {"engine": "baileys"})
    make_session(owner, State.QR_PENDING, qr=QR)
    client.force_login(owner)

    assert client.post(SIM_URL, {"phone": "+5511900000009"}).status_code == 404


def test_simulate_scan_by_outsider_is_404(
    client, outsider, owner, make_session, fake_gateway
):
    make_session(owner, State.QR_PENDING, qr=QR)
    client.force_login(outsider)

    with mock.patch.object(tasks.session_sim_scan, "apply_async") as apply_async:
        response = client.post(SIM_URL, {"phone": "+5511900000009"})

    assert response.status_code == 404
    apply_async.assert_not_called()


def test_settings_page_shows_token_state_without_key(client, owner):
    token = Token.objects.create(user=owner)
    client.force_login(owner)

    html = client.get(SETTINGS_URL).content.decode()

    assert "Rotate token" in html
    assert token.key not in html
