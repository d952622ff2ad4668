"""Celery tasks: send queued messages, and recover sends that got stuck.

Task arguments are row ids only, so no message text or number reaches the
broker or the task logs.
"""

from __future__ import annotations

import random
import threading
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
from .ratelimit import send_slot_take
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
        message_send_enqueue(message_id, countdown=wait)
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
        return "failed"

    max_retries = settings.WA_SEND_MAX_RETRIES
    if task.request.is_eager:
        max_retries = min(max_retries, EAGER_MAX_RETRIES)
        if isinstance(error.__cause__, requests.Timeout):
            # One repeat collects the answer of a slow gateway; more waits
            # would only hold the web request longer.
            max_retries = min(max_retries, EAGER_TIMEOUT_RETRIES)
    attempt = task.request.retries
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
        return "failed"
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
        return "failed"

    # The gateway keys sends by message id, so calling /send again after a
    # timeout returns the first response instead of sending a second copy.
    message_release(message.pk)
    countdown = _backoff_seconds(attempt)
    logger.warning(
        "Retrying %s in %.0f s after: %s",
        message_log_label(message),
        countdown,
        error.message,
    )
    raise task.retry(exc=error, countdown=countdown, max_retries=max_retries)


@shared_task(name="messaging.message_requeue_stuck")
def message_requeue_stuck() -> int:
    """Queue again the sends whose task was lost; return how many.

    A message `queued` for longer than WA_SEND_STUCK_MINUTES lost its task
    (broker restart, purge), and one `sending` that long lost its worker
    mid-send. Both go back to the queue; the claim in `message_send` keeps a
    duplicate task from sending twice.
    """
    from .selectors import message_list_stuck

    cutoff = timezone.now() - timedelta(minutes=settings.WA_SEND_STUCK_MINUTES)
    ids = list(message_list_stuck(updated_before=cutoff))
    for message_id, status in ids:
        if status == Status.SENDING:
            message_release(message_id)
        message_send_enqueue(message_id)
    if ids:
        logger.warning("Requeued %s stuck messages", len(ids))
    return len(ids)


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
