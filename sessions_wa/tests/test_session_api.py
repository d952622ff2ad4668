from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import Subscription
from accounts.tests.factories import subscriber_create
from sessions_wa.models import WhatsAppSession

State = WhatsAppSession.State
pytestmark = pytest.mark.django_db

SESSION_URL = reverse("sessions_wa_api:session")
LOGOUT_URL = reverse("sessions_wa_api:session_logout")


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def owner_session(owner, make_session):
    return make_session(
        owner,
        State.CONNECTED,
        phone="+5511900000009",
        jid="5511900000009@s.whatsapp.net",
        push_name="Owner Shop",
    )


def test_urls_have_no_trailing_slash():
    assert SESSION_URL == "/api/settings/whatsapp/session"
    assert LOGOUT_URL == "/api/settings/whatsapp/session/logout"


def test_get_without_session_is_404(api, owner):
    api.force_authenticate(owner)

    response = api.get(SESSION_URL)

    assert response.status_code == 404
    assert "POST to start one" in response.json()["message"]


def test_get_returns_own_session(api, owner, owner_session):
    api.force_authenticate(owner)

    body = api.get(SESSION_URL).json()

    assert body["state"] == "connected"
    assert body["connected"] is True
    assert body["phone"] == "+5511900000009"


def test_get_returns_unreachable_since(api, owner, owner_session):
    since = timezone.now() - timedelta(minutes=3)
    WhatsAppSession.objects.filter(pk=owner_session.pk).update(
        gateway_unreachable_since=since
    )
    api.force_authenticate(owner)

    body = api.get(SESSION_URL).json()

    assert body["gateway_unreachable_since"] == since.isoformat().replace("+00:00", "Z")


def test_get_hides_internal_fields(api, owner, owner_session):
    api.force_authenticate(owner)

    body = api.get(SESSION_URL).json()

    assert "gateway_url" not in body
    assert "last_event_seq" not in body


def test_outsider_get_is_404_without_owner_data(api, outsider, owner_session):
    api.force_authenticate(outsider)

    response = api.get(SESSION_URL)

    text = response.content.decode()
    assert response.status_code == 404
    assert "+5511900000009" not in text
    assert "Owner Shop" not in text


def test_post_creates_and_starts_session(
    api, owner, enqueued, django_capture_on_commit_callbacks
):
    api.force_authenticate(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(SESSION_URL)

    assert response.status_code == 201
    assert response.json()["state"] == "starting"
    enqueued["session_start"].assert_called_once()


def test_post_on_live_session_is_no_op(
    api, owner, owner_session, enqueued, django_capture_on_commit_callbacks
):
    api.force_authenticate(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(SESSION_URL)

    assert response.status_code == 200
    assert response.json()["state"] == "connected"
    enqueued["session_start"].assert_not_called()


def test_post_by_outsider_creates_only_their_own_session(
    api, outsider, owner_session, enqueued
):
    api.force_authenticate(outsider)

    body = api.post(SESSION_URL).json()

    assert body["session_key"] == f"user_{outsider.pk}"
    assert "+5511900000009" not in str(body)
    owner_session.refresh_from_db()
    assert owner_session.state == State.CONNECTED


def test_post_with_other_user_id_is_400(api, owner, outsider, enqueued):
    api.force_authenticate(owner)

    response = api.post(SESSION_URL, {"user_id": outsider.pk}, format="json")

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "invalid_user_id"
    assert f"user_id {outsider.pk} is not the authenticated user" in body["message"]
    assert not WhatsAppSession.objects.exists()


def test_post_with_own_user_id_is_accepted(api, owner, enqueued):
    api.force_authenticate(owner)

    response = api.post(SESSION_URL, {"user_id": owner.pk}, format="json")

    assert response.status_code == 201


def test_post_with_non_integer_user_id_is_400(api, owner, enqueued):
    api.force_authenticate(owner)

    response = api.post(SESSION_URL, {"user_id": "me"}, format="json")

    assert response.status_code == 400
    assert "must be an integer" in response.json()["message"]


@pytest.mark.parametrize(
    "status", [Subscription.Status.PAST_DUE, Subscription.Status.CANCELED]
)
def test_post_with_inactive_subscription_is_403(api, enqueued, status):
    user = subscriber_create("late@example.com", status=status)
    api.force_authenticate(user)

    response = api.post(SESSION_URL)

    body = response.json()
    assert response.status_code == 403
    assert body["code"] == "subscription_inactive"
    assert "to continue" in body["message"] or "again" in body["message"]


def test_post_with_trialing_subscription_is_allowed(api, owner, enqueued):
    api.force_authenticate(owner)

    assert api.post(SESSION_URL).status_code == 201


def test_logout_moves_own_session_to_logged_out(
    api, owner, owner_session, enqueued, django_capture_on_commit_callbacks
):
    api.force_authenticate(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(LOGOUT_URL)

    assert response.status_code == 200
    assert response.json()["state"] == "logged_out"
    enqueued["session_logout"].assert_called_once_with(owner_session.pk)


def test_logout_by_outsider_is_404_and_changes_nothing(
    api, outsider, owner_session, enqueued
):
    api.force_authenticate(outsider)

    response = api.post(LOGOUT_URL)

    assert response.status_code == 404
    owner_session.refresh_from_db()
    assert owner_session.state == State.CONNECTED


def test_logout_with_other_user_id_is_400(
    api, owner, outsider, owner_session, enqueued
):
    api.force_authenticate(owner)

    response = api.post(LOGOUT_URL, {"user_id": outsider.pk}, format="json")

    assert response.status_code == 400
    owner_session.refresh_from_db()
    assert owner_session.state == State.CONNECTED


def test_token_authentication_reaches_own_session(api, owner, owner_session):
    token = Token.objects.create(user=owner)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert api.get(SESSION_URL).json()["state"] == "connected"


def test_anonymous_request_is_rejected(api, owner_session):
    response = api.get(SESSION_URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_authenticated"


def test_schema_documents_session_endpoints(client, owner):
    client.force_login(owner)

    schema = client.get(reverse("api-schema")).content.decode()

    assert "/api/settings/whatsapp/session/logout" in schema
    assert "whatsapp_session_start" in schema


def test_post_unknown_field_is_400(api, owner, enqueued):
    api.force_authenticate(owner)

    response = api.post(SESSION_URL, {"phone": "+5511900000009"}, format="json")

    body = response.json()
    assert response.status_code == 400
    assert "accepts user_id" in body["extra"]["fields"]["phone"][0]
    assert not WhatsAppSession.objects.exists()
