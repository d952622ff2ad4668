"""Inbound: signed `message.received` callback batches posted to Django.

Each run posts batches of one size the way the gateway's outbox does. The
outbox fills a request from several users' pending events, and keeps each
user in one request in flight at most. Here the subscribers are split into
`concurrency` groups; each group's batches hold its subscribers' events in
turn and are posted in order, one batch in flight per group, so two
requests in flight never share a subscriber. Events have distinct ids and
WhatsApp message ids and come from several customers of each subscriber, so
every event is stored; Django's duplicate checks (the unique event id and
the unique WhatsApp id per owner) run on each one. After the timed part,
one batch is posted again and must come back entirely as duplicates.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

from bench.load import lanes_loop, percentile
from bench.signed import signed_post
from bench.stack import CALLBACK_PATH

_seq = itertools.count(1)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _received_event(subscriber, phone: str, message_id: str) -> dict:
    digits = phone.lstrip("+")
    jid = f"{digits}@s.whatsapp.net"
    now = _now_iso()
    return {
        "event_id": str(uuid.uuid4()),
        "seq": next(_seq),
        "type": "message.received",
        "user_id": subscriber.user_id,
        "occurred_at": now,
        "data": {
            "gateway_message_id": message_id,
            "chat_jid": jid,
            "chat_type": "direct",
            "sender_jid": jid,
            "sender_phone": phone,
            "sender_lid": None,
            "peer_jid": jid,
            "peer_phone": phone,
            "peer_lid": None,
            "push_name": "Bench customer",
            "from_me": False,
            "kind": "text",
            "text": "Hello from a bench customer",
            "quoted_id": None,
            "metadata": {},
            "media": None,
            "timestamp": now,
            "offline": False,
        },
    }


def _lanes(
    subscribers, *, batch_size: int, total: int, prefix: str, concurrency: int
) -> list[list]:
    """Return the batches of each group of subscribers, in posting order.

    A group's events take turns by subscriber, so with more subscribers in
    a group than events in a batch every event of a batch has another
    subscriber, as in the outbox's requests under load.
    """
    # At least one full batch each, so every batch has `batch_size` events.
    per_subscriber = max(-(-total // len(subscribers)), batch_size)
    groups = [subscribers[start::concurrency] for start in range(concurrency)]
    lanes = []
    for group in groups:
        if not group:
            continue
        events = []
        for number in range(per_subscriber):
            for subscriber in group:
                phones = subscriber.customer_phones
                events.append(
                    _received_event(
                        subscriber,
                        phones[number % len(phones)],
                        f"{prefix}{subscriber.user_id:06X}{number:06X}",
                    )
                )
        lanes.append(
            [events[i : i + batch_size] for i in range(0, len(events), batch_size)]
        )
    return lanes


def _stored(user_ids, prefix: str) -> int:
    from messaging.models import Message

    return Message.objects.filter(
        owner_id__in=user_ids,
        direction="inbound",
        gateway_message_id__startswith=prefix,
    ).count()


def inbound_run(stack, subscribers, *, batch_size, total, concurrency, deadline_s):
    prefix = "BENCH" + uuid.uuid4().hex[:10].upper()
    lanes = _lanes(
        subscribers,
        batch_size=batch_size,
        total=total,
        prefix=prefix,
        concurrency=concurrency,
    )
    accepted = []

    def post(batch):
        response = signed_post(
            stack.web_url,
            CALLBACK_PATH,
            {"events": batch},
            secret=stack.gateway_secret,
            timeout=60,
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"the callback returned {response.status_code}: {response.text[:200]}"
            )
        return response.json()

    load = lanes_loop(post, lanes, concurrency=concurrency, deadline_s=deadline_s)
    for answer in load.results:
        accepted.append(answer.get("accepted", 0))
    posted_events = sum(
        answer.get("accepted", 0) + answer.get("duplicates", 0)
        for answer in load.results
    )

    # The same batch again: every event must be reported as a duplicate.
    repeat = post(lanes[0][0])
    user_ids = sorted({subscriber.user_id for subscriber in subscribers})
    stored = _stored(user_ids, prefix)
    return {
        "batch_size": batch_size,
        "batches": load.count,
        "events": posted_events,
        "accepted": sum(accepted),
        "stored": stored,
        "errors": len(load.errors),
        "error_sample": load.errors[:3],
        "seconds": load.seconds,
        "events_rate": sum(accepted) / load.seconds if load.seconds else float("nan"),
        "requests_rate": load.rate,
        "p50_ms": percentile(load.latencies, 50) * 1000,
        "p99_ms": percentile(load.latencies, 99) * 1000,
        "repeat_duplicates": repeat.get("duplicates"),
        "repeat_size": len(lanes[0][0]),
        "concurrency": concurrency,
    }
