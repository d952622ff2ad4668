"""Writes and business rules for subscribers, subscriptions and API tokens."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework.authtoken.models import Token

from whatsapp_saas.exceptions import ApplicationError

from .countries import REGION_CODES
from .models import Subscription, User

logger = logging.getLogger(__name__)

TRIAL_DAYS = 14

# 403 rather than 402: RFC 9110 reserves 402 without defining its meaning, so
# clients have no standard handling for it, while 403 is the usual "you are
# authenticated but not allowed to do this now". The stable `code` names
# the cause for clients.
SUBSCRIPTION_INACTIVE_STATUS = 403

EMAIL_TAKEN = gettext_lazy(
    "An account with this email address already exists. Log in, or reset the "
    "password if you forgot it."
)


def user_signup(*, email: str, password: str, default_country: str) -> User:
    """Create a subscriber with a trial subscription that ends in 14 days."""
    country = _country_validate(default_country)
    trial_end = timezone.now() + timedelta(days=TRIAL_DAYS)

    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email=email, password=password, default_country=country
            )
            subscription_trial_start(user=user, ends_at=trial_end)
    except IntegrityError:
        # Two sign-ups with one address at once, such as a double submit:
        # the form's check passed for both, and the unique email stops one.
        if not User.objects.filter(email__iexact=email).exists():
            raise
        raise ApplicationError(
            str(EMAIL_TAKEN),
            code="email_taken",
            extra={"field": "email"},
            status_code=409,
        ) from None

    logger.info("Signed up user %s with a trial until %s", user.id, trial_end)
    return user


def subscription_trial_start(*, user: User, ends_at=None) -> Subscription:
    """Give `user` the starter plan's trial, ending after TRIAL_DAYS by default."""
    if ends_at is None:
        ends_at = timezone.now() + timedelta(days=TRIAL_DAYS)
    return Subscription.objects.create(
        user=user,
        plan=Subscription.Plan.STARTER,
        status=Subscription.Status.TRIALING,
        current_period_end=ends_at,
        daily_message_quota=Subscription.DEFAULT_DAILY_QUOTAS[
            Subscription.Plan.STARTER
        ],
    )


def user_default_country_set(*, user: User, default_country: str) -> User:
    """Set the region used to read phone numbers typed without a country code."""
    user.default_country = _country_validate(default_country)
    user.save(update_fields=["default_country"])
    return user


def _country_validate(value: str) -> str:
    region = (value or "").strip().upper()
    if region not in REGION_CODES:
        raise ApplicationError(
            _(
                "“%(value)s” is not a supported country code; choose a "
                "two-letter region such as BR, AR or GB."
            )
            % {"value": value},
            code="invalid_country",
            extra={"field": "default_country"},
        )
    return region


def subscription_inactive_message(user: User) -> str | None:
    """Return why `user` may not use WhatsApp now and what to do, or None."""
    subscription = getattr(user, "subscription", None)
    if subscription is None:
        return _(
            "Your account has no subscription, so WhatsApp is not available. "
            "Choose a plan to connect WhatsApp."
        )

    status = subscription.status
    if status == Subscription.Status.PAST_DUE:
        return _(
            "Your last payment did not go through, so WhatsApp is paused. "
            "Update your payment details to continue."
        )
    if status == Subscription.Status.CANCELED:
        return _(
            "Your subscription is canceled, so WhatsApp is not available. "
            "Subscribe again to reconnect WhatsApp."
        )

    end = subscription.current_period_end
    if end is not None and end < timezone.now():
        values = {"date": date_format(timezone.localtime(end), "DATE_FORMAT")}
        if status == Subscription.Status.TRIALING:
            return (
                _(
                    "Your free trial ended on %(date)s, so WhatsApp is paused. "
                    "Choose a plan to continue."
                )
                % values
            )
        return (
            _(
                "Your subscription period ended on %(date)s, so WhatsApp is "
                "paused. Renew your subscription to continue."
            )
            % values
        )

    if not subscription.allows_whatsapp:
        return _(
            "Your subscription does not allow WhatsApp right now. "
            "Check your plan to continue."
        )
    return None


def subscription_require_active(user: User) -> Subscription:
    """Raise ApplicationError unless `user` may start a session or send.

    The error has code ``subscription_inactive`` and status 403, and its
    message states the reason and the next step.
    """
    message = subscription_inactive_message(user)
    if message is not None:
        raise ApplicationError(
            message,
            code="subscription_inactive",
            status_code=SUBSCRIPTION_INACTIVE_STATUS,
        )
    return user.subscription


def api_token_rotate(*, user: User, replacing: str | None = None) -> Token:
    """Replace the user's API token with a new one; the old one stops working.

    The user's row is locked first, so that concurrent rotations (a double
    click) run one after the other and each replaces the token before it.
    Without the lock, both created a token and one failed the constraint
    of one token per user. `replacing` is the key of the token the request
    authenticated with, if any: when another rotation has replaced it
    meanwhile, this one raises ApplicationError (409) and changes nothing,
    so that only one caller has the token that works.
    """
    with transaction.atomic():
        locked = User.objects.select_for_update(no_key=True).filter(pk=user.pk)
        list(locked.values_list("pk", flat=True))
        if (
            replacing is not None
            and not Token.objects.filter(user=user, key=replacing).exists()
        ):
            logger.info(
                "Token rotation of user %s lost to a rotation that finished first",
                user.id,
            )
            raise ApplicationError(
                _(
                    "The token this request used was replaced by another "
                    "rotation that finished first, so nothing changed; use the "
                    "token that rotation returned."
                ),
                code="token_already_rotated",
                status_code=409,
            )
        Token.objects.filter(user=user).delete()
        token = Token.objects.create(user=user)

    logger.info("Rotated the API token of user %s", user.id)
    return token


def demo_subscriber_ensure(
    *, email: str, password: str | None = None
) -> tuple[User, str | None]:
    """Create the demo subscriber once, with an active subscription.

    Returns the user and the password set on creation. The password is None
    when the user already existed, because this function never changes an
    existing password.
    """
    email = User.objects.normalize_email(email).lower()

    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        created_password = None
        if user is None:
            created_password = password or secrets.token_urlsafe(12)
            user = User.objects.create_user(email=email, password=created_password)
            logger.info("Created the demo subscriber %s", user.id)

        Subscription.objects.update_or_create(
            user=user,
            defaults={
                "status": Subscription.Status.ACTIVE,
                "current_period_end": None,
            },
        )

    return user, created_password
