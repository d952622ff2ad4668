"""Changes to stored messages: receipts, edits, revokes and reactions.

Each `*_apply` function takes a Message the caller has locked
(`select_for_update`) inside its transaction, and returns an outcome word.
An update for a message that is not stored yet is held as a
`PendingMessageUpdate` and applied by `pending_updates_apply` when the
message arrives.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from messaging.models import Message, PendingMessageUpdate
from messaging.timestamps import timestamp_parse

logger = logging.getLogger(__name__)

Status = Message.Status


class Outcome:
    """Outcome words returned to the gateway callback log."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    HELD = "held"
    IGNORED = "ignored"


# A status only moves up this order. `failed` ranks highest, so it is final
# and any order of the same receipts ends in the same state. The exception is
# a failure with an unknown outcome (see UNKNOWN_OUTCOME_FAILURES).
STATUS_RANK = {
    Status.QUEUED: 0,
    Status.SENDING: 1,
    Status.SENT: 2,
    Status.DELIVERED: 3,
    Status.READ: 4,
    Status.FAILED: 5,
}
STATUS_TIME_FIELDS = {
    Status.SENT: "sent_at",
    Status.DELIVERED: "delivered_at",
    Status.READ: "read_at",
    Status.FAILED: "failed_at",
}

# Failures the send task decided by itself while the outcome was unknown: the
# gateway could not be reached, or the send was still in doubt when the task
# gave up. The gateway may still have sent the message, so any receipt from
# WhatsApp undoes them. A failure WhatsApp or the gateway reported stays final.
UNKNOWN_OUTCOME_FAILURES = frozenset({"gateway_unavailable", "send_in_doubt"})


def failure_outcome_unknown(message: Message) -> bool:
    """Return True when the message failed only because its outcome was unknown."""
    return (
        message.status == Status.FAILED
        and message.error_code in UNKNOWN_OUTCOME_FAILURES
    )


def _unknown_failure_clear(message: Message) -> list[str]:
    """Undo a local give-up once WhatsApp reports on the message.

    The message is back to `sending`, the rank a receipt starts from, so the
    receipts that follow end in the same state whatever their order.
    """
    logger.info(
        "A receipt for message %s replaces its %s failure",
        message.pk,
        message.error_code,
    )
    message.status = Status.SENDING
    message.error_code = ""
    message.error = ""
    message.failed_at = None
    return ["status", "error_code", "error", "failed_at"]


def status_apply(
    message: Message, *, status: str, at: datetime, error=None, earlier=()
) -> str:
    """Move an outbound message's status forward and record when.

    The earliest time of every status seen is kept, even when the status
    itself no longer moves (a `read` after `failed`). `earlier` contains
    (status, time) pairs of lower statuses the gateway folded into this
    receipt, and each is applied first, as if its own receipt had come
    first. A receipt for an inbound message changes nothing.
    """
    if not message.is_outbound:
        return Outcome.IGNORED

    fields = status_changes(message, status=status, at=at, error=error, earlier=earlier)
    if not fields:
        return Outcome.DUPLICATE
    message.save(update_fields=[*fields, "updated_at"])
    return Outcome.APPLIED


def status_changes(
    message: Message, *, status: str, at: datetime, error=None, earlier=()
):
    """Apply a receipt to an outbound message in memory; return changed fields.

    The (status, time) pairs of `earlier` go first, as receipts of their
    own. The caller saves the fields, alone (`status_apply`) or together
    with other messages' receipts.
    """
    if earlier:
        fields = {}
        for earlier_status, earlier_at in earlier:
            fields.update(
                dict.fromkeys(
                    status_changes(message, status=earlier_status, at=earlier_at)
                )
            )
        fields.update(
            dict.fromkeys(status_changes(message, status=status, at=at, error=error))
        )
        return list(fields)

    fields = []
    if failure_outcome_unknown(message):
        fields += _unknown_failure_clear(message)
    time_field = STATUS_TIME_FIELDS[status]
    # The earliest time wins, so a `played` (read) receipt that arrives
    # before the `read` one does not decide when the message was read.
    recorded = getattr(message, time_field)
    if recorded is None or at < recorded:
        setattr(message, time_field, at)
        fields.append(time_field)

    if STATUS_RANK[status] > STATUS_RANK.get(message.status, -1):
        message.status = status
        fields.append("status")
        if status == Status.FAILED:
            message.error_code = "delivery_failed"
            message.error = _(
                "WhatsApp reported that this message could not be delivered."
            )
            if isinstance(error, str) and error.strip():
                message.error += " " + _("Reason given: %(error)s.") % {
                    "error": error.strip()[:200]
                }
            fields += ["error_code", "error"]
    return fields


