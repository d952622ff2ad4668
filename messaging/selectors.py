"""Tenant-scoped reads of customers and messages.

Every function takes the requesting user and returns only that user's rows;
an id that belongs to someone else reads as not found.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import (
    Count,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from sessions_wa.reasons import gateway_unreachable_message
from whatsapp_saas.exceptions import ApplicationError

from .models import Customer, DailySendCount, Message
from .phones import PHONE_SEPARATORS

logger = logging.getLogger(__name__)

CONNECTED_STATE = "connected"
RECONNECTING_STATE = "disconnected"
# Session states in which a send is accepted. A `disconnected` session
# reconnects by itself (a network drop, a gateway restart), so its messages
# wait in the queue. Every other state needs the subscriber to act first.
SENDABLE_STATES = frozenset({CONNECTED_STATE, RECONNECTING_STATE})
# Reasons `messaging.services.events` counts when it ignores an event.
IGNORED_REASONS = (
    "group",
    "broadcast",
    "newsletter",
    "other",
    "own_number",
    "receipt_for_inbound",
    "unknown_status",
    "unknown_change",
    "unknown_type",
    "no_customer",
)


def whatsapp_session_get(user):
    """Return the user's WhatsApp session, or None when there is none."""
    try:
        return user.whatsapp_session
    except (ObjectDoesNotExist, AttributeError):
        return None


def whatsapp_state(user) -> str:
    """Return the user's session state name; ``new`` without a session."""
    session = whatsapp_session_get(user)
    return getattr(session, "state", None) or "new"


def send_block_reason(*, user) -> tuple[str, str] | None:
    """Return (code, message) saying why `user` cannot send now, or None."""
    from accounts.services import subscription_inactive_message

    message = subscription_inactive_message(user)
    if message is not None:
        return "subscription_inactive", message
    if whatsapp_state(user) not in SENDABLE_STATES:
        return "session_not_connected", session_not_connected_message()
    return None


def send_notice(*, user) -> str | None:
    """Return a warning for a send that is accepted but will wait, or None."""
    session = whatsapp_session_get(user)
    unreachable_since = getattr(session, "gateway_unreachable_since", None)
    if unreachable_since is not None:
        return gateway_unreachable_message(unreachable_since)
    if whatsapp_state(user) == RECONNECTING_STATE:
        return _(
            "WhatsApp is reconnecting. Messages you send now wait in the queue "
            "and go out once it is connected again."
        )
    return send_pacing_notice(user=user)


def send_pacing_notice(*, user) -> str | None:
    """Return how long the user's queued messages wait for the send pacing.

    None while no more are queued than the pacing sends at once. The time
    is an estimate at the paced rate, as if the burst were used up. It
    leaves out the time each send itself takes.
    """
    waiting = Message.objects.filter(owner=user, status=Message.Status.QUEUED).count()
    burst = settings.WA_SEND_BURST
    if waiting <= burst:
        return None
    rate = settings.WA_SEND_RATE_PER_MINUTE
    minutes = max(1, math.ceil(waiting / rate))
    waiting_text = ngettext(
        "%(count)s message is waiting to be sent.",
        "%(count)s messages are waiting to be sent.",
        waiting,
    ) % {"count": waiting}
    pacing_text = ngettext(
        "To keep your number from being banned by WhatsApp, sending is paced "
        "at %(burst)s messages at once and then %(rate)s a minute, so the last "
        "one goes out within about %(minutes)s minute.",
        "To keep your number from being banned by WhatsApp, sending is paced "
        "at %(burst)s messages at once and then %(rate)s a minute, so the last "
        "one goes out within about %(minutes)s minutes.",
        minutes,
    ) % {"burst": burst, "rate": f"{rate:g}", "minutes": minutes}
    return f"{waiting_text} {pacing_text}"


def session_not_connected_message() -> str:
    return _(
        "Your WhatsApp is not connected, so messages cannot be sent. Open "
        "Settings and connect WhatsApp by scanning the QR code, then send again."
    )


