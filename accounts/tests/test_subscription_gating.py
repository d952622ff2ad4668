from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Subscription, User
from accounts.services import subscription_require_active
from accounts.tests.factories import subscriber_create
from whatsapp_saas.exceptions import ApplicationError

pytestmark = pytest.mark.django_db


def gating_error(user) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        subscription_require_active(user)
    return caught.value


def test_trialing_subscription_is_active():
    user = subscriber_create("trial@example.com", status=Subscription.Status.TRIALING)

    assert subscription_require_active(user) == user.subscription


def test_active_subscription_without_end_is_active():
    user = subscriber_create(
        "active@example.com", status=Subscription.Status.ACTIVE, period_days=None
    )

    assert subscription_require_active(user) == user.subscription


def test_past_due_subscription_is_rejected_with_reason():
    user = subscriber_create("late@example.com", status=Subscription.Status.PAST_DUE)

    error = gating_error(user)

    assert error.code == "subscription_inactive"
    assert error.status_code == 403
    assert "payment did not go through" in error.message
    assert "Update your payment details" in error.message


def test_canceled_subscription_is_rejected_with_reason():
    user = subscriber_create("gone@example.com", status=Subscription.Status.CANCELED)

    error = gating_error(user)

    assert error.code == "subscription_inactive"
    assert "canceled" in error.message


def test_ended_trial_is_rejected_with_end_date():
    user = subscriber_create("ended@example.com", period_days=-2)
    end = timezone.now() - timedelta(days=2)

    error = gating_error(user)

    assert "free trial ended" in error.message
    assert str(end.year) in error.message


def test_ended_active_period_is_rejected():
    user = subscriber_create(
        "lapsed@example.com", status=Subscription.Status.ACTIVE, period_days=-1
    )

    error = gating_error(user)

    assert "subscription period ended" in error.message


def test_user_without_subscription_is_rejected():
    user = User.objects.create_user(email="bare@example.com", password="x")

    error = gating_error(user)

    assert "no subscription" in error.message


def test_pages_show_the_inactive_subscription_message(client):
    user = subscriber_create("late@example.com", status=Subscription.Status.PAST_DUE)
    client.force_login(user)

    response = client.get("/settings/")

    assert "payment did not go through" in response.content.decode()


def test_pages_show_no_notice_for_active_subscription(client):
    user = subscriber_create("trial@example.com")
    client.force_login(user)

    response = client.get("/settings/")

    assert "notice-warning" not in response.content.decode()
