"""The daily send quota: count sends against it, and give parts back.

`message_send` counts every part of a send against the quota of the day of
its `timestamp` when it stores it (`quota_take`, or the one-part statement
in `sending`). A part that fails or is deleted before the gateway had it
goes back to the count of that day (`quota_refund`).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.db import connection
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from messaging.models import DailySendCount, Message
from whatsapp_saas.exceptions import ApplicationError

logger = logging.getLogger(__name__)

# Sources of the messages that `message_send` stores. Each of their parts
# counts against the day's quota.
COUNTED_SOURCES = frozenset({Message.Source.API, Message.Source.DASHBOARD})


def quota_take(user, parts: int, *, now=None) -> None:
    """Count `parts` messages against the quota of the day of `now`.

    Adds to that day's DailySendCount row in one upsert, which holds that
    row locked until the transaction ends, so concurrent sends of one user
    are counted one after the other. Call it inside the send's transaction:
    an error raised here or later in the transaction undoes the count.
    Raises ApplicationError ``daily_quota_exceeded`` (429) past the quota.
    `now` defaults to the current time. The messages take it as their
    `timestamp`, by which a refund finds the day.
    """
    now = timezone.localtime(now)
    sent = daily_count_add(user.pk, now.date(), parts)
    limit = daily_limit(user)
    if sent > limit:
        raise quota_exceeded_error(limit=limit, used=sent - parts, parts=parts, now=now)


def daily_limit(user) -> int:
    """Return how many parts the user's plan may send a day (0 without a plan)."""
    subscription = getattr(user, "subscription", None)
    return subscription.daily_message_quota if subscription is not None else 0


def quota_exceeded_error(*, limit: int, used: int, parts: int, now) -> ApplicationError:
    """Return the 429 for a send of `parts` when `used` of `limit` are gone."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    resets_at = day_start + timedelta(days=1)
    return ApplicationError(
        _(
            "This message needs more of today's message quota than is left "
            "(daily limit: %(limit)s, sent today: %(used)s, parts in this "
            "message: %(parts)s), so nothing was sent. The quota resets at "
            "%(time)s."
        )
        % {
            "limit": limit,
            "used": used,
            "parts": parts,
            "time": date_format(resets_at, "DATETIME_FORMAT") + f" {resets_at:%Z}",
        },
        code="daily_quota_exceeded",
        extra={
            "limit": limit,
            "used": used,
            "requested": parts,
            "resets_at": resets_at.isoformat(),
        },
        status_code=429,
    )


def daily_count_add(owner_id: int, day, parts: int) -> int:
    """Add `parts` to the owner's count for `day` and return the new count."""
    quote = connection.ops.quote_name
    table = quote(DailySendCount._meta.db_table)
    sent = quote("sent")
    # PostgreSQL and SQLite (3.35+) both run this upsert.
    sql = (
        f"INSERT INTO {table} ({quote('owner_id')}, {quote('day')}, {sent}) "
        f"VALUES (%s, %s, %s) "
        f"ON CONFLICT ({quote('owner_id')}, {quote('day')}) "
        f"DO UPDATE SET {sent} = {table}.{sent} + EXCLUDED.{sent} "
        f"RETURNING {sent}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [owner_id, day, parts])
        return cursor.fetchone()[0]


def quota_refund(owner_id: int, timestamps) -> None:
    """Give back one part of the owner's quota per message timestamp given.

    Each part goes back to the count of the day of its message's
    `timestamp`, the day it was counted on. A count never goes below 0.
    """
    parts_by_day = Counter(timezone.localtime(time).date() for time in timestamps)
    for day, parts in sorted(parts_by_day.items()):
        refunded = DailySendCount.objects.filter(owner_id=owner_id, day=day).update(
            sent=Greatest(F("sent") - parts, 0)
        )
        if refunded:
            logger.info(
                "Gave back quota for unsent message parts of user %s on %s: %s",
                owner_id,
                day,
                parts,
            )
