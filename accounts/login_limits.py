"""Log-in attempts per email address, and the lockout they lead to.

Every log-in attempt of an address is counted before its password is
checked. Once LOGIN_FAILURE_LIMIT attempts in a row have failed, the
address is locked out for LOGIN_LOCKOUT_MINUTES, even with the right
password, so that a password cannot be guessed by trying many. Because
the count comes first, many requests at once do not help either: only the
first LOGIN_FAILURE_LIMIT of them get their password checked. A count
lapses LOGIN_LOCKOUT_MINUTES after the last attempt, and a successful
log-in clears it. The counts live in Django's cache (Redis in
production), keyed by a hash of the address.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache

from .models import User, email_normalize

logger = logging.getLogger(__name__)

_KEY_PREFIX = "accounts:login:"


def _keys(email: str) -> tuple[str, str]:
    digest = hashlib.sha256(email_normalize(email).encode()).hexdigest()
    return f"{_KEY_PREFIX}attempts:{digest}", f"{_KEY_PREFIX}locked:{digest}"


def _minutes_left(until) -> int:
    seconds = until - time.time() if until is not None else 0
    return math.ceil(seconds / 60) if seconds > 0 else 0


def login_attempt_begin(email: str) -> int:
    """Count a log-in attempt; return the lockout's minutes left, 0 to go on.

    The count goes up before the password is checked, so that parallel
    attempts cannot all pass the limit before any of them is counted.
    """
    attempts, locked = _keys(email)
    minutes = _minutes_left(cache.get(locked))
    if minutes:
        return minutes

    window = settings.LOGIN_LOCKOUT_MINUTES * 60
    cache.add(attempts, 0, timeout=window)
    try:
        count = cache.incr(attempts)
    except ValueError:
        # The count lapsed or was cleared between add() and incr().
        cache.set(attempts, 1, timeout=window)
        count = 1
    if count <= settings.LOGIN_FAILURE_LIMIT:
        # A count that a clear raced with can be left without an expiry, so
        # each attempt sets it again. Attempts over the limit do not, so the
        # count lapses no later than the lockout.
        cache.touch(attempts, window)
        return 0

    # The count stays until it lapses: cleared here, it would let the
    # attempts still in flight start again from zero.
    if cache.add(locked, time.time() + window, timeout=window):
        user_id = (
            User.objects.filter(email__iexact=email_normalize(email))
            .values_list("pk", flat=True)
            .first()
        )
        logger.warning(
            "Locked log-ins of user %s for %s minutes after %s failed attempts",
            user_id if user_id is not None else "(no such account)",
            settings.LOGIN_LOCKOUT_MINUTES,
            count - 1,
        )
    return _minutes_left(cache.get(locked))


def login_attempts_clear(email: str) -> None:
    """Forget the address's attempts and lockout, after a successful log-in."""
    cache.delete_many(list(_keys(email)))
