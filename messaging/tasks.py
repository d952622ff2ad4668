"""Celery tasks: send queued messages, and recover sends that got stuck.

`message_send_drain` sends the new messages of a shard of subscribers in
batches (see `messaging.services.send_queue`); `message_send` sends one
message and takes retries, later parts of long texts and requeued sends.

Task arguments are row ids and shard numbers only, so no message text or
number reaches the broker or the task logs.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import requests
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from django import db
from django.conf import settings
from django.utils import timezone

from sessions_wa.gateway import GatewayClient, GatewayError, gateway_url_for_user
from whatsapp_saas.queries import unique_row

from .failures import failure_sentence_stored
from .models import Message
from .ratelimit import send_slot_take, send_slots_take_many
from .services.send_queue import (
    drain_batch_read,
    drain_key_drop,
    drain_key_renew,
    drain_key_take,
    drain_owners_active,
    drain_seen_due_seconds,
    messages_claim,
    messages_postpone,
    messages_record_sent,
    owner_mark_slow,
    send_drain_enqueue,
    send_drain_finish,
    slow_owner_enqueue_waiting,
    slow_owners,
)
from .services.sending import (
    deleted_send_keys_purge,
    gateway_error_retryable,
    gateway_failure_reason,
    message_claim,
    message_fail,
    message_log_label,
    message_metadata_with_recipient,
    message_postpone,
    message_recipient,
    message_record_sent,
    message_release,
    message_send_enqueue,
    task_enqueue,
)
from .services.updates import held_updates_apply_stored, pending_updates_purge

logger = get_task_logger(__name__)

Status = Message.Status
SENT_STATUSES = frozenset({Status.SENT, Status.DELIVERED, Status.READ})

# In eager mode (no Redis) a retry runs at once inside the request, so only
# a couple are allowed there.
# NOTE: the embedded mode (no Redis) runs each send inside the web request
# that queued it, and has no broker and no beat. So there:
# - a gateway call waits at most EAGER_GATEWAY_TIMEOUT, and a timeout is
#   repeated once, so a stuck gateway keeps a send request waiting about
#   10 s (two timeouts);
# - a send the pacing holds back stays `queued` and a timer thread of this
#   process sends it when its slot comes. After a restart before then it
#   stays queued, because no beat runs `message_requeue_stuck`;
# - a send that fails (gateway down, session reconnecting) stays failed,
#   since nothing queues it again.
EAGER_MAX_RETRIES = 2
EAGER_TIMEOUT_RETRIES = 1
EAGER_GATEWAY_TIMEOUT = 5.0


def _backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: about 2, 4, 8 ... s, at most 300 s."""
    base = min(2.0 * (2**attempt), 300.0)
    return base + random.uniform(0, base / 4)


def _gateway_client(task) -> GatewayClient:
    if task.request.is_eager:
        return GatewayClient(
            timeout=min(settings.WA_GATEWAY_TIMEOUT, EAGER_GATEWAY_TIMEOUT)
        )
    return GatewayClient()


def _eager_send_run(message_id: int) -> None:
    try:
        message_send_enqueue(message_id)
    except Exception:
        logger.exception("Paced send of message %s failed in-process", message_id)
    finally:
        db.connections.close_all()


def _eager_send_later(message_id: int, delay: float) -> threading.Timer:
    """Send a paced message from a timer thread (no broker to delay a task on)."""
    timer = threading.Timer(delay, _eager_send_run, args=(message_id,))
    timer.daemon = True
    timer.start()
    return timer


def _previous_part_state(message: Message) -> str | None:
    """Return ``wait`` or ``failed`` while an earlier part blocks this one."""
    previous = message.previous_part
    if previous is None or previous.status in SENT_STATUSES:
        return None
    if previous.status == Status.FAILED:
        return "failed"
    return "wait"