def edit_apply(message: Message, *, text, at: datetime) -> str:
    """Replace the body with an edit's text, keeping the old text in history."""
    if not isinstance(text, str):
        return edit_unavailable_apply(message, at=at)
    if message.edited and message.body == text:
        return Outcome.DUPLICATE

    message.edit_history = [
        *message.edit_history,
        {"body": message.body, "replaced_at": at.isoformat()},
    ]
    message.body = text
    message.edited = True
    message.edited_content_unavailable = False
    message.save(
        update_fields=[
            "edit_history",
            "body",
            "edited",
            "edited_content_unavailable",
            "updated_at",
        ]
    )
    return Outcome.APPLIED


def edit_unavailable_apply(message: Message, *, at: datetime) -> str:
    """Mark a message edited when the edit's new text could not be decrypted."""
    if message.edited_content_unavailable:
        return Outcome.DUPLICATE
    message.edited = True
    message.edited_content_unavailable = True
    message.edit_history = [
        *message.edit_history,
        {"body": None, "replaced_at": at.isoformat(), "unavailable": True},
    ]
    message.save(
        update_fields=[
            "edited",
            "edited_content_unavailable",
            "edit_history",
            "updated_at",
        ]
    )
    return Outcome.APPLIED


def revoke_apply(message: Message, *, at: datetime) -> str:
    """Mark a message deleted for everyone; its text stays for the record."""
    if message.revoked_at is not None:
        return Outcome.DUPLICATE
    message.revoked_at = at
    message.unread = False
    message.save(update_fields=["revoked_at", "unread", "updated_at"])
    return Outcome.APPLIED


def reaction_apply(message: Message, *, sender: str, emoji: str) -> str:
    """Set or remove (empty `emoji`) one sender's reaction on a message."""
    reactions = dict(message.reactions)
    if emoji:
        if reactions.get(sender) == emoji:
            return Outcome.DUPLICATE
        reactions[sender] = emoji
    else:
        if sender not in reactions:
            return Outcome.DUPLICATE
        del reactions[sender]
    message.reactions = reactions
    message.save(update_fields=["reactions", "updated_at"])
    return Outcome.APPLIED


def update_hold(*, owner, gateway_message_id: str, kind: str, payload: dict) -> str:
    """Keep an update for a message that is not stored yet.

    The send task may record the message's WhatsApp id while this
    transaction is still open, and it cannot see the uncommitted hold. So
    the hold is checked again once it commits.
    """
    PendingMessageUpdate.objects.create(
        owner=owner, gateway_message_id=gateway_message_id, kind=kind, payload=payload
    )
    logger.info(
        "Held a %s update for unknown message %s of user %s",
        kind,
        gateway_message_id,
        owner.pk,
    )
    transaction.on_commit(
        partial(held_updates_recheck, owner.pk, gateway_message_id), robust=True
    )
    return Outcome.HELD


def held_updates_apply_locked(messages) -> int:
    """Lock the first of `messages` and apply the updates held for its id.

    Returns how many were applied, 0 when `messages` is empty. Because the
    row is locked first, two callers that both lock it cannot apply the
    same held update twice.
    """
    with transaction.atomic():
        message = messages.select_for_update().order_by("pk").first()
        if message is None:
            return 0
        return pending_updates_apply(message)


def held_updates_recheck(owner_id: int, gateway_message_id: str) -> int:
    """Apply the held updates for an id whose message was stored since."""
    return held_updates_apply_locked(
        Message.objects.filter(owner_id=owner_id, gateway_message_id=gateway_message_id)
    )


def held_updates_apply_stored() -> int:
    """Apply every held update whose message is stored by now, and count them.

    The hourly purge calls it as a safety net. An update held while its
    message was being recorded is normally applied by `held_updates_recheck`
    right after the hold commits.
    """
    stored = Message.objects.filter(
        owner_id=OuterRef("owner_id"),
        gateway_message_id=OuterRef("gateway_message_id"),
    )
    keys = (
        PendingMessageUpdate.objects.filter(Exists(stored))
        .values_list("owner_id", "gateway_message_id")
        .distinct()
    )
    return sum(
        held_updates_recheck(owner_id, gateway_message_id)
        for owner_id, gateway_message_id in list(keys)
    )


