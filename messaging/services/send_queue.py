"""New outbound messages, sent to the gateway in batches by shared drains.

The send API stores a message as `queued` and then wakes the drain task of
the subscriber's shard (`messaging.tasks.message_send_drain`). Subscribers
are spread over WA_SEND_DRAIN_SHARDS shards by user id modulo that number.
A Redis key per shard, set with NX, shows that the shard's drain task is
queued or running, so a burst of sends queues one task and not one per
message. A web process that found the key held less than
WA_SEND_DRAIN_SEEN_MS ago does not ask again, and a drain waits that long
after giving the key up before its last read of the queue. The task
reads the shard's queued messages oldest first, sends them in batches of
up to WA_SEND_BATCH_SIZE through the gateway's `/send/batch` (one request
may carry several subscribers' messages), and gives the key up when
nothing is left.

The drain takes only first attempts: messages that are `queued` and that
no run has claimed before (no ``send_to`` in their metadata), and of a long
text only the first part or a part whose previous part was sent. After a
part that has a next part, no later message of that subscriber joins the
batch, so the next batch starts with the next part and no other message of
the subscriber comes between the parts. Other subscribers' messages may
still join. Retries and requeued messages still go through the one-message
task `messaging.message_send`, and a message taken by both is sent once,
because both claim it with a conditional UPDATE and the gateway keys sends
by message id.

The send pacing is per subscriber. When a subscriber gets fewer slots than
it has messages in the batch, its oldest messages go and the rest are
postponed. The drain then reads none of its messages until its next slot
is free, so a later message never overtakes a postponed one, while the
other subscribers of the shard go on. When only paced subscribers have
messages left, the drain gives the key up and queues itself for the
earliest of their slots. That later task runs only if it can take the key
then, so a new message of another subscriber of the shard starts a drain
at once instead of waiting for the paced one.

A subscriber whose send did not finish within the gateway's batch wait
(504 ``GW_ERR_SEND_TIMEOUT`` on its item) is marked slow for
SLOW_OWNER_SECONDS. Its new messages then get a one-message task each, and
the drain leaves its queued ones to such tasks, so a stuck WhatsApp client
delays the other subscribers of its shard once, for that wait, and not on
every batch.

Without Redis (the embedded mode, tasks run in-process) every message goes
through the one-message task as before.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache

import psycopg
import redis
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from messaging.models import Customer, Message, PendingMessageUpdate
from messaging.selectors import message_first_attempts_q
from whatsapp_saas.queries import json_rows_source, prepared_cursor, rows_json

from .sending import (
    message_claim,
    message_record_sent,
    message_send_enqueue,
    sent_record_finish,
    sent_to_jid,
    task_enqueue,
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

# Sorted set of slow subscribers' ids, each scored with the Unix time at
# which its mark ends.
SLOW_OWNERS_KEY = "messaging:send-slow"
SLOW_OWNER_SECONDS = 300


def drain_shard(owner_id: int) -> int:
    """Return the number of the drain that sends a subscriber's messages."""
    return owner_id % settings.WA_SEND_DRAIN_SHARDS