def customer_list(*, user, search: str | None = None) -> QuerySet:
    """Return the user's customers with their last message and unread count.

    Annotates `last_message_at`, `last_message_body`, `last_message_kind`,
    `last_message_direction` and `unread_count` through subqueries, so the
    list is one query. Ordered by the latest message first.
    """
    latest = Message.objects.filter(customer=OuterRef("pk")).order_by(
        "-timestamp", "-id"
    )
    unread = (
        Message.objects.filter(customer=OuterRef("pk"), unread=True)
        .order_by()
        .values("customer")
        .annotate(total=Count("id"))
        .values("total")
    )
    queryset = Customer.objects.filter(owner=user).annotate(
        last_message_at=Subquery(latest.values("timestamp")[:1]),
        last_message_body=Subquery(latest.values("body")[:1]),
        last_message_kind=Subquery(latest.values("kind")[:1]),
        last_message_direction=Subquery(latest.values("direction")[:1]),
        unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), 0),
    )

    # PostgreSQL rejects NUL in a query parameter, and no stored text has one.
    term = (search or "").replace("\x00", "").strip()
    if term:
        condition = Q(name__icontains=term) | Q(push_name__icontains=term)
        digits = _phone_search_digits(term)
        if digits:
            condition |= Q(phone__contains=digits)
        queryset = queryset.filter(condition)

    return queryset.order_by(
        F("last_message_at").desc(nulls_last=True), "-created_at", "-id"
    )


# Characters of a typed phone number: ASCII digits, "+", spaces and the
# separators that phone_parse accepts between digit groups.
PHONE_SEARCH_CHARACTERS = frozenset("0123456789+ ") | PHONE_SEPARATORS


def _phone_search_digits(term: str) -> str | None:
    """Return the digits to look for in stored numbers, or None.

    Only a term of digits and phone punctuation reads as a number, so a
    name such as "Kunde 1" or "c0" matches names alone. A leading 00
    (international prefix) or 0 (national trunk prefix) is dropped, so
    "07911 200" and "0044 7911 200" find +447911200123. Any number that
    contains the full digits also contains them without that prefix.
    """
    if not set(term) <= PHONE_SEARCH_CHARACTERS:
        return None
    digits = "".join(char for char in term if char.isdigit())
    if not digits:
        return None
    if digits.startswith("00"):
        without_prefix = digits[2:]
    else:
        without_prefix = digits.removeprefix("0")
    return without_prefix or digits


def customer_get(*, user, code) -> Customer:
    """Return the user's customer with this code, annotated as in the list.

    Raises Http404 for an unknown code, a malformed one, or another user's
    customer alike.
    """
    try:
        code = uuid.UUID(str(code))
    except ValueError:
        raise Http404("No such customer.") from None
    customer = customer_list(user=user).filter(code=code).first()
    if customer is None:
        raise Http404("No such customer.")
    return customer


def conversation_messages(
    *, user, customer: Customer, before=None, limit: int = 50
) -> list[Message]:
    """Return up to `limit` messages of a conversation, oldest first.

    `before` is a message code: only messages older than that message are
    returned, for paging back through history. An unknown code is ignored.
    """
    queryset = Message.objects.filter(owner=user, customer=customer)
    anchor = None
    if before is not None:
        try:
            anchor = queryset.filter(code=uuid.UUID(str(before))).first()
        except ValueError:
            anchor = None
    if anchor is not None:
        queryset = queryset.filter(
            Q(timestamp__lt=anchor.timestamp)
            | Q(timestamp=anchor.timestamp, pk__lt=anchor.pk)
        )
    newest_first = list(queryset.order_by("-timestamp", "-id")[:limit])
    newest_first.reverse()
    return newest_first


def customer_not_found_error(value) -> ApplicationError:
    """Return the 404 for a customer id that names none of the user's customers."""
    return ApplicationError(
        _("No customer has the id %(id)s.") % {"id": value},
        code="not_found",
        extra={"field": "customer_id"},
        status_code=404,
    )


def message_get(*, user, code) -> Message:
    """Return the user's message with this code.

    Raises a 404 ApplicationError for an unknown code, a malformed one, or
    another user's message alike.
    """
    try:
        key = uuid.UUID(str(code))
    except ValueError:
        raise message_not_found_error(code) from None
    message = (
        Message.objects.filter(owner=user, code=key).select_related("customer").first()
    )
    if message is None:
        raise message_not_found_error(code)
    return message


def message_not_found_error(value) -> ApplicationError:
    """Return the 404 for a message id that names none of the user's messages."""
    return ApplicationError(
        _("No message has the id %(id)s; list your messages at /api/messages/.")
        % {"id": value},
        code="not_found",
        extra={"field": "id"},
        status_code=404,
    )