@shared_task(bind=True, name="messaging.message_send", acks_late=True, max_retries=None)
def message_send(self, message_id: int) -> str:
    """Send one queued message through the gateway.

    The conditional claim lets only one run send a message, and the gateway
    keys sends by message id, so a repeated call never sends a second copy.
    Returns what happened: ``sent``, ``failed``, ``paced`` (re-scheduled by
    the send pacing), ``waiting`` (an earlier part is unsent), ``skipped``
    (another run has it or it is not queued) or ``missing``.
    """
    message = unique_row(
        Message.objects.select_related("customer", "previous_part", "next_part").filter(
            pk=message_id
        )
    )
    if message is None:
        logger.info("Message %s no longer exists; nothing to send", message_id)
        return "missing"
    if message.status != Status.QUEUED:
        logger.info(
            "Message %s is %s; not sending it again", message_id, message.status
        )
        return "skipped"

    blocked = _previous_part_state(message)
    if blocked == "failed":
        message_fail(
            message_id=message_id,
            code="previous_part_failed",
            reason=failure_sentence_stored("previous_part_failed"),
        )
        return "failed"
    if blocked == "wait":
        # The earlier part queues this one once it is sent.
        return "waiting"

    recipient = message_recipient(message)
    if recipient is None:
        message_fail(
            message_id=message_id,
            code="no_recipient",
            reason=failure_sentence_stored("no_recipient"),
        )
        return "failed"

    wait = send_slot_take(message.owner_id)
    if wait > 0 and self.request.is_eager:
        # Never sleep inside the web request: the message stays queued.
        logger.info(
            "Pacing %s in-process: sending in %.1f s", message_log_label(message), wait
        )
        message_postpone(message_id)
        _eager_send_later(message_id, wait)
        return "paced"
    if wait > 0:
        logger.info("Pacing %s: next slot in %.1f s", message_log_label(message), wait)
        message_postpone(message_id)
        # A new task, so the attempts made so far go with it: otherwise a
        # send that keeps failing and waiting for slots never gives up.
        message_send_enqueue(message_id, countdown=wait, attempt=self.request.retries)
        return "paced"

    metadata = message_metadata_with_recipient(message, recipient)
    if not message_claim(message_id, metadata=metadata):
        logger.info("Message %s was claimed by another run", message_id)
        return "skipped"
    if metadata is not None:
        message.metadata = metadata

    logger.info(
        "Sending %s (attempt %s)", message_log_label(message), self.request.retries + 1
    )
    try:
        answer = _gateway_client(self).send(
            message.owner_id,
            message_id=str(message.code),
            to=recipient,
            text=message.body,
        )
    except GatewayError as error:
        return _send_failed(self, message, error)
    except SoftTimeLimitExceeded:
        return _send_failed(
            self,
            message,
            GatewayError("The send took longer than the task time limit."),
        )

    message_record_sent(
        message_id=message_id,
        gateway_message_id=answer.get("gateway_message_id"),
        to_jid=answer.get("to_jid"),
        customer=message.customer,
    )
    logger.info("Sent %s", message_log_label(message))

    # Read with the message: a text in one part costs no query here.
    next_part = getattr(message, "next_part", None)
    if next_part is not None:
        message_send_enqueue(next_part.pk)
    return "sent"


def _send_failed(task, message: Message, error: GatewayError) -> str:
    max_retries = settings.WA_SEND_MAX_RETRIES
    if task.request.is_eager:
        max_retries = min(max_retries, EAGER_MAX_RETRIES)
        if isinstance(error.__cause__, requests.Timeout):
            # One repeat collects the response of a slow gateway. More waits
            # would only hold the web request longer.
            max_retries = min(max_retries, EAGER_TIMEOUT_RETRIES)
    attempt = task.request.retries
    if _send_given_up(message, error, attempt=attempt, max_retries=max_retries):
        return "failed"

    countdown = _send_release(message, error, attempt=attempt)
    raise task.retry(exc=error, countdown=countdown, max_retries=max_retries)


def _send_given_up(
    message: Message, error: GatewayError, *, attempt: int, max_retries: int
) -> bool:
    """Fail the message when retrying cannot help or attempts ran out.

    `attempt` counts the attempts before this one. Returns True when the
    message was failed, False when it should be retried.
    """
    retryable = not error.permanent or gateway_error_retryable(
        status=error.status, code=error.code, user=message.owner
    )
    if not retryable:
        code, reason = gateway_failure_reason(
            status=error.status, code=error.code, message=message
        )
        message_fail(message_id=message.pk, code=code, reason=reason)
        logger.warning(
            "Gateway rejected %s: %s (%s, %s)",
            message_log_label(message),
            code,
            error.status,
            error.code,
        )
        return True

    if attempt >= max_retries and error.permanent:
        code, reason = gateway_failure_reason(
            status=error.status, code=error.code, message=message
        )
        message_fail(message_id=message.pk, code=code, reason=reason)
        logger.error(
            "Giving up on %s after %s attempts: %s",
            message_log_label(message),
            attempt + 1,
            error.code,
        )
        return True
    if attempt >= max_retries:
        message_fail(
            message_id=message.pk,
            code="gateway_unavailable",
            reason=(
                f"The WhatsApp gateway could not be reached after {attempt + 1} "
                "attempts. If the gateway sent the message anyway, its status "
                "changes when WhatsApp confirms it, so check the chat before "
                "sending it again."
            ),
        )
        logger.error(
            "Giving up on %s after %s attempts: %s",
            message_log_label(message),
            attempt + 1,
            error.message,
        )
        return True
    return False


