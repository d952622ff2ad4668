import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.models import User
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


def _login(client, email, password=PASSWORD):
    return client.post(
        reverse("accounts:login"), {"username": email, "password": password}
    )


def test_login_with_email_in_other_case(client, owner):
    _login(client, "Owner@Example.COM")

    assert client.session["_auth_user_id"] == str(owner.pk)


def test_login_other_case_wrong_password(client, owner):
    response = _login(client, "OWNER@example.com", password="wrong")

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_database_rejects_email_with_capitals(owner):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(pk=owner.pk).update(email="Owner@Example.com")


def test_save_lowercases_email(owner):
    owner.email = "Owner@Example.com"
    owner.save()

    owner.refresh_from_db()
    assert owner.email == "owner@example.com"


def test_create_user_rejects_case_variant(owner):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(email="OWNER@example.com", password=PASSWORD)


def test_clean_rejects_case_variant(owner):
    user = User(email="Owner@Example.com")

    with pytest.raises(ValidationError) as raised:
        user.clean()

    assert raised.value.message_dict["email"][0].startswith("A user with the email")
