"""Celery tasks: send queued messages, and recover sends that got stuck.

`message_send_drain` sends a subscriber's new messages in batches (see
`messaging.services.send_queue`); `message_send` sends one message and
takes retries, later parts of long texts and requeued sends.

Task arguments are row ids only, so no message text or number reaches the
broker or the task logs.
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

from sessions_wa.gateway import GatewayClient, GatewayError
from whatsapp_saas.queries import unique_row

from .models import Message
from .ratelimit import send_slot_take, send_slots_take
from .services.send_queue import (
    drain_batch_read,
    drain_key_drop,
    drain_key_renew,
    drain_owners_active,
    messages_claim,
    messages_postpone,
    messages_record_sent,
    send_drain_enqueue,
    send_drain_finish,
)
from .services.sending import (
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
            reason="An earlier part of this message failed, so this part was not sent.",
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
            reason="The customer has no phone number or WhatsApp id to send to.",
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
# one subscriber's backlog does not hold a worker process from the others.
SEND_DRAIN_SECONDS = 5.0


@shared_task(name="messaging.message_send_drain", acks_late=True)
def message_send_drain(owner_id: int) -> int:
    """Send a subscriber's newly queued messages in batches; return how many.

    The send API queues this task when it finds no drain of the subscriber
    queued or running (see `messaging.services.send_queue`). It sends
    batches until none is left, the pacing makes it wait (then it queues itself
    for when the next slot frees up), or SEND_DRAIN_SECONDS have passed or
    the soft time limit came (then it queues its continuation).
    """
    started = time.monotonic()
    handled = 0
    first = True
    try:
        while True:
            if not first:
                # The waker set the key with its lifetime; later rounds
                # renew it.
                drain_key_renew(owner_id)
            first = False
            count, wait, more = _drain_batch_send(owner_id)
            handled += count
            if wait > 0:
                logger.info(
                    "Pacing the sends of user %s: next in %.1f s", owner_id, wait
                )
                _drain_continue(owner_id, countdown=wait)
                break
            if not more and not send_drain_finish(owner_id):
                break
            if time.monotonic() - started > SEND_DRAIN_SECONDS:
                _drain_continue(owner_id)
                break
    except SoftTimeLimitExceeded:
        logger.warning(
            "The send drain of user %s reached the soft time limit; continuing "
            "in a new task",
            owner_id,
        )
        _drain_continue(owner_id)
    except BaseException:
        # The next send queues a new drain, instead of waiting for the key
        # to expire. Messages this run claimed stay `sending` until the
        # stuck-message requeue.
        drain_key_drop(owner_id)
        raise
    return handled


def _drain_continue(owner_id: int, *, countdown: float | None = None) -> None:
    """Queue the rest of a drain in a new task; it keeps the drain key."""
    if not send_drain_enqueue(owner_id, countdown=countdown):
        drain_key_drop(owner_id)


def _drain_batch_send(owner_id: int) -> tuple[int, float, bool]:
    """Send the next batch of an owner's new messages.

    Returns (messages handled, seconds to wait, more may wait). A wait above
    0 means the pacing held the whole batch back. "More may wait" is False
    when the read found less than a full batch, so the queue was empty then.
    Raises SoftTimeLimitExceeded after dealing with a batch it interrupted.
    """
    limit = min(settings.WA_SEND_BATCH_SIZE, GATEWAY_SEND_BATCH_MAX)
    messages = drain_batch_read(owner_id, limit=limit)
    more = len(messages) == limit
    if not messages:
        return 0, 0.0, False
    for index, message in enumerate(messages):
        if getattr(message, "next_part", None) is not None:
            # The next part becomes sendable once this one is sent, and no
            # other message may come between them.
            more = True
            messages = messages[: index + 1]
            break
    granted, wait = send_slots_take(owner_id, len(messages))
    if granted == 0:
        messages_postpone([message.pk for message in messages])
        return 0, wait, True
    more = more or granted < len(messages)
    messages = messages[:granted]

    claims = {}
    for message in messages:
        recipient = message_recipient(message)
        if recipient is None:
            message_fail(
                message_id=message.pk,
                code="no_recipient",
                reason="The customer has no phone number or WhatsApp id to send to.",
            )
            continue
        message.metadata = {**message.metadata, "send_to": recipient}
        claims[message.pk] = message.metadata
    claimed = messages_claim(claims)
    batch = [message for message in messages if message.pk in claimed]
    if not batch:
        return len(messages), 0.0, more

    labels = ", ".join(str(message.pk) for message in batch)
    logger.info("Sending messages %s of user %s", labels, owner_id)
    items = [
        {
            "message_id": str(message.code),
            "to": message.metadata["send_to"],
            "text": message.body,
        }
        for message in batch
    ]
    try:
        results = GatewayClient(timeout=_batch_timeout(len(items))).send_batch(
            owner_id, items
        )
    except SoftTimeLimitExceeded:
        error = GatewayError("The send took longer than the task time limit.")
        _drain_batch_failed(batch, error)
        raise
    except GatewayError as error:
        _drain_batch_failed(batch, error)
        return len(messages), 0.0, more

    sent = []
    for message in batch:
        outcome = results[str(message.code)]
        if isinstance(outcome, GatewayError):
            _drain_message_failed(message, outcome)
        else:
            sent.append((message, outcome))
    messages_record_sent(sent)
    if sent:
        logger.info(
            "Sent messages %s of user %s",
            ", ".join(str(message.pk) for message, _answer in sent),
            owner_id,
        )
    return len(messages), 0.0, more


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
    if error.status == 404 and error.code == "GW_ERR_NOT_FOUND":
        # A gateway without /send/batch (an older node during an upgrade):
        # each message goes through the one-message task.
        logger.warning(
            "The gateway has no /send/batch; sending %s messages one by one",
            len(batch),
        )
        for message in batch:
            message_release(message.pk)
            message_send_enqueue(message.pk)
        return
    for message in batch:
        _drain_message_failed(message, error)


def _drain_message_failed(message: Message, error: GatewayError) -> None:
    """Fail a message of a batch, or hand it to the one-message task to retry."""
    if _send_given_up(
        message, error, attempt=0, max_retries=settings.WA_SEND_MAX_RETRIES
    ):
        return
    countdown = _send_release(message, error, attempt=0)
    message_send_enqueue(message.pk, countdown=countdown, attempt=1)


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
    # A drain task sends its owner's paced backlog of first attempts, which
    # may be old without being stuck.
    draining = drain_owners_active(message_owners_first_attempts(updated_before=cutoff))
    rows = list(message_list_stuck(updated_before=cutoff, draining_owners=draining))
    for message_id, status in rows:
        if status == Status.SENDING:
            message_release(message_id)
        message_send_enqueue(message_id)
    if rows:
        logger.warning("Requeued %s stuck messages", len(rows))
    return len(rows)


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