def drain_key(shard: int) -> str:
    return f"{DRAIN_KEY_PREFIX}shard_{shard}"


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

    Queues the drain task of the owner's shard unless one is queued or
    running already, which will then send this message too. In the
    embedded mode, or when Redis fails, the message gets a task of its own
    instead. The message of a subscriber marked slow gets a task of its own
    as well.

    A process that found the shard's drain running less than
    WA_SEND_DRAIN_SEEN_MS ago skips the Redis check. A drain waits that
    long after giving its key up before it reads the queue a last time, so
    it reads a message committed before this call (see `send_drain_finish`).
    Under load that saves a Redis round trip on nearly every send.
    """
    shard = drain_shard(owner_id)
    # Read before the Redis check, so the window never outlasts the
    # drain's wait, whatever the delays.
    checked_at = time.monotonic()
    # Checked first, because it is the common case under load. An entry
    # exists only where sends go through drain tasks.
    seen = _drain_seen.get(shard)
    if (
        seen is not None
        and checked_at - seen.at <= settings.WA_SEND_DRAIN_SEEN_MS / 1000
        and owner_id not in seen.slow_owners
    ):
        return
    if not _drain_by_task():
        message_send_enqueue(message_id)
        return

    client = _redis(settings.REDIS_URL)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.zrangebyscore(SLOW_OWNERS_KEY, time.time(), "+inf")
        pipe.set(drain_key(shard), "1", nx=True, ex=DRAIN_KEY_TTL_SECONDS)
        slow_members, woken = pipe.execute()
    except redis.RedisError as error:
        logger.warning(
            "Could not check send drain shard %s of user %s (%s); queueing "
            "message %s alone",
            shard,
            owner_id,
            error.__class__.__name__,
            message_id,
        )
        message_send_enqueue(message_id)
        return

    slow = frozenset(int(member) for member in slow_members)
    if not woken and settings.WA_SEND_DRAIN_SEEN_MS:
        _drain_seen[shard] = _DrainSeen(at=checked_at, slow_owners=slow)
    if owner_id in slow:
        message_send_enqueue(message_id)

    # A key taken for a slow subscriber still goes to a drain, because other
    # wakes found it held. When the broker fails, their sends of the next
    # WA_SEND_DRAIN_SEEN_MS wait for the stuck-message requeue, as all sends
    # do while the broker is down.
    if woken and not send_drain_enqueue(shard):
        drain_key_drop(shard)


@dataclass(frozen=True)
class _DrainSeen:
    """When this process last found a shard's drain running, and who was slow."""

    at: float
    slow_owners: frozenset[int]


# Shard number -> _DrainSeen, for this process. Replacing an entry is one
# dict assignment, which threads of a gthread worker may do at once.
_drain_seen: dict[int, _DrainSeen] = {}


def drain_seen_forget() -> None:
    """Forget the drains this process saw running, so the next wake checks Redis."""
    _drain_seen.clear()


def owner_mark_slow(owner_id: int) -> None:
    """Send `owner_id`'s messages one by one for SLOW_OWNER_SECONDS.

    The drain calls it when the subscriber's item was not confirmed within
    the gateway's batch wait. The messages the subscriber has queued for
    the drain get a one-message task each, queued in order. A web process
    that saw the drain running just before the mark may still leave a new
    message to the drain for WA_SEND_DRAIN_SEEN_MS (see
    `message_send_wake`), so the queue is swept once more after that.

    NOTE: order is not kept while the mark lasts. The timed-out items are
    retried after a backoff, so newer messages may go first, and several
    workers may run one subscriber's one-message tasks at once. Parts of a
    long text still go in order, because each waits for the previous one.
    """
    from messaging.tasks import message_send_slow_sweep

    until = time.time() + SLOW_OWNER_SECONDS
    try:
        _redis(settings.REDIS_URL).zadd(SLOW_OWNERS_KEY, {str(owner_id): until})
    except redis.RedisError as error:
        logger.warning(
            "Could not mark user %s as slow to send (%s)",
            owner_id,
            error.__class__.__name__,
        )
        return
    waiting = slow_owner_enqueue_waiting(owner_id)
    logger.warning(
        "User %s did not confirm a send in time; sending its messages one by "
        "one for %s s, starting with %s queued",
        owner_id,
        SLOW_OWNER_SECONDS,
        waiting,
    )
    if settings.WA_SEND_DRAIN_SEEN_MS:
        task_enqueue(
            message_send_slow_sweep,
            (owner_id,),
            f"the sweep of slow user {owner_id}",
            countdown=drain_seen_due_seconds(),
        )


# Added to WA_SEND_DRAIN_SEEN_MS in the countdown of a task that must run
# after the window. Its due time is read on the clock of the worker that
# runs it, which may be ahead of the clock of the one that queued it.
DRAIN_SEEN_DUE_MARGIN_SECONDS = 1