def _payload_time(payload: dict) -> datetime:
    return timestamp_parse(payload.get("at")) or timezone.now()


def _payload_earlier(payload: dict) -> list[tuple[str, datetime]]:
    """Return the folded statuses of a held receipt as (status, time) pairs."""
    pairs = []
    for status, at in payload.get("earlier") or []:
        parsed = timestamp_parse(at)
        if status in STATUS_TIME_FIELDS and parsed is not None:
            pairs.append((status, parsed))
    return pairs


def pending_updates_apply(message: Message) -> int:
    """Apply, in arrival order, the held updates for a just-stored message."""
    if not message.gateway_message_id:
        return 0
    pending = list(
        PendingMessageUpdate.objects.filter(
            owner_id=message.owner_id, gateway_message_id=message.gateway_message_id
        ).order_by("pk")
    )
    for update in pending:
        payload = update.payload
        at = _payload_time(payload)
        kind = update.kind
        if kind == PendingMessageUpdate.Kind.STATUS:
            status_apply(
                message,
                status=payload["status"],
                at=at,
                error=payload.get("error"),
                earlier=_payload_earlier(payload),
            )
        elif kind == PendingMessageUpdate.Kind.EDIT:
            edit_apply(message, text=payload.get("text"), at=at)
        elif kind == PendingMessageUpdate.Kind.EDIT_UNAVAILABLE:
            edit_unavailable_apply(message, at=at)
        elif kind == PendingMessageUpdate.Kind.REVOKE:
            revoke_apply(message, at=at)
        elif kind == PendingMessageUpdate.Kind.REACTION:
            reaction_apply(message, sender=payload["sender"], emoji=payload["emoji"])
    if pending:
        PendingMessageUpdate.objects.filter(pk__in=[u.pk for u in pending]).delete()
        logger.info("Applied %s held updates to message %s", len(pending), message.pk)
    return len(pending)


def gateway_id_assign(
    message: Message, gateway_message_id: str, *, save: bool = True
) -> None:
    """Record the WhatsApp id of a message sent through the gateway.

    The engine may report the echo of a send (a `from_me` message) before
    the send task records the id. That echo was then stored as a separate
    phone message, so its receipts and reactions move here and the echo is
    deleted. Held updates for the id are applied afterwards. With
    `save=False` the caller saves `gateway_message_id` itself, in an UPDATE
    it makes anyway.
    """
    if message.gateway_message_id == gateway_message_id:
        return

    echo = (
        Message.objects.select_for_update()
        .filter(
            owner_id=message.owner_id,
            gateway_message_id=gateway_message_id,
            direction=Message.Direction.OUTBOUND,
        )
        .exclude(pk=message.pk)
        .first()
    )
    if echo is not None:
        _echo_absorb(message, echo)

    message.gateway_message_id = gateway_message_id
    if save:
        message.save(update_fields=["gateway_message_id", "updated_at"])
    pending_updates_apply(message)


def _echo_absorb(message: Message, echo: Message) -> None:
    if failure_outcome_unknown(message) and echo.status != Status.FAILED:
        _unknown_failure_clear(message)
    for time_field in STATUS_TIME_FIELDS.values():
        if getattr(message, time_field) is None and getattr(echo, time_field):
            setattr(message, time_field, getattr(echo, time_field))
    if STATUS_RANK.get(echo.status, -1) > STATUS_RANK.get(message.status, -1):
        message.status = echo.status
    message.reactions = {**echo.reactions, **message.reactions}
    if not message.chat_jid:
        message.chat_jid = echo.chat_jid
    echo_id = echo.pk
    echo.delete()
    message.save()
    logger.info("Merged the echo %s of message %s into it", echo_id, message.pk)


def conversation_mark_read(*, user, customer) -> int:
    """Mark the inbound messages of a conversation read; return how many."""
    return Message.objects.filter(owner=user, customer=customer, unread=True).update(
        unread=False
    )


def pending_updates_purge(*, created_before: datetime) -> int:
    """Delete held updates older than `created_before`; return how many."""
    deleted, _per_model = PendingMessageUpdate.objects.filter(
        created_at__lt=created_before
    ).delete()
    return deleted
