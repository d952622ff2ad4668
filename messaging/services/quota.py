"""Give daily quota back for message parts that never reached WhatsApp.

`message_send` counts every part of a send against the quota of the day of
its `timestamp` when it stores it (`quota_take` and the one-part statement
in `sending`). A part that fails or is deleted before the gateway had it
goes back to the count of that day.
"""

from __future__ import annotations

import logging
from collections import Counter

from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from messaging.models import DailySendCount, Message

logger = logging.getLogger(__name__)

# Sources of the messages that `message_send` stores. Each of their parts
# counts against the day's quota.
COUNTED_SOURCES = frozenset({Message.Source.API, Message.Source.DASHBOARD})


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