def drain_seen_due_seconds() -> float:
    """Return the countdown of a task that must run after the window.

    The window is WA_SEND_DRAIN_SEEN_MS, in which web processes that saw
    a drain running queue no task for their sends.
    """
    return settings.WA_SEND_DRAIN_SEEN_MS / 1000 + DRAIN_SEEN_DUE_MARGIN_SECONDS


def slow_owner_enqueue_waiting(owner_id: int) -> int:
    """Give each first attempt `owner_id` has queued a task of its own.

    Returns how many. A message that has a task already may get a second
    one, and the claim lets it go out once.
    """
    waiting = list(
        Message.objects.filter(message_first_attempts_q(), owner_id=owner_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for message_id in waiting:
        message_send_enqueue(message_id)
    return len(waiting)


def slow_owners() -> set[int]:
    """Return the ids of the subscribers marked slow now."""
    now = time.time()
    try:
        pipe = _redis(settings.REDIS_URL).pipeline(transaction=False)
        pipe.zremrangebyscore(SLOW_OWNERS_KEY, "-inf", now)
        pipe.zrangebyscore(SLOW_OWNERS_KEY, now, "+inf")
        _removed, members = pipe.execute()
    except redis.RedisError as error:
        logger.warning(
            "Could not read the subscribers slow to send (%s)",
            error.__class__.__name__,
        )
        return set()
    return {int(member) for member in members}


def send_drain_enqueue(
    shard: int, *, countdown: float | None = None, take_key: bool = False
) -> bool:
    """Queue the shard's drain task; return False if the broker failed.

    The caller has the drain key, and a `countdown` also keeps the key
    alive until the task is due. With `take_key` the caller has given the
    key up instead, and the task runs only if it can take the key when it
    starts.
    """
    from messaging.tasks import message_send_drain

    if countdown and not take_key:
        drain_key_renew(shard, seconds=int(countdown) + DRAIN_KEY_TTL_SECONDS)
    options = {"kwargs": {"take_key": True}} if take_key else {}
    return task_enqueue(
        message_send_drain,
        (shard,),
        f"send drain shard {shard}",
        countdown=countdown,
        **options,
    )


def drain_key_renew(shard: int, *, seconds: int = DRAIN_KEY_TTL_SECONDS) -> None:
    try:
        _redis(settings.REDIS_URL).expire(drain_key(shard), seconds)
    except redis.RedisError as error:
        logger.warning(
            "Could not renew the key of send drain shard %s (%s)",
            shard,
            error.__class__.__name__,
        )


def drain_key_drop(shard: int) -> None:
    try:
        _redis(settings.REDIS_URL).delete(drain_key(shard))
    except redis.RedisError as error:
        logger.warning(
            "Could not drop the key of send drain shard %s (%s); it expires in %s s",
            shard,
            error.__class__.__name__,
            DRAIN_KEY_TTL_SECONDS,
        )


def drain_key_take(shard: int) -> bool:
    """Set the shard's drain key unless it is set; return whether it was."""
    try:
        return bool(
            _redis(settings.REDIS_URL).set(
                drain_key(shard), "1", nx=True, ex=DRAIN_KEY_TTL_SECONDS
            )
        )
    except redis.RedisError as error:
        logger.warning(
            "Could not take the key of send drain shard %s (%s); the "
            "stuck-message requeue sends what waits",
            shard,
            error.__class__.__name__,
        )
        return False


def send_drain_finish(shard: int, *, skip_owners=()) -> bool:
    """Give the drain key up; return True when the caller must go on.

    A send that committed while the key was held queued no task, so the
    shard's queue is read again after the key is gone. That read waits
    WA_SEND_DRAIN_SEEN_MS first: a web process that found the key held
    within that time before the key went queues no task for its new
    messages (see `message_send_wake`), and they have committed by then. A
    send after the key went finds it free and queues a drain of its own.
    If messages wait and the key is free, the caller takes it again and
    sends them. The read skips `skip_owners` and the subscribers marked
    slow at the time of the read.
    """
    drain_key_drop(shard)
    if settings.WA_SEND_DRAIN_SEEN_MS:
        time.sleep(settings.WA_SEND_DRAIN_SEEN_MS / 1000)
    skip_owners = {*skip_owners, *slow_owners()}
    if not _drain_candidates_exist(shard, skip_owners=skip_owners):
        return False
    return drain_key_take(shard)


def drain_owners_active(owner_ids) -> set[int]:
    """Return which of `owner_ids` have their shard's drain queued or running."""
    owner_ids = list(owner_ids)
    if not owner_ids or not _drain_by_task():
        return set()
    shards = sorted({drain_shard(owner_id) for owner_id in owner_ids})
    try:
        values = _redis(settings.REDIS_URL).mget([drain_key(n) for n in shards])
    except redis.RedisError as error:
        logger.warning(
            "Could not read the keys of %s send drain shards (%s); treating "
            "their drains as lost",
            len(shards),
            error.__class__.__name__,
        )
        return set()
    active = {shard for shard, value in zip(shards, values, strict=True) if value}
    return {owner_id for owner_id in owner_ids if drain_shard(owner_id) in active}


SENT_STATUSES = (Status.SENT, Status.DELIVERED, Status.READ)


def drain_candidates(shard: int, *, skip_owners=()):
    """Return the shard's messages the drain may send now, oldest first.

    Queued first attempts (never claimed, so no ``send_to`` yet) that are
    the first part of their text, or a later part whose previous part was
    sent, of the subscribers in `shard` other than `skip_owners`.
    """
    candidates = Message.objects.alias(
        drain_shard=F("owner_id") % settings.WA_SEND_DRAIN_SHARDS
    ).filter(
        message_first_attempts_q(),
        Q(previous_part__isnull=True) | Q(previous_part__status__in=SENT_STATUSES),
        drain_shard=shard,
        direction=Message.Direction.OUTBOUND,
    )
    if skip_owners:
        candidates = candidates.exclude(owner_id__in=list(skip_owners))
    return candidates.order_by("pk")


# The drain runs these reads for every batch, and on PostgreSQL they are
# written out: compiling the ORM form (ordering, a JSON key test and two
# joins) took longer than the database's work.
_MESSAGE_COLUMNS = ("id", "code", "owner_id", "customer_id", "body", "metadata")
_CUSTOMER_COLUMNS = ("id", "owner_id", "name", "phone", "wa_jid", "lid")


def _candidate_conditions() -> tuple[str, list]:
    """Return the per-message tests of `drain_candidates` for table alias ``m``."""
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    previous = quote("previous_part_id")
    sql = (
        f"m.{quote('status')} = %s AND m.{quote('direction')} = %s "
        f"AND NOT (m.{quote('metadata')} ? 'send_to') "
        f"AND (m.{previous} IS NULL OR EXISTS (SELECT 1 FROM {table} AS p "
        f"WHERE p.{quote('id')} = m.{previous} "
        f"AND p.{quote('status')} IN (%s, %s, %s)))"
    )
    return sql, [Status.QUEUED, Message.Direction.OUTBOUND, *SENT_STATUSES]


def _shard_owners(shard: int, skip_owners) -> tuple[str, list, str, list]:
    """Return SQL for the owners of the shard that have queued messages.

    Returns (a WITH clause, its parameters, a WHERE test on its
    ``o.owner_id``, the test's parameters). The WITH clause is a loose index
    scan: each step looks up the next owner id in the partial index
    ``message_queued_idx`` (owner, id), so its cost grows with the number
    of owners that have queued messages, not with the number of queued
    messages. A plain read of the shard ordered by id lets PostgreSQL walk
    the primary key once many messages are queued, which took about
    100 ms on a table of 450,000 messages with 50,000 queued.
    """
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    owner, status = quote("owner_id"), quote("status")
    cte = (
        f"WITH RECURSIVE queued_owners ({owner}) AS ("
        f"(SELECT q.{owner} FROM {table} AS q WHERE q.{status} = %s "
        f"ORDER BY q.{owner} LIMIT 1) "
        f"UNION ALL SELECT (SELECT q.{owner} FROM {table} AS q "
        f"WHERE q.{status} = %s AND q.{owner} > o.{owner} "
        f"ORDER BY q.{owner} LIMIT 1) "
        f"FROM queued_owners AS o WHERE o.{owner} IS NOT NULL)"
    )
    test = f"o.{owner} %% %s = %s"
    test_params = [settings.WA_SEND_DRAIN_SHARDS, shard]
    if skip_owners:
        test += f" AND o.{owner} <> ALL(%s::bigint[])"
        test_params.append(list(skip_owners))
    return cte, [Status.QUEUED, Status.QUEUED], test, test_params


def _drain_candidates_exist(shard: int, *, skip_owners=()) -> bool:
    if connection.vendor != "postgresql":
        return drain_candidates(shard, skip_owners=skip_owners).exists()
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    cte, cte_params, owners_test, owners_params = _shard_owners(shard, skip_owners)
    conditions, params = _candidate_conditions()
    sql = (
        f"{cte} SELECT 1 FROM queued_owners AS o WHERE {owners_test} "
        f"AND EXISTS (SELECT 1 FROM {table} AS m "
        f"WHERE m.{quote('owner_id')} = o.{quote('owner_id')} AND {conditions}) "
        "LIMIT 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*cte_params, *owners_params, *params])
        return cursor.fetchone() is not None


# A placeholder for the one parameter of `_drain_batch_statement` while
# the others become literals.
_SKIP_OWNERS = object()


@cache
def _drain_batch_statement(shard: int, limit: int, shards: int) -> str:
    """Return the SQL of `drain_batch_read` for one shard and batch size.

    Its values are written into the SQL, except the owners to skip, its
    one parameter (an array, empty to skip none). So the generic plan that
    PostgreSQL keeps for the prepared statement can use the partial index
    of queued messages, which it could not with the statuses as
    parameters.
    """
    quote = connection.ops.quote_name
    messages_table = quote(Message._meta.db_table)
    customers_table = quote(Customer._meta.db_table)
    owner_id, message_id = quote("owner_id"), quote("id")
    cte, cte_params, owners_test, owners_params = _shard_owners(shard, ())
    conditions, conditions_params = _candidate_conditions()
    columns = [
        *(f"m.{quote(name)}" for name in _MESSAGE_COLUMNS),
        *(f"c.{quote(name)}" for name in _CUSTOMER_COLUMNS),
        f"n.{message_id}",
    ]
    # Each owner's oldest candidates come from message_queued_idx in id
    # order, and the oldest `limit` of all of them form the batch.
    sql = (
        f"{cte} SELECT {', '.join(columns)} FROM queued_owners AS o "
        f"CROSS JOIN LATERAL (SELECT "
        f"{', '.join(f'm.{quote(name)}' for name in _MESSAGE_COLUMNS)} "
        f"FROM {messages_table} AS m WHERE m.{owner_id} = o.{owner_id} "
        f"AND {conditions} ORDER BY m.{message_id} LIMIT %s) AS m "
        f"JOIN {customers_table} AS c ON c.{message_id} = m.{quote('customer_id')} "
        f"LEFT JOIN {messages_table} AS n "
        f"ON n.{quote('previous_part_id')} = m.{message_id} "
        f"WHERE {owners_test} AND o.{owner_id} <> ALL(%s::bigint[]) "
        f"ORDER BY m.{message_id} LIMIT %s"
    )
    params = [
        *cte_params,
        *conditions_params,
        limit,
        *owners_params,
        _SKIP_OWNERS,
        limit,
    ]
    marker = "\0skip\0"
    literals = tuple(
        marker if value is _SKIP_OWNERS else connection.ops.compose_sql("%s", [value])
        for value in params
    )
    # Formatting turns each %% back into %, which the parameter's %s then
    # needs escaped again.
    return (sql % literals).replace("%", "%%").replace(marker, "%s")


def drain_batch_read(shard: int, *, limit: int, skip_owners=()) -> list[Message]:
    """Read the next batch to send, with each message's customer and next part.

    The oldest `limit` candidates of the shard, of any subscriber but those
    in `skip_owners`. The messages carry only the columns the send needs;
    another one is read from the database when first used, as with
    `only()`.
    """
    if connection.vendor != "postgresql":
        candidates = drain_candidates(shard, skip_owners=skip_owners)
        return list(candidates.select_related("customer", "next_part")[:limit])

    sql = _drain_batch_statement(shard, limit, settings.WA_SEND_DRAIN_SHARDS)
    with prepared_cursor() as cursor:
        cursor.execute(sql, [list(skip_owners)])
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

    document = rows_json(
        [{"id": key, "metadata": metadata} for key, metadata in claims.items()]
    )
    params = [Status.SENDING, timezone.now(), document, len(claims), Status.QUEUED]
    with connection.cursor() as cursor:
        cursor.execute(_claim_statement(), params)
        return {row[0] for row in cursor.fetchall()}


@cache
def _claim_statement() -> str:
    """Return the SQL of `messages_claim`, whose claims are one JSON parameter."""
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    return (
        f"UPDATE {table} SET {quote('status')} = %s, {quote('updated_at')} = %s, "
        f"{quote('metadata')} = claim.metadata "
        f"FROM {json_rows_source('claim', 'id bigint, metadata jsonb')} "
        f"WHERE {table}.{quote('id')} = claim.id "
        f"AND {table}.{quote('status')} = %s "
        f"RETURNING {table}.{quote('id')}"
    )


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
    or when PostgreSQL ended the UPDATE to break a deadlock, and the caller
    then records each send alone.
    """
    if not rows:
        return {}
    now = timezone.now()
    document = rows_json(
        [
            {"id": message.pk, "gateway_id": gateway_id, "jid": jid}
            for message, gateway_id, jid in rows
        ]
    )
    params = [Status.QUEUED, Status.SENDING, Status.SENT, now, now, document, len(rows)]
    guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with guard, connection.cursor() as cursor:
            cursor.execute(_sent_statement(), params)
            return {
                message_id: bool(waiting) for message_id, waiting in cursor.fetchall()
            }
    except IntegrityError:
        return None
    except OperationalError as error:
        if not _deadlock(error):
            raise
        # A callback that locks these messages in another order can hold
        # one of them. Recorded one at a time, they cannot form a cycle.
        logger.warning(
            "Recording sent messages %s together deadlocked with another "
            "transaction; recording each alone",
            ", ".join(str(message.pk) for message, _gateway_id, _jid in rows),
        )
        return None


# The columns of each send in `_sent_statement`'s JSON parameter.
SENT_RECORD = "id bigint, gateway_id varchar, jid varchar"


@cache
def _sent_statement() -> str:
    """Return the SQL of `_sent_update_many`, whose sends are one JSON parameter."""
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    held_table = quote(PendingMessageUpdate._meta.db_table)
    status, sent_at, chat_jid, gateway_column = (
        quote("status"),
        quote("sent_at"),
        quote("chat_jid"),
        quote("gateway_message_id"),
    )
    return (
        f"UPDATE {table} SET "
        f"{status} = CASE WHEN {table}.{status} IN (%s, %s) THEN %s "
        f"ELSE {table}.{status} END, "
        f"{sent_at} = COALESCE({table}.{sent_at}, %s), "
        f"{quote('updated_at')} = %s, "
        f"{gateway_column} = sent.gateway_id, "
        f"{chat_jid} = CASE WHEN {table}.{chat_jid} = '' "
        f"THEN COALESCE(sent.jid, '') ELSE {table}.{chat_jid} END "
        f"FROM {json_rows_source('sent', SENT_RECORD)} "
        f"WHERE {table}.{quote('id')} = sent.id AND ({table}.{gateway_column} IS NULL "
        f"OR {table}.{gateway_column} = sent.gateway_id) "
        f"RETURNING {table}.{quote('id')}, EXISTS (SELECT 1 FROM {held_table} AS held "
        f"WHERE held.{quote('owner_id')} = {table}.{quote('owner_id')} "
        f"AND held.{gateway_column} = sent.gateway_id)"
    )


def _deadlock(error: OperationalError) -> bool:
    return isinstance(error.__cause__, psycopg.errors.DeadlockDetected)