def _send_release(message: Message, error: GatewayError, *, attempt: int) -> float:
    """Put a failed attempt back to `queued` and return the retry's countdown.

    The gateway keys sends by message id, so calling /send again after a
    timeout returns the first response instead of sending a second copy.
    """
    message_release(message.pk)
    countdown = _backoff_seconds(attempt)
    logger.warning(
        "Retrying %s in %.0f s after: %s",
        message_log_label(message),
        countdown,
        error.message,
    )
    return countdown


# The maximum number of messages in one /send/batch request to the gateway.
GATEWAY_SEND_BATCH_MAX = 50

# Seconds one drain task sends before it queues its continuation, so that
# one shard's backlog does not hold a worker process from the others.
SEND_DRAIN_SECONDS = 5.0


@shared_task(name="messaging.message_send_drain", acks_late=True)
def message_send_drain(
    shard: int, take_key: bool = False, after_failure: bool = False
) -> int:
    """Send the newly queued messages of a shard's subscribers; return how many.

    The send API queues this task when it finds no drain of the shard
    queued or running (see `messaging.services.send_queue`). It sends
    batches until none is left, only paced subscribers have messages left,
    or SEND_DRAIN_SECONDS have passed or the soft time limit came (then it
    queues its continuation). After a round that sent less than a full
    batch, the next one starts WA_SEND_DRAIN_LINGER_MS after it, so that
    under load each gateway request carries more messages.

    When only paced subscribers are left, the task gives the drain key up
    and queues itself for the earliest next slot with `take_key`. A send of
    another subscriber of the shard meanwhile starts a drain at once, and
    the later task then runs only if the key is free. The drain that has the
    key reads the paced subscribers' messages too.

    A drain that fails queues another with `take_key` and `after_failure`,
    due once WA_SEND_DRAIN_SEEN_MS has passed, to read the queue in its
    place. That one queues no other if it fails too.
    """
    shards = settings.WA_SEND_DRAIN_SHARDS
    if not 0 <= shard < shards:
        moved = _drain_shard_moved(shard, shards)
        if moved is None:
            return 0
        shard = moved
    elif take_key and not drain_key_take(shard):
        logger.info(
            "Send drain shard %s is already queued or running; this paced "
            "continuation ends",
            shard,
        )
        return 0

    started = time.monotonic()
    handled = 0
    # Owner id -> the time.monotonic() at which its next send slot is free.
    # The drain reads none of these owners' messages before then.
    paced: dict[int, float] = {}
    first = True
    try:
        while True:
            if not first:
                # The waker set the key with its lifetime; later rounds
                # renew it.
                drain_key_renew(shard)
            first = False
            # Subscribers whose messages go one by one instead (see
            # owner_mark_slow). Read every round, because a subscriber whose
            # mark ended has new messages that only this drain sends.
            slow = slow_owners()
            round_started = now = time.monotonic()
            paced = {owner_id: due for owner_id, due in paced.items() if due > now}
            count, waits, more = _drain_batch_send(
                shard, skip_owners=paced.keys() | slow
            )
            handled += count
            now = time.monotonic()
            paced.update({owner_id: now + wait for owner_id, wait in waits.items()})
            if not more and count and settings.WA_SEND_DRAIN_LINGER_MS:
                # Sends keep coming under load: the next round waits for
                # them and takes them in one request, instead of a round and
                # often a new task for each. The key stays held meanwhile.
                _drain_linger(round_started)
            # A send that committed while this drain held the key queued no
            # task, so the finish reads the queue again. Paced subscribers
            # then wait for their continuation, counted from after the
            # finish's wait.
            elif not more and not send_drain_finish(shard, skip_owners=paced.keys()):
                if paced:
                    _drain_pace(shard, paced, time.monotonic())
                break
            if time.monotonic() - started > SEND_DRAIN_SECONDS:
                _drain_continue(shard)
                break
    except SoftTimeLimitExceeded:
        logger.warning(
            "Send drain shard %s reached the soft time limit; continuing in a new task",
            shard,
        )
        _drain_continue(shard)
    except BaseException:
        # The next send queues a new drain, instead of waiting for the key
        # to expire. Messages this run claimed stay `sending` until the
        # stuck-message requeue.
        drain_key_drop(shard)
        if settings.WA_SEND_DRAIN_SEEN_MS and not after_failure:
            _drain_after_failure(shard)
        raise
    return handled


