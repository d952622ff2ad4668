"""Send pacing: a token bucket per WhatsApp session."""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings as django_settings

from messaging.ratelimit import (
    bucket_key,
    send_bucket_reset,
    send_slot_take,
    send_slots_take_many,
)


@pytest.fixture
def in_process(settings):
    settings.REDIS_URL = ""


def _take_until_allowed(user_id: int, deadline_seconds: float = 5.0) -> float:
    """Poll the bucket until a slot frees up; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_seconds:
        if send_slot_take(user_id) == 0:
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError("no send slot freed up before the deadline")


def test_local_bucket_allows_burst_then_waits(in_process, settings):
    settings.WA_SEND_BURST = 3
    settings.WA_SEND_RATE_PER_MINUTE = 6
    send_bucket_reset(101)

    allowed = [send_slot_take(101) for _ in range(3)]
    wait = send_slot_take(101)

    assert allowed == [0, 0, 0]
    assert 9 <= wait <= 10


def test_local_bucket_refills_at_rate(in_process, settings):
    settings.WA_SEND_BURST = 1
    settings.WA_SEND_RATE_PER_MINUTE = 6000  # one slot every 10 ms
    send_bucket_reset(102)
    send_slot_take(102)

    assert _take_until_allowed(102) < 1.0


def test_local_buckets_are_per_user(in_process, settings):
    settings.WA_SEND_BURST = 1
    settings.WA_SEND_RATE_PER_MINUTE = 1
    send_bucket_reset(103)
    send_bucket_reset(104)
    send_slot_take(103)

    assert send_slot_take(104) == 0


@pytest.mark.redis
def test_redis_bucket_allows_burst_then_waits(settings):
    settings.WA_SEND_BURST = 3
    settings.WA_SEND_RATE_PER_MINUTE = 6
    send_bucket_reset(201)

    allowed = [send_slot_take(201) for _ in range(3)]
    wait = send_slot_take(201)

    assert allowed == [0, 0, 0]
    assert 9 <= wait <= 10


@pytest.mark.redis
def test_redis_bucket_refills_at_rate(settings):
    settings.WA_SEND_BURST = 1
    settings.WA_SEND_RATE_PER_MINUTE = 6000
    send_bucket_reset(202)
    send_slot_take(202)

    assert _take_until_allowed(202) < 1.0


@pytest.mark.redis
def test_redis_bucket_is_shared_by_every_client(settings):
    settings.WA_SEND_BURST = 2
    settings.WA_SEND_RATE_PER_MINUTE = 1
    send_bucket_reset(203)
    send_slot_take(203)
    other_worker = redis.Redis.from_url(django_settings.REDIS_URL)

    tokens = float(other_worker.hget(bucket_key(203), "tokens"))

    assert 0.99 <= tokens < 1.01


@pytest.mark.redis
def test_redis_bucket_key_expires(settings):
    settings.WA_SEND_BURST = 1
    settings.WA_SEND_RATE_PER_MINUTE = 60
    send_bucket_reset(204)
    send_slot_take(204)
    client = redis.Redis.from_url(django_settings.REDIS_URL)

    assert 0 < client.pttl(bucket_key(204)) <= 2000


@pytest.mark.redis
def test_redis_failure_lets_the_message_go(settings):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"

    assert send_slot_take(205) == 0


@pytest.mark.redis
def test_redis_take_many_grants_each_user_own_bucket(settings):
    settings.WA_SEND_BURST = 2
    settings.WA_SEND_RATE_PER_MINUTE = 6
    send_bucket_reset(211)
    send_bucket_reset(212)
    send_slot_take(211)

    slots = send_slots_take_many({211: 3, 212: 2})

    assert slots[211][0] == 1
    assert slots[212] == (2, 0.0)


@pytest.mark.parametrize(
    ("redis_url", "user_id"),
    [
        pytest.param(None, 213, marks=pytest.mark.redis, id="redis"),
        pytest.param("", 113, id="in-process"),
    ],
)
def test_take_many_returns_wait_of_partial_grant(settings, redis_url, user_id):
    if redis_url is not None:
        settings.REDIS_URL = redis_url
    settings.WA_SEND_BURST = 2
    settings.WA_SEND_RATE_PER_MINUTE = 6
    send_bucket_reset(user_id)

    granted, wait = send_slots_take_many({user_id: 5})[user_id]

    assert granted == 2
    assert 9 <= wait <= 10