def message_list(
    *,
    user,
    customer_code=None,
    direction: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """Return the user's messages, newest first, filtered by the given values.

    Raises a 404 ApplicationError when `customer_code` names none of the
    user's customers (another user's included), as the customer and send
    APIs do, so that a wrong id does not read as a customer without
    messages. `since` is inclusive and `until` exclusive, both on the
    message's own time.
    """
    queryset = Message.objects.filter(owner=user).select_related("customer")
    if customer_code is not None:
        if not Customer.objects.filter(owner=user, code=customer_code).exists():
            raise customer_not_found_error(customer_code)
        queryset = queryset.filter(customer__code=customer_code)
    if direction:
        queryset = queryset.filter(direction=direction)
    if status:
        queryset = queryset.filter(status=status)
    if since is not None:
        queryset = queryset.filter(timestamp__gte=since)
    if until is not None:
        queryset = queryset.filter(timestamp__lt=until)
    return queryset.order_by("-timestamp", "-id")


@dataclass(frozen=True)
class QuotaUsage:
    """Messages counted toward today's quota, the limit, and the next reset."""

    used: int
    limit: int
    resets_at: datetime


def daily_quota_usage(*, user) -> QuotaUsage:
    """Return today's messages sent through the dashboard and the API.

    The day runs midnight to midnight in the server's TIME_ZONE, and every
    part of a split message counts as one message.
    """
    now = timezone.localtime()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    used = (
        DailySendCount.objects.filter(owner=user, day=now.date())
        .values_list("sent", flat=True)
        .first()
    )
    subscription = getattr(user, "subscription", None)
    limit = subscription.daily_message_quota if subscription is not None else 0
    return QuotaUsage(
        used=used or 0, limit=limit, resets_at=day_start + timedelta(days=1)
    )


def ignored_event_counts(*, user) -> dict[str, int]:
    """Return today's counts of ignored WhatsApp events by reason."""
    from .services.events import ignored_counter_key

    day = timezone.now().date().isoformat()
    keys = {
        ignored_counter_key(user.pk, reason, day): reason for reason in IGNORED_REASONS
    }
    try:
        values = cache.get_many(list(keys))
    except Exception:  # noqa: BLE001 - the counts are optional on the page
        logger.warning("Could not read ignored-event counts from the cache")
        return {}
    return {keys[key]: int(count) for key, count in values.items() if count}


def dashboard_summary(*, user) -> dict:
    """Return what the dashboard shows: session, counts and conversations."""
    session = whatsapp_session_get(user)
    customers = customer_list(user=user)
    unread_total = Message.objects.filter(owner=user, unread=True).count()
    return {
        "session": session,
        "state": whatsapp_state(user),
        "customer_count": customers.count(),
        "unread_total": unread_total,
        "recent": list(customers.filter(last_message_at__isnull=False)[:10]),
        "quota": daily_quota_usage(user=user),
        "ignored": ignored_event_counts(user=user),
        "block_reason": send_block_reason(user=user),
        "send_notice": send_notice(user=user),
    }


def message_list_stuck(
    *, updated_before: datetime, draining_owners=(), limit: int = 500
) -> QuerySet:
    """Return unsent messages of every user untouched since `updated_before`.

    Yields (id, status) pairs, oldest first. Queued first attempts of the
    users in `draining_owners` are left out: their shard's drain sends them
    (see `messaging.services.send_queue`). Only the requeue task uses this
    read across all users.
    """
    stuck = Message.objects.filter(
        status__in=[Message.Status.QUEUED, Message.Status.SENDING],
        updated_at__lt=updated_before,
    )
    if draining_owners:
        stuck = stuck.exclude(
            message_first_attempts_q(), owner_id__in=list(draining_owners)
        )
    return stuck.order_by("pk").values_list("pk", "status")[:limit]


def message_owners_first_attempts(*, updated_before: datetime, limit: int = 1000):
    """Return ids of users with queued first attempts untouched since then."""
    return (
        Message.objects.filter(
            message_first_attempts_q(), updated_at__lt=updated_before
        )
        .order_by()
        .values_list("owner_id", flat=True)
        .distinct()[:limit]
    )


def message_first_attempts_q() -> Q:
    """Queued messages that no send has claimed yet (no ``send_to``)."""
    return Q(status=Message.Status.QUEUED) & ~Q(metadata__has_key="send_to")