def _drain_after_failure(shard: int) -> None:
    """Queue a drain to read the queue in place of a drain that failed.

    Web processes that saw the failed drain running queue no task for
    their sends of the next WA_SEND_DRAIN_SEEN_MS, and the failed run reads
    the queue no more. The new drain is due after that window and runs
    only if no other drain has the key by then.
    """
    logger.warning("Send drain shard %s failed, so another will read its queue", shard)
    task_enqueue(
        message_send_drain,
        (shard,),
        f"send drain shard {shard} after a failure",
        countdown=drain_seen_due_seconds(),
        kwargs={"take_key": True, "after_failure": True},
    )


def _drain_linger(round_started: float) -> None:
    """Wait until WA_SEND_DRAIN_LINGER_MS after the start of the last round."""
    wait = round_started + settings.WA_SEND_DRAIN_LINGER_MS / 1000 - time.monotonic()
    if wait > 0:
        time.sleep(wait)


def _drain_pace(shard: int, paced: dict[int, float], now: float) -> None:
    """Queue the drain for the earliest paced slot; it takes the key then."""
    # Rounded: a float sum and difference may exceed the wait by a rounding
    # error.
    countdown = round(max(min(paced.values()) - now, 0.0), 3)
    logger.info(
        "Pacing send drain shard %s: users %s wait, next slot in %.1f s",
        shard,
        ", ".join(str(owner_id) for owner_id in sorted(paced)),
        countdown,
    )
    send_drain_enqueue(shard, countdown=countdown, take_key=True)


def _drain_shard_moved(shard: int, shards: int) -> int | None:
    """Return the shard that a task queued as `shard` drains now, or None.

    WA_SEND_DRAIN_SHARDS went down while the task waited, so its owners now
    belong to shard ``shard % shards``. The task gives up the old key and
    drains that shard only if it gets that shard's key too. Otherwise the
    drain holding that key sends the messages. Even if two drains of one
    shard did run at once (a key expired while its task waited), the
    conditional claim still lets each message go out once.
    """
    current = shard % shards
    drain_key_drop(shard)
    if not drain_key_take(current):
        logger.info(
            "Send drain shard %s is now shard %s, whose drain is already "
            "queued or running",
            shard,
            current,
        )
        return None
    logger.info("Send drain shard %s runs as shard %s", shard, current)
    return current


def _drain_continue(shard: int, *, countdown: float | None = None) -> None:
    """Queue the rest of a drain in a new task; it keeps the drain key."""
    if not send_drain_enqueue(shard, countdown=countdown):
        drain_key_drop(shard)


def _drain_batch_send(
    shard: int, *, skip_owners=()
) -> tuple[int, dict[int, float], bool]:
    """Send the next batch of a shard's new messages.

    Returns (messages handled, seconds to wait per paced owner, more may
    wait). An owner in the waits got fewer send slots than it had messages
    in the batch, and its other messages were postponed. "More may wait"
    is False when the read found less than a full batch, so the queue of
    the owners not in `skip_owners` was empty then. Raises
    SoftTimeLimitExceeded after dealing with a batch it interrupted.
    """
    limit = min(settings.WA_SEND_BATCH_SIZE, GATEWAY_SEND_BATCH_MAX)
    read = drain_batch_read(shard, limit=limit, skip_owners=skip_owners)
    if not read:
        return 0, {}, False
    more = len(read) == limit
    by_owner: dict[int, list[Message]] = {}
    parted: set[int] = set()
    for message in read:
        if message.owner_id in parted:
            continue
        by_owner.setdefault(message.owner_id, []).append(message)
        if getattr(message, "next_part", None) is not None:
            # The next part becomes sendable once this one is sent, and no
            # other message of this owner may come between them.
            parted.add(message.owner_id)
            more = True

    messages, waits = _drain_batch_pace(by_owner)
    if not messages:
        return 0, waits, more

    claims = {}
    for message in messages:
        recipient = message_recipient(message)
        if recipient is None:
            message_fail(
                message_id=message.pk,
                code="no_recipient",
                reason=failure_sentence_stored("no_recipient"),
            )
            continue
        message.metadata = {**message.metadata, "send_to": recipient}
        claims[message.pk] = message.metadata
    claimed = messages_claim(claims)
    batch = [message for message in messages if message.pk in claimed]

    groups = _batch_by_gateway_node(batch)
    for index, (node_url, group) in enumerate(groups):
        try:
            _drain_request_send(shard, node_url, group)
        except SoftTimeLimitExceeded:
            error = GatewayError("The send took longer than the task time limit.")
            for _node_url, rest in groups[index + 1 :]:
                _drain_batch_failed(rest, error)
            raise
    return len(messages), waits, more


