"""Pacing of outbound messages per WhatsApp session: a token bucket.

Each session may send `WA_SEND_BURST` messages at once and then
`WA_SEND_RATE_PER_MINUTE` a minute. Sending faster than a person could type
is a common reason for WhatsApp to ban a number, so the defaults are low.

With Redis the bucket lives in Redis and one Lua script reads, refills and
takes a token atomically, using the Redis server's clock, so every worker
shares one bucket per session. Without Redis (the embedded mode, one
process) the bucket lives in this process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from functools import cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# KEYS: one bucket hash per user. ARGV[1]: tokens per millisecond,
# ARGV[2]: burst, ARGV[2 + i]: the tokens requested from KEYS[i]. Returns
# {granted, wait} for each key in turn: the tokens granted (at most the
# request, as many as are whole in the bucket) and, when fewer than
# requested, the milliseconds until the next one is free.
TOKEN_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local result = {}
for index, key in ipairs(KEYS) do
  local requested = tonumber(ARGV[index + 2])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = burst
    at = now
  end
  if now > at then
    tokens = math.min(burst, tokens + (now - at) * rate)
    at = now
  end
  local granted = math.max(0, math.min(requested, math.floor(tokens)))
  tokens = tokens - granted
  local wait = 0
  if granted < requested then
    wait = math.ceil((1 - tokens) / rate)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', tostring(at))
  redis.call('PEXPIRE', key, math.ceil(burst / rate) + 1000)
  table.insert(result, granted)
  table.insert(result, wait)
end
return result
"""


def bucket_key(user_id: int) -> str:
    return f"messaging:send-bucket:user_{user_id}"


def _limits() -> tuple[float, float]:
    """Return (tokens per millisecond, burst) from the settings."""
    per_minute = max(float(settings.WA_SEND_RATE_PER_MINUTE), 0.001)
    burst = max(float(settings.WA_SEND_BURST), 1.0)
    return per_minute / 60_000, burst


@cache
def _redis_script(url: str):
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return client, client.register_script(TOKEN_BUCKET_SCRIPT)


class _LocalBuckets:
    """Token buckets for one process, used when there is no Redis."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(
        self, key: str, rate: float, burst: float, requested: int
    ) -> tuple[int, int]:
        now = time.monotonic() * 1000
        with self._lock:
            tokens, at = self._state.get(key, (burst, now))
            if now > at:
                tokens = min(burst, tokens + (now - at) * rate)
                at = now
            granted = max(0, min(requested, math.floor(tokens)))
            tokens -= granted
            wait = 0
            if granted < requested:
                wait = math.ceil((1 - tokens) / rate)
            self._state[key] = (tokens, at)
        return granted, wait

    def reset(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)


_local_buckets = _LocalBuckets()


def send_slot_take(user_id: int) -> float:
    """Take one send slot for a user's session.

    Returns 0 when the message may go now, else the seconds to wait before
    asking again.
    """
    _granted, wait = send_slots_take_many({user_id: 1})[user_id]
    return wait


def send_slots_take_many(requests: dict[int, int]) -> dict[int, tuple[int, float]]:
    """Take send slots for several users' sessions in one Redis call.

    `requests` maps a user id to the slots requested. Returns, per user id,
    (slots granted, seconds to wait): the wait is 0 when every slot was
    granted, else the time until the next one frees up. When Redis fails
    every slot is granted (and a warning is logged), because the broker
    shares that Redis and is failing too.
    """
    if not requests:
        return {}
    rate, burst = _limits()
    if not settings.REDIS_URL:
        slots = {}
        for user_id, requested in requests.items():
            granted, wait_ms = _local_buckets.take(
                bucket_key(user_id), rate, burst, requested
            )
            slots[user_id] = (granted, wait_ms / 1000)
        return slots

    _client, script = _redis_script(settings.REDIS_URL)
    user_ids = list(requests)
    try:
        reply = script(
            keys=[bucket_key(user_id) for user_id in user_ids],
            args=[
                repr(rate),
                repr(burst),
                *(requests[user_id] for user_id in user_ids),
            ],
        )
    except redis.RedisError as error:
        logger.warning(
            "Send pacing skipped for users %s: Redis failed (%s)",
            ", ".join(map(str, user_ids)),
            error.__class__.__name__,
        )
        return {user_id: (requested, 0.0) for user_id, requested in requests.items()}
    return {
        user_id: (int(reply[2 * index]), int(reply[2 * index + 1]) / 1000)
        for index, user_id in enumerate(user_ids)
    }


def send_bucket_reset(user_id: int) -> None:
    """Refill a user's bucket, e.g. after the limits were changed."""
    key = bucket_key(user_id)
    _local_buckets.reset(key)
    if settings.REDIS_URL:
        client, _script = _redis_script(settings.REDIS_URL)
        client.delete(key)
