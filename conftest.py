"""Test-wide rules for tests that need real services.

Tests marked `postgres`, `redis` or `processes` skip with a visible reason on
a bare machine, and fail instead of skipping when CI=true, so CI can never
pass by silently falling back to SQLite or eager tasks.
"""

from __future__ import annotations

import os
import shutil
from functools import cache

import pytest
from django.conf import settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@cache
def _redis_available() -> bool:
    if not settings.REDIS_URL:
        return False
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError:
        return False
    return True


def _postgres_configured() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _missing_service(item) -> str | None:
    if item.get_closest_marker("postgres") or item.get_closest_marker("processes"):
        if not _postgres_configured():
            return "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/NAME"
    if item.get_closest_marker("redis") or item.get_closest_marker("processes"):
        if not _redis_available():
            return (
                "needs a reachable Redis: set REDIS_URL=redis://127.0.0.1:6379/1 "
                "(a database number nothing else uses)"
            )
    if item.get_closest_marker("processes") and not shutil.which("node"):
        return "needs node on PATH to start the gateway"
    return None


def pytest_runtest_setup(item):
    reason = _missing_service(item)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but this test {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def send_drains_idle(settings):
    """Start each test with no send drain marked as queued in Redis.

    The mark is a Redis key per drain shard, picked by user id, and ids
    repeat between tests. Marks of subscribers slow to send go too, and so
    does what this process remembers of drains it saw running.

    Drains that tests run in this process give their key up without the
    WA_SEND_DRAIN_SEEN_MS wait, because it would only slow them down. Tests
    of that window set it, and worker processes that tests start keep the
    default.
    """
    from messaging.services.send_queue import drain_seen_forget

    settings.WA_SEND_DRAIN_SEEN_MS = 0
    drain_seen_forget()
    if _redis_available():
        import redis

        from messaging.services.send_queue import DRAIN_KEY_PREFIX, SLOW_OWNERS_KEY

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match=f"{DRAIN_KEY_PREFIX}*", count=1000))
        client.delete(SLOW_OWNERS_KEY, *keys)
    yield


@pytest.fixture
def admin_client(db, client):
    """A test client logged in as a Django admin superuser."""
    from accounts.models import User

    admin = User.objects.create_superuser(email="admin@example.com", password="x")
    client.force_login(admin)
    return client