def _drain_batch_pace(
    by_owner: dict[int, list[Message]],
) -> tuple[list[Message], dict[int, float]]:
    """Take send slots for each owner's messages, and postpone the rest.

    Returns the messages granted a slot, oldest first, and the seconds to
    wait for each owner that got fewer slots than it requested. An owner's
    oldest messages take its slots. The drain reads none of a waiting
    owner's messages until its wait is over, so no later message of the
    owner overtakes a postponed one.
    """
    slots = send_slots_take_many(
        {owner_id: len(owned) for owner_id, owned in by_owner.items()}
    )
    messages: list[Message] = []
    postponed: list[int] = []
    waits: dict[int, float] = {}
    for owner_id, owned in by_owner.items():
        granted, wait = slots[owner_id]
        messages += owned[:granted]
        if granted < len(owned):
            postponed += [message.pk for message in owned[granted:]]
            waits[owner_id] = wait
    if postponed:
        messages_postpone(postponed)
    messages.sort(key=lambda message: message.pk)
    return messages, waits


def _batch_by_gateway_node(
    batch: list[Message],
) -> list[tuple[str, list[Message]]]:
    """Split a batch by the gateway node that runs each owner's client."""
    groups: dict[str, list[Message]] = {}
    for message in batch:
        groups.setdefault(gateway_url_for_user(message.owner_id), []).append(message)
    return list(groups.items())


def _drain_request_send(shard: int, node_url: str, batch: list[Message]) -> None:
    """Send messages through one /send/batch request and record each outcome.

    Raises SoftTimeLimitExceeded after handing the messages on for a retry.
    """
    by_owner: dict[int, list[int]] = {}
    for message in batch:
        by_owner.setdefault(message.owner_id, []).append(message.pk)
    logger.info(
        "Sending messages %s in send drain shard %s",
        "; ".join(
            f"{', '.join(map(str, message_ids))} of user {owner_id}"
            for owner_id, message_ids in by_owner.items()
        ),
        shard,
    )
    items = [
        {
            "user_id": message.owner_id,
            "message_id": str(message.code),
            "to": message.metadata["send_to"],
            "text": message.body,
        }
        for message in batch
    ]
    client = GatewayClient(node_url, timeout=_batch_timeout(len(items)))
    try:
        results = client.send_batch(items)
    except SoftTimeLimitExceeded:
        error = GatewayError("The send took longer than the task time limit.")
        _drain_batch_failed(batch, error)
        raise
    except GatewayError as error:
        _drain_batch_failed(batch, error)
        return

    sent = []
    late_owners = set()
    for message in batch:
        outcome = results[str(message.code)]
        if isinstance(outcome, GatewayError):
            if outcome.code == SEND_TIMEOUT_CODE:
                late_owners.add(message.owner_id)
            _drain_message_failed(message, outcome)
        else:
            sent.append((message, outcome))
    messages_record_sent(sent)
    for owner_id in sorted(late_owners):
        owner_mark_slow(owner_id)
    if sent:
        logger.info(
            "Sent messages %s in send drain shard %s",
            ", ".join(str(message.pk) for message, _answer in sent),
            shard,
        )


# The gateway's error code for an item not confirmed within its batch wait.
SEND_TIMEOUT_CODE = "GW_ERR_SEND_TIMEOUT"


def _batch_timeout(count: int) -> float:
    """Seconds to wait for a /send/batch of `count` messages.

    The gateway sends the items one after another, so each gets the time a
    /send would get, within what the task's soft time limit leaves after
    SEND_DRAIN_SECONDS.
    """
    per_item = settings.WA_GATEWAY_TIMEOUT
    room = settings.CELERY_TASK_SOFT_TIME_LIMIT - SEND_DRAIN_SECONDS - 2
    return min(per_item * count, max(per_item, room))


