import pytest
from django.urls import reverse

from accounts.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_login_with_email_and_password(client, owner):
    response = client.post(
        reverse("accounts:login"), {"username": owner.email, "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("sessions_wa:settings")
    assert client.session["_auth_user_id"] == str(owner.pk)


def test_login_rejects_wrong_password(client, owner):
    response = client.post(
        reverse("accounts:login"), {"username": owner.email, "password": "wrong"}
    )

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_logout_ends_the_session(client, owner):
    client.force_login(owner)

    response = client.post(reverse("accounts:logout"))

    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_settings_page_requires_login(client):
    response = client.get(reverse("sessions_wa:settings"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))
