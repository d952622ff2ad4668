"""A subscriber's new outbound messages, sent to the gateway in batches.

The send API stores a message as `queued` and then wakes the subscriber's
drain task (`messaging.tasks.message_send_drain`). A Redis key per
subscriber, set with NX, shows that a drain task is queued or running, so a
burst of sends queues one task and not one per message. The task sends what
is queued in batches of up to WA_SEND_BATCH_SIZE through the gateway's
`/send/batch`, and gives the key up when nothing is left.

The drain takes only first attempts: messages that are `queued` and that
no run has claimed before (no ``send_to`` in their metadata), and of a long
text only the first part or a part whose previous part was sent. A batch
ends after a part that has a next part, so the next batch starts with it
and no other message comes between the parts. Retries and requeued
messages still go through the one-message task `messaging.message_send`,
and a message taken by both is sent once, because both claim it with a
conditional UPDATE and the gateway keys sends by message id.

Without Redis (the embedded mode, tasks run in-process) every message goes
through the one-message task as before.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from functools import cache

import redis
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from messaging.models import Customer, Message, PendingMessageUpdate
from messaging.selectors import message_first_attempts_q

from .sending import (
    message_claim,
    message_record_sent,
    message_send_enqueue,
    sent_record_finish,
    sent_to_jid,
)

logger = logging.getLogger(__name__)

Status = Message.Status

# Seconds the drain key lives without being renewed. The drain task renews
# it before every batch after the first, and a batch ends within the soft
# time limit. So the key expires when a drain task was lost or waited this
# long in the broker's queue. The next send then queues another drain, and
# the claim lets each message go out once.
DRAIN_KEY_TTL_SECONDS = 60


DRAIN_KEY_PREFIX = "messaging:send-drain:"


def drain_key(owner_id: int) -> str:
    return f"{DRAIN_KEY_PREFIX}user_{owner_id}"


@cache
def _redis(url: str) -> redis.Redis:
    # Short timeouts: the wake runs inside the send request, and when Redis
    # does not respond the message gets a task of its own instead.
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)


def _drain_by_task() -> bool:
    """Return whether sends go through drain tasks (Redis and a real broker)."""
    from messaging.tasks import message_send_drain

    return (
        bool(settings.REDIS_URL) and not message_send_drain.app.conf.task_always_eager
    )


def message_send_wake(owner_id: int, message_id: int) -> None:
    """Start sending a message the API just stored as `queued`.

    Queues the owner's drain task unless one is queued or running already,
    which will then send this message too. In the embedded mode, or when
    Redis fails, the message gets a task of its own instead.
    """
    if not _drain_by_task():
        message_send_enqueue(message_id)
        return

    client = _redis(settings.REDIS_URL)
    key = drain_key(owner_id)
    try:
        woken = client.set(key, "1", nx=True, ex=DRAIN_KEY_TTL_SECONDS)
    except redis.RedisError as error:
        logger.warning(
            "Could not check the send drain of user %s (%s); queueing message %s alone",
            owner_id,
            error.__class__.__name__,
            message_id,
        )
        message_send_enqueue(message_id)
        return
    if woken and not send_drain_enqueue(owner_id):
        drain_key_drop(owner_id)


def send_drain_enqueue(owner_id: int, *, countdown: float | None = None) -> bool:
    """Queue the owner's drain task; return False if the broker failed.

    The caller has taken the drain key. A `countdown` (send pacing) also keeps
    the key alive until the task is due.
    """
    from messaging.tasks import message_send_drain

    if countdown:
        drain_key_renew(owner_id, seconds=int(countdown) + DRAIN_KEY_TTL_SECONDS)
    try:
        message_send_drain.apply_async((owner_id,), countdown=countdown)
    except (OperationalError, OSError) as error:
        logger.warning(
            "Could not queue the send drain of user %s (%s); the stuck-message "
            "requeue sends its messages once the broker is back",
            owner_id,
            error.__class__.__name__,
        )
        return False
    return True


def drain_key_renew(owner_id: int, *, seconds: int = DRAIN_KEY_TTL_SECONDS) -> None:
    try:
        _redis(settings.REDIS_URL).expire(drain_key(owner_id), seconds)
    except redis.RedisError as error:
        logger.warning(
            "Could not renew the send drain key of user %s (%s)",
            owner_id,
            error.__class__.__name__,
        )


def drain_key_drop(owner_id: int) -> None:
    try:
        _redis(settings.REDIS_URL).delete(drain_key(owner_id))
    except redis.RedisError as error:
        logger.warning(
            "Could not drop the send drain key of user %s (%s); it expires in %s s",
            owner_id,
            error.__class__.__name__,
            DRAIN_KEY_TTL_SECONDS,
        )


def send_drain_finish(owner_id: int) -> bool:
    """Give the drain key up; return True when the caller must go on.

    A send that committed while the key was held did not queue a task, so
    the queue is read again after the key is gone. If messages wait and the
    key is free, the caller takes it again and sends them.
    """
    drain_key_drop(owner_id)
    if not _drain_candidates_exist(owner_id):
        return False
    try:
        return bool(
            _redis(settings.REDIS_URL).set(
                drain_key(owner_id), "1", nx=True, ex=DRAIN_KEY_TTL_SECONDS
            )
        )
    except redis.RedisError as error:
        logger.warning(
            "Could not take the send drain key of user %s again (%s); the "
            "stuck-message requeue sends what waits",
            owner_id,
            error.__class__.__name__,
        )
        return False


def drain_owners_active(owner_ids) -> set[int]:
    """Return which of `owner_ids` have a drain task queued or running."""
    owner_ids = list(owner_ids)
    if not owner_ids or not _drain_by_task():
        return set()
    try:
        values = _redis(settings.REDIS_URL).mget([drain_key(i) for i in owner_ids])
    except redis.RedisError as error:
        logger.warning(
            "Could not read the send drain keys of %s users (%s); treating "
            "their drains as lost",
            len(owner_ids),
            error.__class__.__name__,
        )
        return set()
    return {
        owner_id for owner_id, value in zip(owner_ids, values, strict=True) if value
    }


SENT_STATUSES = (Status.SENT, Status.DELIVERED, Status.READ)


def drain_candidates(owner_id: int):
    """Return the owner's messages the drain may send now, oldest first.

    Queued first attempts (never claimed, so no ``send_to`` yet) that are
    the first part of their text, or a later part whose previous part was
    sent.
    """
    return Message.objects.filter(
        message_first_attempts_q(),
        Q(previous_part__isnull=True) | Q(previous_part__status__in=SENT_STATUSES),
        owner_id=owner_id,
        direction=Message.Direction.OUTBOUND,
    ).order_by("pk")


# The drain runs these reads for every batch, and on PostgreSQL they are
# written out: compiling the ORM form (ordering, a JSON key test and two
# joins) took longer than the database's work.
_MESSAGE_COLUMNS = ("id", "code", "owner_id", "customer_id", "body", "metadata")
_CUSTOMER_COLUMNS = ("id", "owner_id", "name", "phone", "wa_jid", "lid")


def _candidates_where() -> tuple[str, list]:
    """Return the WHERE clause of `drain_candidates` for table alias ``m``."""
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    previous = quote("previous_part_id")
    sql = (
        f"m.{quote('owner_id')} = %s AND m.{quote('status')} = %s "
        f"AND m.{quote('direction')} = %s "
        f"AND NOT (m.{quote('metadata')} ? 'send_to') "
        f"AND (m.{previous} IS NULL OR EXISTS (SELECT 1 FROM {table} AS p "
        f"WHERE p.{quote('id')} = m.{previous} "
        f"AND p.{quote('status')} IN (%s, %s, %s)))"
    )
    return sql, [Status.QUEUED, Message.Direction.OUTBOUND, *SENT_STATUSES]


def _drain_candidates_exist(owner_id: int) -> bool:
    if connection.vendor != "postgresql":
        return drain_candidates(owner_id).exists()
    where, params = _candidates_where()
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table} AS m WHERE {where} LIMIT 1", [owner_id, *params]
        )
        return cursor.fetchone() is not None


def drain_batch_read(owner_id: int, *, limit: int) -> list[Message]:
    """Read the next batch to send, with each message's customer and next part.

    The messages carry only the columns the send needs; another one is read
    from the database when first used, as with `only()`.
    """
    if connection.vendor != "postgresql":
        return list(
            drain_candidates(owner_id).select_related("customer", "next_part")[:limit]
        )

    quote = connection.ops.quote_name
    messages_table = quote(Message._meta.db_table)
    customers_table = quote(Customer._meta.db_table)
    where, params = _candidates_where()
    columns = [
        *(f"m.{quote(name)}" for name in _MESSAGE_COLUMNS),
        *(f"c.{quote(name)}" for name in _CUSTOMER_COLUMNS),
        f"n.{quote('id')}",
    ]
    sql = (
        f"SELECT {', '.join(columns)} FROM {messages_table} AS m "
        f"JOIN {customers_table} AS c ON c.{quote('id')} = m.{quote('customer_id')} "
        f"LEFT JOIN {messages_table} AS n "
        f"ON n.{quote('previous_part_id')} = m.{quote('id')} "
        f"WHERE {where} ORDER BY m.{quote('id')} LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [owner_id, *params, limit])
        rows = cursor.fetchall()

    split = len(_MESSAGE_COLUMNS)
    messages = []
    for row in rows:
        values = list(row[:split])
        metadata = values[-1]
        values[-1] = json.loads(metadata) if isinstance(metadata, str) else metadata
        message = Message.from_db(connection.alias, _MESSAGE_COLUMNS, values)
        message.status = Status.QUEUED
        message.direction = Message.Direction.OUTBOUND
        customer = Customer.from_db(
            connection.alias,
            _CUSTOMER_COLUMNS,
            row[split : split + len(_CUSTOMER_COLUMNS)],
        )
        next_id = row[-1]
        next_part = (
            Message.from_db(connection.alias, ("id",), (next_id,)) if next_id else None
        )
        message._state.fields_cache["customer"] = customer
        message._state.fields_cache["next_part"] = next_part
        messages.append(message)
    return messages


def messages_postpone(message_ids: list[int]) -> None:
    """Touch queued messages that the send pacing holds back.

    `message_requeue_stuck` picks messages by `updated_at`, and these are
    waiting on purpose.
    """
    Message.objects.filter(pk__in=message_ids, status=Status.QUEUED).update(
        updated_at=timezone.now()
    )


def messages_claim(claims: dict[int, dict]) -> set[int]:
    """Move queued messages to `sending`, each with new metadata; return those moved.

    `claims` maps a message id to the metadata to store with the claim (see
    `message_metadata_with_recipient`). As in `message_claim`, a message
    that is no longer `queued` is left alone, so a message that another run
    took is not sent twice. On PostgreSQL this is one statement.
    """
    if not claims:
        return set()
    if connection.vendor != "postgresql":
        return {
            message_id
            for message_id, metadata in claims.items()
            if message_claim(message_id, metadata=metadata)
        }

    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    rows = ", ".join(["(%s::bigint, %s::jsonb)"] * len(claims))
    params: list = [Status.SENDING, timezone.now()]
    for message_id, metadata in claims.items():
        params += [message_id, json.dumps(metadata)]
    params.append(Status.QUEUED)
    sql = (
        f"UPDATE {table} SET {quote('status')} = %s, {quote('updated_at')} = %s, "
        f"{quote('metadata')} = claim.metadata "
        f"FROM (VALUES {rows}) AS claim (id, metadata) "
        f"WHERE {table}.{quote('id')} = claim.id AND {table}.{quote('status')} = %s "
        f"RETURNING {table}.{quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def messages_record_sent(sends: list[tuple[Message, dict]]) -> None:
    """Record several sends the gateway accepted, as `message_record_sent` does.

    `sends` pairs each message (read with its customer) with the gateway's
    response ``{gateway_message_id, to_jid}``. On PostgreSQL the usual case
    is one UPDATE for all of them. If that UPDATE fails, each send is
    recorded alone.
    """
    if not sends:
        return
    rows = []
    for message, response in sends:
        gateway_id = response.get("gateway_message_id")
        if not isinstance(gateway_id, str) or not gateway_id:
            gateway_id = None
        rows.append(
            (message, gateway_id, sent_to_jid(message.pk, response.get("to_jid")))
        )

    recorded = (
        _sent_update_many([row for row in rows if row[1] is not None])
        if connection.vendor == "postgresql"
        else None
    )
    for message, gateway_id, jid in rows:
        if recorded is None or gateway_id is None:
            message_record_sent(
                message_id=message.pk,
                gateway_message_id=gateway_id,
                to_jid=jid,
                customer=message.customer,
            )
            continue
        # A row the UPDATE left alone has another WhatsApp id, which the
        # locked path merges, as for one message.
        sent_record_finish(
            message.pk,
            updates_held=recorded.get(message.pk),
            gateway_id=gateway_id,
            jid=jid,
            customer=message.customer,
        )


def _sent_update_many(rows) -> dict[int, bool] | None:
    """Record sends in one UPDATE; return {id: updates held} for the rows it changed.

    The SQL of `_sent_update` in `sending`, for many rows: a row changes
    only if it has no WhatsApp id yet or this one. Returns None when a
    unique-constraint error shows that an echo already has one of the ids,
    and the caller then records each send alone.
    """
    if not rows:
        return {}
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    held_table = quote(PendingMessageUpdate._meta.db_table)
    status, sent_at, chat_jid, gateway_column = (
        quote("status"),
        quote("sent_at"),
        quote("chat_jid"),
        quote("gateway_message_id"),
    )
    now = timezone.now()
    values = ", ".join(["(%s::bigint, %s::varchar, %s::varchar)"] * len(rows))
    params: list = [Status.QUEUED, Status.SENDING, Status.SENT, now, now]
    for message, gateway_id, jid in rows:
        params += [message.pk, gateway_id, jid]
    sql = (
        f"UPDATE {table} SET "
        f"{status} = CASE WHEN {table}.{status} IN (%s, %s) THEN %s "
        f"ELSE {table}.{status} END, "
        f"{sent_at} = COALESCE({table}.{sent_at}, %s), "
        f"{quote('updated_at')} = %s, "
        f"{gateway_column} = sent.gateway_id, "
        f"{chat_jid} = CASE WHEN {table}.{chat_jid} = '' "
        f"THEN COALESCE(sent.jid, '') ELSE {table}.{chat_jid} END "
        f"FROM (VALUES {values}) AS sent (id, gateway_id, jid) "
        f"WHERE {table}.{quote('id')} = sent.id AND ({table}.{gateway_column} IS NULL "
        f"OR {table}.{gateway_column} = sent.gateway_id) "
        f"RETURNING {table}.{quote('id')}, EXISTS (SELECT 1 FROM {held_table} AS held "
        f"WHERE held.{quote('owner_id')} = {table}.{quote('owner_id')} "
        f"AND held.{gateway_column} = sent.gateway_id)"
    )
    guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with guard, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {
                message_id: bool(waiting) for message_id, waiting in cursor.fetchall()
            }
    except IntegrityError:
        return None