def _drain_batch_failed(batch: list[Message], error: GatewayError) -> None:
    if _gateway_lacks_batch_route(error):
        # An older gateway node during an upgrade: it has no /send/batch, or
        # its /send/batch takes the messages of one user only. Each message
        # goes through the one-message task.
        logger.warning(
            "The gateway cannot take this /send/batch (%s); sending %s messages "
            "one by one",
            error.code,
            len(batch),
        )
        for message in batch:
            message_release(message.pk)
            message_send_enqueue(message.pk)
        return
    for message in batch:
        _drain_message_failed(message, error)


def _gateway_lacks_batch_route(error: GatewayError) -> bool:
    """Return whether a whole /send/batch failed because the node is older.

    404 GW_ERR_NOT_FOUND: the node has no such route. 400
    GW_ERR_USER_ID_REQUIRED: its route needs a top-level user_id, which a
    batch of several users does not have, while a current node takes one
    user_id per item.
    """
    if error.status == 404 and error.code == "GW_ERR_NOT_FOUND":
        return True
    return error.status == 400 and error.code == "GW_ERR_USER_ID_REQUIRED"


def _drain_message_failed(message: Message, error: GatewayError) -> None:
    """Fail a message of a batch, or hand it to the one-message task to retry."""
    if _send_given_up(
        message, error, attempt=0, max_retries=settings.WA_SEND_MAX_RETRIES
    ):
        return
    countdown = _send_release(message, error, attempt=0)
    message_send_enqueue(message.pk, countdown=countdown, attempt=1)


@shared_task(name="messaging.message_send_slow_sweep", acks_late=True)
def message_send_slow_sweep(owner_id: int) -> int:
    """Give a task of its own to each message a slow subscriber has queued.

    `owner_mark_slow` queues it to run WA_SEND_DRAIN_SEEN_MS after the
    mark: a web process may have left a message to the drain until then,
    and the drain leaves a slow subscriber's messages alone. Returns how
    many messages it found.
    """
    found = slow_owner_enqueue_waiting(owner_id)
    if found:
        logger.info(
            "Queued %s waiting messages of slow user %s one by one", found, owner_id
        )
    return found


@shared_task(name="messaging.message_requeue_stuck")
def message_requeue_stuck() -> int:
    """Queue again the sends whose task was lost; return how many.

    A message `queued` for longer than WA_SEND_STUCK_MINUTES lost its task
    (broker restart, purge), and one `sending` that long lost its worker
    mid-send. Both go back to the queue; the claim in `message_send` keeps a
    duplicate task from sending twice.
    """
    from .selectors import message_list_stuck, message_owners_first_attempts

    cutoff = timezone.now() - timedelta(minutes=settings.WA_SEND_STUCK_MINUTES)
    # The drain of an owner's shard sends the owner's paced backlog of first
    # attempts, which may be old without being stuck. An owner marked slow
    # sends outside the drain, so its old messages count as stuck.
    draining = (
        drain_owners_active(message_owners_first_attempts(updated_before=cutoff))
        - slow_owners()
    )
    rows = list(message_list_stuck(updated_before=cutoff, draining_owners=draining))
    for message_id, status in rows:
        if status == Status.SENDING:
            message_release(message_id)
        message_send_enqueue(message_id)
    if rows:
        logger.warning("Requeued %s stuck messages", len(rows))
    return len(rows)


@shared_task(name="messaging.deleted_send_keys_purge")
def message_deleted_send_keys_purge() -> int:
    """Delete the kept keys of deleted sends once their window has passed."""
    deleted = deleted_send_keys_purge()
    if deleted:
        logger.info("Deleted %s idempotency keys of deleted messages", deleted)
    return deleted


@shared_task(name="messaging.pending_updates_purge")
def message_pending_updates_purge() -> int:
    """Delete held updates whose message never arrived, and return how many.

    Held updates whose message is stored by now are applied first.
    """
    applied = held_updates_apply_stored()
    if applied:
        logger.warning(
            "Applied %s held updates whose message was stored after the hold",
            applied,
        )
    cutoff = timezone.now() - timedelta(days=settings.WA_PENDING_UPDATE_MAX_AGE_DAYS)
    deleted = pending_updates_purge(created_before=cutoff)
    if deleted:
        logger.info("Deleted %s held message updates older than %s", deleted, cutoff)
    return deleted
