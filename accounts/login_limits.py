"""Failed log-in counts per email address, and the lockout they lead to.

After LOGIN_FAILURE_LIMIT failed log-ins for one address within
LOGIN_LOCKOUT_MINUTES, that address cannot log in for LOGIN_LOCKOUT_MINUTES,
even with the right password, so that a password cannot be guessed by
trying many. The counts live in Django's cache (Redis in production), keyed
by a hash of the address, and a successful log-in clears them.
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
    return f"{_KEY_PREFIX}failures:{digest}", f"{_KEY_PREFIX}locked:{digest}"


def login_lockout_minutes_left(email: str) -> int:
    """Return the whole minutes left of the address's lockout, 0 when none."""
    _failures, locked = _keys(email)
    until = cache.get(locked)
    if until is None:
        return 0
    seconds = until - time.time()
    return math.ceil(seconds / 60) if seconds > 0 else 0


def login_failure_record(email: str) -> None:
    """Count a failed log-in; lock the address once the limit is reached."""
    failures, locked = _keys(email)
    window = settings.LOGIN_LOCKOUT_MINUTES * 60
    cache.add(failures, 0, timeout=window)
    try:
        count = cache.incr(failures)
    except ValueError:
        # The count expired between add() and incr().
        cache.set(failures, 1, timeout=window)
        count = 1
    if count < settings.LOGIN_FAILURE_LIMIT:
        return
    cache.set(locked, time.time() + window, timeout=window)
    cache.delete(failures)
    user_id = (
        User.objects.filter(email__iexact=email_normalize(email))
        .values_list("pk", flat=True)
        .first()
    )
    logger.warning(
        "Locked log-ins of user %s for %s minutes after %s failed attempts",
        user_id if user_id is not None else "(no such account)",
        settings.LOGIN_LOCKOUT_MINUTES,
        count,
    )


def login_failures_clear(email: str) -> None:
    """Forget the address's failed log-ins and lockout."""
    cache.delete_many(list(_keys(email)))
