from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Subscription, User

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("ensure_demo_subscriber", *args, stdout=out)
    return out.getvalue()


def printed_password(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("Password"))
    return line.rsplit(" ", 1)[1]


def test_command_creates_demo_user_with_active_subscription():
    run()

    user = User.objects.get(email="demo@example.com")
    assert user.subscription.status == Subscription.Status.ACTIVE
    assert user.subscription.allows_whatsapp


def test_command_prints_random_password_that_works():
    output = run()

    user = User.objects.get(email="demo@example.com")
    assert user.check_password(printed_password(output))


def test_command_second_run_keeps_password_and_prints_none():
    first = run()
    password = printed_password(first)

    second = run()

    assert password not in second
    assert "manage.py changepassword demo@example.com" in second
    assert User.objects.get(email="demo@example.com").check_password(password)


def test_command_second_run_creates_no_second_user():
    run()
    run()

    assert User.objects.filter(email="demo@example.com").count() == 1


def test_command_reactivates_canceled_demo_subscription():
    run()
    Subscription.objects.update(status=Subscription.Status.CANCELED)

    run()

    assert Subscription.objects.get().status == Subscription.Status.ACTIVE


def test_command_accepts_email_and_password_options():
    output = run("--email", "Shop@Example.com", "--password", "given-secret-77")

    user = User.objects.get(email="shop@example.com")
    assert user.check_password("given-secret-77")
    assert "given-secret-77" not in output


def test_command_rejects_invalid_email():
    with pytest.raises(CommandError, match="'not an email' is not an email address"):
        run("--email", "not an email")

    assert not User.objects.exists()


def test_command_rejects_weak_password():
    expected = "--password is rejected: This password is too short"

    with pytest.raises(CommandError, match=expected):
        run("--email", "weak@example.com", "--password", "x")

    assert not User.objects.exists()
