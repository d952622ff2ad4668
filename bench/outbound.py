"""Outbound: messages sent through `POST /api/messages/send` until delivered.

A full-load run sends every message from a closed loop of client threads as
fast as the API accepts them, and waits until Django has recorded each one
as delivered. Its sustained rate is messages / (last delivery recorded -
first message accepted). A half-load run then offers half of that rate from
an open loop (one send every 2 / rate seconds, whatever the replies) and
measures the latencies the pipeline gives when it is not saturated.

Times come from the database, all on Django's clock:

- accept: `Message.created_at`, written while the API request runs;
- sent: `Message.sent_at`, written when the gateway has accepted the send;
- delivered: `GatewayEvent.received_at` of the `message.status` event that
  reported the message delivered, i.e. when Django learned of the delivery.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from datetime import datetime

from bench.load import closed_loop, http, open_loop, percentile

DONE_STATUSES = ("delivered", "read")
FINAL_STATUSES = ("delivered", "read", "failed")


def _send_items(subscribers, per_subscriber: int, *, offset: int = 0) -> list:
    # Interleaved, so that every subscriber sends all through the run.
    items = []
    for number in range(offset, offset + per_subscriber):
        for subscriber in subscribers:
            codes = subscriber.customer_codes
            items.append((subscriber, codes[number % len(codes)], number))
    return items


def _sender(stack):
    url = f"{stack.web_url}/api/messages/send"

    def send(item):
        subscriber, customer_code, number = item
        response = http().post(
            url,
            json={"customer_id": customer_code, "content": f"Bench message {number}"},
            headers=subscriber.auth,
            timeout=60,
        )
        if response.status_code not in (200, 201, 202):
            raise RuntimeError(
                f"the send returned {response.status_code}: {response.text[:200]}"
            )

    return send


def _last_message_id() -> int:
    from messaging.models import Message

    return Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _outbound(user_ids, after_id):
    from messaging.models import Message

    return Message.objects.filter(
        owner_id__in=user_ids, direction="outbound", pk__gt=after_id
    )


def _wait_final(user_ids, after_id, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        messages = _outbound(user_ids, after_id)
        final = messages.filter(status__in=FINAL_STATUSES).count()
        if final >= expected or time.monotonic() >= deadline:
            return
        time.sleep(0.2)


def _status_counts(user_ids, after_id) -> dict:
    counts = {}
    for status in _outbound(user_ids, after_id).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def _delivery_times(codes: list[str], since: datetime) -> dict[str, datetime]:
    """Return when Django received the `delivered` status of each message.

    The gateway names a message by the `message_id` Django sent it, which is
    the message's `code`. A receipt that waited in the gateway's outbox with
    a later one arrives folded into it, listed under `earlier`.
    """
    from django.db.models import Q

    from sessions_wa.models import GatewayEvent

    times: dict[str, datetime] = {}
    wanted = set(codes)
    events = (
        GatewayEvent.objects.filter(type="message.status", received_at__gte=since)
        .filter(Q(data__status="delivered") | Q(data__earlier__has_key="delivered"))
        .values_list("data__message_id", "received_at")
    )
    for code, received_at in events.iterator():
        if code in wanted and (code not in times or received_at < times[code]):
            times[code] = received_at
    return times


def _latencies(user_ids, after_id) -> dict:
    rows = [
        (str(code), created_at, sent_at, delivered_at)
        for code, created_at, sent_at, delivered_at in _outbound(
            user_ids, after_id
        ).values_list("code", "created_at", "sent_at", "delivered_at")
    ]
    if not rows:
        raise RuntimeError("No outbound message was stored; every send failed.")
    since = min(row[1] for row in rows)
    delivered = _delivery_times([row[0] for row in rows], since)
    to_sent = []
    to_delivered = []
    first_accept = None
    last_delivery = None
    for code, created_at, sent_at, delivered_at in rows:
        first_accept = min(first_accept or created_at, created_at)
        if sent_at is not None:
            to_sent.append((sent_at - created_at).total_seconds())
        recorded = delivered.get(code) or delivered_at
        if recorded is not None:
            to_delivered.append((recorded - created_at).total_seconds())
            last_delivery = max(last_delivery or recorded, recorded)
    window = (
        (last_delivery - first_accept).total_seconds()
        if first_accept and last_delivery
        else float("nan")
    )
    return {
        "messages": len(rows),
        "window_s": window,
        "delivery_events_found": len(delivered),
        "sent_ms": _summary(to_sent),
        "delivered_ms": _summary(to_delivered),
    }


def _summary(seconds: list[float]) -> dict:
    return {
        "count": len(seconds),
        "p50": percentile(seconds, 50) * 1000,
        "p95": percentile(seconds, 95) * 1000,
        "p99": percentile(seconds, 99) * 1000,
    }


def outbound_full(
    stack,
    subscribers,
    *,
    per_subscriber,
    concurrency,
    send_seconds,
    wait_s,
    measure=nullcontext,
):
    """Send as fast as the API accepts for `send_seconds`, or until
    `per_subscriber` messages each are sent, then wait for every delivery.

    `measure()` is a context manager around the sending and the waiting,
    whose dict is added to the result; reading the results afterwards is
    not in it.
    """
    user_ids = [subscriber.user_id for subscriber in subscribers]
    items = _send_items(subscribers, per_subscriber)
    after_id = _last_message_id()

    with measure() as figures:
        load = closed_loop(
            _sender(stack), items, concurrency=concurrency, deadline_s=send_seconds
        )
        accepted = load.count
        _wait_final(user_ids, after_id, accepted, wait_s)
    statuses = _status_counts(user_ids, after_id)
    result = _latencies(user_ids, after_id)
    result.update(figures or {})
    result.update(
        {
            "offered": len(items),
            "accepted": accepted,
            "errors": len(load.errors),
            "error_sample": load.errors[:3],
            "statuses": statuses,
            "api_rate": load.rate,
            "api_p50_ms": percentile(load.latencies, 50) * 1000,
            "api_p99_ms": percentile(load.latencies, 99) * 1000,
            "rate": result["delivered_ms"]["count"] / result["window_s"],
            "concurrency": concurrency,
        }
    )
    return result


def outbound_rate_limited(stack, subscribers, *, rate, duration_s, wait_s):
    """Offer `rate` sends a second for `duration_s`, then wait for delivery."""
    user_ids = [subscriber.user_id for subscriber in subscribers]
    total = max(len(subscribers), int(rate * duration_s))
    per_subscriber = -(-total // len(subscribers))
    items = _send_items(subscribers, per_subscriber, offset=1_000_000)[:total]
    after_id = _last_message_id()

    load = open_loop(
        _sender(stack), items, rate=rate, max_in_flight=32, deadline_s=duration_s
    )
    _wait_final(user_ids, after_id, load.count, wait_s)
    statuses = _status_counts(user_ids, after_id)
    result = _latencies(user_ids, after_id)
    result.update(
        {
            "offered_rate": rate,
            "achieved_rate": load.rate,
            "accepted": load.count,
            "errors": len(load.errors),
            "error_sample": load.errors[:3],
            "statuses": statuses,
            "api_p50_ms": percentile(load.latencies, 50) * 1000,
            "api_p99_ms": percentile(load.latencies, 99) * 1000,
        }
    )
    return result
