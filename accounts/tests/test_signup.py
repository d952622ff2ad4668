from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.forms import SignupForm
from accounts.models import Subscription, User
from accounts.tests.factories import PASSWORD, subscriber_create
from whatsapp_saas.exceptions import ApplicationError

pytestmark = pytest.mark.django_db

SIGNUP_URL = reverse("accounts:signup")


def signup_data(**overrides):
    data = {
        "email": "New.User@Example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "default_country": "AR",
    }
    data.update(overrides)
    return data


def test_signup_creates_user_with_lowercase_email(client):
    client.post(SIGNUP_URL, signup_data())

    assert User.objects.filter(email="new.user@example.com").exists()


def test_signup_stores_default_country(client):
    client.post(SIGNUP_URL, signup_data())

    assert User.objects.get().default_country == "AR"


def test_signup_starts_fourteen_day_trial(client):
    client.post(SIGNUP_URL, signup_data())

    subscription = Subscription.objects.get()
    expected_end = timezone.now() + timedelta(days=14)
    assert subscription.status == Subscription.Status.TRIALING
    assert abs(subscription.current_period_end - expected_end) < timedelta(minutes=1)


def test_signup_logs_in_and_redirects_to_settings(client):
    response = client.post(SIGNUP_URL, signup_data())

    assert response.status_code == 302
    assert response["Location"] == reverse("sessions_wa:settings")
    assert client.get(reverse("sessions_wa:settings")).status_code == 200


def test_signup_rejects_taken_email_in_any_case(client):
    subscriber_create("taken@example.com")

    response = client.post(SIGNUP_URL, signup_data(email="TAKEN@example.com"))

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1


def test_signup_rejects_different_passwords(client):
    response = client.post(SIGNUP_URL, signup_data(password2="another-password-1"))

    assert "type the same password twice" in response.content.decode()
    assert not User.objects.exists()


def test_signup_rejects_common_password(client):
    response = client.post(
        SIGNUP_URL, signup_data(password1="password", password2="password")
    )

    assert response.status_code == 200
    assert not User.objects.exists()


def test_signup_rejects_unknown_country(client):
    response = client.post(SIGNUP_URL, signup_data(default_country="ZZ"))

    assert response.status_code == 200
    assert not User.objects.exists()


def test_signup_page_redirects_signed_in_user(client):
    user = subscriber_create("owner@example.com")
    client.force_login(user)

    response = client.get(SIGNUP_URL)

    assert response.status_code == 302


def test_signup_service_rejects_taken_email():
    fields = {"password": PASSWORD, "default_country": "BR"}
    services.user_signup(email="taken@example.com", **fields)

    with pytest.raises(ApplicationError) as raised:
        services.user_signup(email="taken@example.com", **fields)

    assert raised.value.code == "email_taken"
    assert User.objects.filter(email="taken@example.com").count() == 1


def test_signup_race_shows_email_error(client, monkeypatch):
    # The other request of a double submit commits after this one's check.
    subscriber_create("new.user@example.com")
    monkeypatch.setattr(
        SignupForm, "clean_email", lambda form: form.cleaned_data["email"].lower()
    )

    response = client.post(SIGNUP_URL, signup_data())

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.filter(email="new.user@example.com").count() == 1
