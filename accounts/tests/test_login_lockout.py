"""Too many failed log-ins for one address lock it out for a while."""

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth import forms as auth_forms
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounts import login_limits
from accounts.login_limits import login_attempts_clear
from accounts.tests.factories import PASSWORD, subscriber_create
from whatsapp_saas.testing import run_together

pytestmark = pytest.mark.django_db

LOGIN_URL = reverse("accounts:login")
ADMIN_LOGIN_URL = reverse("admin:login")


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_LOCKOUT_MINUTES = 15


@pytest.fixture
def member():
    user = subscriber_create("lockout-member@example.com")
    login_attempts_clear(user.email)
    yield user
    login_attempts_clear(user.email)


def _log_in(client, email, password, url=LOGIN_URL):
    return client.post(url, {"username": email, "password": password})


def _fail(client, email, times, url=LOGIN_URL):
    for _attempt in range(times):
        _log_in(client, email, "wrong password", url)


def test_right_password_refused_after_limit(client, member):
    _fail(client, member.email, 3)

    response = _log_in(client, member.email, PASSWORD)

    assert response.status_code == 200
    assert "Too many failed log-ins" in response.content.decode()
    assert "in 15 minutes" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_failures_below_limit_still_log_in(client, member):
    _fail(client, member.email, 2)

    response = _log_in(client, member.email, PASSWORD)

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(member.pk)


def test_success_clears_failure_count(client, member):
    _fail(client, member.email, 2)
    _log_in(client, member.email, PASSWORD)
    client.logout()
    _fail(client, member.email, 2)

    response = _log_in(client, member.email, PASSWORD)

    assert response.status_code == 302


def test_lockout_counts_any_spelling_of_address(client, member):
    _fail(client, "Lockout-Member@Example.com", 3)

    response = _log_in(client, member.email, PASSWORD)

    assert "Too many failed log-ins" in response.content.decode()


def test_lockout_leaves_other_addresses_alone(client, member):
    other = subscriber_create("lockout-other@example.com")
    login_attempts_clear(other.email)
    _fail(client, member.email, 3)

    response = _log_in(client, other.email, PASSWORD)

    assert response.status_code == 302
    login_attempts_clear(other.email)


def test_lockout_ends_after_its_minutes(client, member, monkeypatch):
    _fail(client, member.email, 4)
    later = login_limits.time.time() + 15 * 60 + 1
    monkeypatch.setattr(login_limits.time, "time", lambda: later)

    response = _log_in(client, member.email, PASSWORD)

    assert response.status_code == 302


def test_admin_login_shares_lockout(client, member):
    member.is_staff = True
    member.save(update_fields=["is_staff"])
    _fail(client, member.email, 3, ADMIN_LOGIN_URL)

    response = _log_in(client, member.email, PASSWORD, ADMIN_LOGIN_URL)

    assert "Too many failed log-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_lockout_logs_user_id_without_address(client, member, caplog):
    _fail(client, member.email, 4)

    messages = [record.getMessage() for record in caplog.records]
    assert (
        f"Locked log-ins of user {member.pk} for 15 minutes after 3 failed attempts"
        in " ".join(messages)
    )
    assert member.email not in " ".join(messages)


def test_lockout_message_in_chinese(client, member):
    _fail(client, member.email, 3)

    response = client.post(
        LOGIN_URL,
        {"username": member.email, "password": PASSWORD},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    translation.activate("en")

    assert "登录失败次数过多" in response.content.decode()


def test_passwords_checked_only_up_to_limit(client, member, monkeypatch):
    checked = []

    def counting_authenticate(request=None, **credentials):
        checked.append(credentials["username"])
        return authenticate(request, **credentials)

    monkeypatch.setattr(auth_forms, "authenticate", counting_authenticate)

    _fail(client, member.email, 10)

    assert len(checked) == 3


def test_right_password_on_admin_is_no_failure(client, member):
    # A subscriber is not staff, so the admin refuses the right password.
    for _attempt in range(5):
        _log_in(client, member.email, PASSWORD, ADMIN_LOGIN_URL)

    response = _log_in(client, member.email, PASSWORD)

    assert response.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_parallel_guesses_checked_only_up_to_limit(member, monkeypatch):
    checked = []

    def counting_authenticate(request=None, **credentials):
        checked.append(credentials["username"])
        return authenticate(request, **credentials)

    monkeypatch.setattr(auth_forms, "authenticate", counting_authenticate)

    def guess():
        return _log_in(Client(), member.email, "wrong password").status_code

    statuses = run_together([guess] * 12)

    assert statuses == [200] * 12
    assert len(checked) == 3
