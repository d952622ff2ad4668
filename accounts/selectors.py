"""Reads scoped to the requesting subscriber."""

from __future__ import annotations

from rest_framework.authtoken.models import Token

from .models import Subscription, User


def subscription_get_for_user(*, user: User) -> Subscription | None:
    """Return the user's subscription, or None when the account has none."""
    return Subscription.objects.filter(user=user).first()


def api_token_get_for_user(*, user: User) -> Token | None:
    """Return the user's API token row, or None when none was created."""
    return Token.objects.filter(user=user).first()
