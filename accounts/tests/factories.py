"""Subscribers for tests: a user with a subscription in a chosen state."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts.models import Subscription, User

PASSWORD = "correct-horse-battery-9"


def subscriber_create(
    email: str,
    *,
    status: str = Subscription.Status.TRIALING,
    plan: str = Subscription.Plan.STARTER,
    period_days: int | None = 14,
    default_country: str = "BR",
) -> User:
    """Create a user whose subscription has `status` and ends in `period_days`."""
    user = User.objects.create_user(
        email=email, password=PASSWORD, default_country=default_country
    )
    period_end = None
    if period_days is not None:
        period_end = timezone.now() + timedelta(days=period_days)
    Subscription.objects.create(
        user=user, status=status, plan=plan, current_period_end=period_end
    )
    return user
