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

# KEYS[1]: the bucket hash. ARGV[1]: tokens per millisecond, ARGV[2]: burst,
# ARGV[3]: the tokens requested. Returns {granted, wait}: the tokens granted
# (at most ARGV[3], as many as are whole in the bucket) and, when none
# were, the milliseconds until one is free.
TOKEN_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
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
local granted = math.min(requested, math.floor(tokens))
local wait = 0
if granted >= 1 then
  tokens = tokens - granted
else
  granted = 0
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {granted, wait}
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
            granted = min(requested, math.floor(tokens))
            wait = 0
            if granted >= 1:
                tokens -= granted
            else:
                granted = 0
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
    _granted, wait = send_slots_take(user_id, 1)
    return wait


def send_slots_take(user_id: int, requested: int) -> tuple[int, float]:
    """Take up to `requested` send slots for a user's session at once.

    Returns (slots granted, seconds to wait). The wait is 0 unless no slot
    was free, and then it is the time until one frees up. When Redis fails
    every slot is granted (and a warning is logged), because the broker
    shares that Redis and is failing too.
    """
    rate, burst = _limits()
    key = bucket_key(user_id)
    if not settings.REDIS_URL:
        granted, wait_ms = _local_buckets.take(key, rate, burst, requested)
        return granted, wait_ms / 1000

    _client, script = _redis_script(settings.REDIS_URL)
    try:
        granted, wait_ms = script(keys=[key], args=[repr(rate), repr(burst), requested])
    except redis.RedisError as error:
        logger.warning(
            "Send pacing skipped for user %s: Redis failed (%s)",
            user_id,
            error.__class__.__name__,
        )
        return requested, 0.0
    return int(granted), int(wait_ms) / 1000


def send_bucket_reset(user_id: int) -> None:
    """Refill a user's bucket, e.g. after the limits were changed."""
    key = bucket_key(user_id)
    _local_buckets.reset(key)
    if settings.REDIS_URL:
        client, _script = _redis_script(settings.REDIS_URL)
        client.delete(key)
