"""Ceilings: what the same gunicorn and Celery worker do when the work is nil.

`http_noop` calls `GET /bench/noop` (token authentication, then an empty
response) as fast as `concurrency` clients can. `celery_noop` queues tasks
that return at once and times the worker until the queue is empty and every
task is acknowledged.
"""

from __future__ import annotations

import time

import redis

from bench.load import closed_loop, http, percentile

# Keys of kombu's Redis transport: tasks fetched but not yet acknowledged.
UNACKED_KEY = "unacked"


def _noop_call(stack, token: str):
    url = f"{stack.web_url}/bench/noop"
    headers = {"Authorization": f"Token {token}"}

    def call(_item):
        response = http().get(url, headers=headers, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"GET /bench/noop returned {response.status_code}")

    return call


def http_warm(stack, token: str, *, concurrency: int) -> None:
    """Give every gunicorn worker its database connection before timing."""
    call = _noop_call(stack, token)
    closed_loop(call, range(concurrency * 5), concurrency=concurrency, deadline_s=30)


def http_noop(stack, token: str, *, total: int, concurrency: int, deadline_s: float):
    result = closed_loop(
        _noop_call(stack, token),
        range(total),
        concurrency=concurrency,
        deadline_s=deadline_s,
    )
    return {
        "requests": result.count,
        "errors": len(result.errors),
        "seconds": result.seconds,
        "rate": result.rate,
        "p50_ms": percentile(result.latencies, 50) * 1000,
        "p99_ms": percentile(result.latencies, 99) * 1000,
        "concurrency": concurrency,
    }


def _queue_drained(client: redis.Redis, queue: str) -> bool:
    return client.llen(queue) == 0 and client.hlen(UNACKED_KEY) == 0


def celery_noop(stack, *, total: int, deadline_s: float):
    from whatsapp_saas.celery import app

    client = redis.Redis.from_url(stack.config.redis_url)
    queue = app.conf.task_default_queue

    # Warm-up: every pool process has run a task once.
    for _ in range(stack.config.celery_concurrency * 4):
        app.send_task("bench.noop")
    _wait_drained(client, queue, 30)

    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(total):
            app.send_task("bench.noop", producer=producer)
    published = time.perf_counter()
    drained = _wait_drained(client, queue, deadline_s)
    finished = time.perf_counter()
    return {
        "tasks": total,
        "drained": drained,
        "seconds": finished - started,
        "publish_seconds": published - started,
        "rate": total / (finished - started),
        "concurrency": stack.config.celery_concurrency,
    }


def _wait_drained(client: redis.Redis, queue: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _queue_drained(client, queue):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True
