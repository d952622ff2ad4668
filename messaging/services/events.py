"""Apply the gateway's `message.*` and `contact.*` callback events.

The callback service of `sessions_wa` calls `gateway_event_apply` inside its
transaction, once per event id. The rules, for every engine:

- Only direct chats with a person (phone or LID JID) are stored. Groups,
  status broadcasts, channels and unknown servers create nothing; they are
  ignored and counted.
- A message is stored once per (owner, WhatsApp id, direction). A replay
  changes nothing, and a placeholder (`undecryptable`, `unavailable`) is
  upgraded in place when the real content arrives with the same id.
- A `from_me` message typed on the subscriber's phone is outbound with
  source `phone`, in the peer's conversation. The subscriber's own number
  never becomes a customer.
- Receipts only move a status forward; receipts, edits, revokes and
  reactions for a message not stored yet are held until it arrives.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging.models import Message, PendingMessageUpdate
from messaging.phones import (
    LID_SERVER,
    JidKind,
    jid_parse,
    jid_to_phone,
    match_key,
    phone_mask,
)
from messaging.selectors import whatsapp_session_get
from messaging.timestamps import timestamp_parse
from whatsapp_saas.exceptions import ApplicationError

from .customers import customer_identify
from .updates import (
    Outcome,
    edit_apply,
    edit_unavailable_apply,
    gateway_id_assign,
    pending_updates_apply,
    reaction_apply,
    revoke_apply,
    status_apply,
    update_hold,
)

logger = logging.getLogger(__name__)

Kind = Message.Kind

# Gateway receipt words mapped to Message statuses; `played` (a voice note
# was listened to) is a read receipt.
RECEIPT_STATUSES = {
    "sent": Message.Status.SENT,
    "delivered": Message.Status.DELIVERED,
    "read": Message.Status.READ,
    "played": Message.Status.READ,
    "failed": Message.Status.FAILED,
}

# Ignored-event counters live a little over a day in the cache.
IGNORED_COUNTER_SECONDS = 2 * 24 * 3600

MAX_ID_LENGTH = Message._meta.get_field("gateway_message_id").max_length


def ignored_counter_key(user_id: int, reason: str, day: str) -> str:
    return f"messaging:ignored:{user_id}:{day}:{reason}"


def _ignored(user, event_type: str, reason: str) -> str:
    """Log and count an event that is deliberately not stored."""
    logger.info("Ignored %s for user %s: %s", event_type, user.pk, reason)
    key = ignored_counter_key(user.pk, reason, timezone.now().date().isoformat())
    try:
        cache.add(key, 0, IGNORED_COUNTER_SECONDS)
        cache.incr(key)
    except Exception:  # noqa: BLE001 - a counter must never fail a callback
        logger.warning("Could not count an ignored event in the cache", exc_info=True)
    return Outcome.IGNORED


def _rejected(event_type: str, reason: str) -> ApplicationError:
    return ApplicationError(
        f"The {event_type} event is malformed: {reason}",
        code="invalid_event_data",
    )


def _string(data: dict, key: str) -> str | None:
    value = data.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _jid(value):
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return jid_parse(value)
    except ValidationError:
        return None


def _e164(value) -> str | None:
    """Return a gateway-supplied E.164 number, or None when it is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text.startswith("+"):
        return None
    try:
        return jid_to_phone(f"{text[1:]}@s.whatsapp.net")
    except ValidationError:
        return None


def _lid(value) -> str | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = f"{value.strip()}@{LID_SERVER}"
    jid = _jid(value)
    if jid is None or jid.kind != JidKind.LID:
        return None
    return str(jid)


def _event_time(event: dict) -> datetime:
    return timestamp_parse(event.get("occurred_at")) or timezone.now()


def _gateway_message_id(data: dict, event_type: str) -> str:
    value = _string(data, "gateway_message_id")
    if value is None:
        raise _rejected(event_type, "gateway_message_id is missing or empty.")
    if len(value) > MAX_ID_LENGTH:
        raise _rejected(
            event_type, f"gateway_message_id is longer than {MAX_ID_LENGTH} characters."
        )
    return value


def gateway_event_apply(*, user, event: dict) -> str:
    """Apply one `message.*` or `contact.*` gateway event for `user`.

    Called by the callback service inside its transaction, after the event
    id was recorded. Returns ``applied``, ``duplicate``, ``held`` (kept
    until its message arrives) or ``ignored``. Raises ApplicationError for
    data that breaks the contract, naming the field.
    """
    event_type = event.get("type")
    data = event.get("data")
    if not isinstance(data, dict):
        raise _rejected(str(event_type), "data must be an object.")

    handler = _HANDLERS.get(event_type)
    if handler is None:
        return _ignored(user, str(event_type)[:64], "unknown_type")
    return handler(user=user, data=data, at=_event_time(event))


def _own_identity(user) -> tuple[str | None, str | None]:
    """Return the subscriber's own match key and LID, when known."""
    session = whatsapp_session_get(user)
    if session is None:
        return None, None
    key = None
    phone = _e164(getattr(session, "phone", None))
    if phone is None and getattr(session, "jid", ""):
        jid = _jid(session.jid)
        if jid is not None and jid.kind == JidKind.PHONE:
            phone = jid_to_phone(str(jid))
    if phone:
        key = match_key(phone)
    return key, _lid(getattr(session, "lid", None))


def _peer(data: dict, chat, from_me: bool):
    """Return (phone, lid) of the customer in a direct chat.

    For a `from_me` message the peer is the recipient, otherwise the sender.
    A phone equal to the LID's digits is a LID misread as a number and is
    dropped.
    """
    peer_jid = _jid(data.get("peer_jid"))
    if peer_jid is None or not peer_jid.is_customer:
        peer_jid = chat

    phone = _e164(data.get("peer_phone"))
    lid = _lid(data.get("peer_lid"))
    if not from_me:
        phone = phone or _e164(data.get("sender_phone"))
        lid = lid or _lid(data.get("sender_lid"))

    for jid in (peer_jid, chat):
        if jid.kind == JidKind.PHONE and phone is None:
            phone = jid_to_phone(str(jid))
        if jid.kind == JidKind.LID and lid is None:
            lid = str(jid)

    if phone and lid and phone[1:] == lid.split("@", 1)[0]:
        phone = None
    return phone, lid


def _content(data: dict) -> tuple[str, str, dict]:
    """Return (kind, body, metadata) of a received message."""
    kind = data.get("kind")
    metadata = dict(data["metadata"]) if isinstance(data.get("metadata"), dict) else {}
    if kind not in Kind.values:
        if kind is not None:
            metadata["gateway_kind"] = str(kind)[:40]
        kind = Kind.UNKNOWN

    text = data.get("text")
    body = text if isinstance(text, str) else ""
    if kind == Kind.TEXT and not body:
        # Never an empty text bubble: a text with no text is a placeholder
        # that the real content can still replace.
        kind = Kind.UNAVAILABLE
        metadata.setdefault("reason", "empty_text")

    if isinstance(data.get("media"), dict):
        metadata["media"] = data["media"]
    if data.get("offline") is True:
        metadata["offline"] = True
    return kind, body, metadata


def _message_received(*, user, data: dict, at: datetime) -> str:
    event_type = "message.received"
    gateway_id = _gateway_message_id(data, event_type)

    chat = _jid(data.get("chat_jid"))
    if chat is None:
        raise _rejected(event_type, "chat_jid is missing or not a JID.")
    if data.get("chat_type") == "group" or chat.kind == JidKind.GROUP:
        return _ignored(user, event_type, "group")
    if not chat.is_customer:
        return _ignored(user, event_type, chat.kind)

    from_me = data.get("from_me") is True
    phone, lid = _peer(data, chat, from_me)
    own_key, own_lid = _own_identity(user)
    if (phone and own_key and match_key(phone) == own_key) or (lid and lid == own_lid):
        return _ignored(user, event_type, "own_number")

    push_name = None if from_me else _string(data, "push_name")
    customer = customer_identify(
        owner=user, phone=phone, lid=lid, jid=str(chat), push_name=push_name
    )

    direction = Message.Direction.OUTBOUND if from_me else Message.Direction.INBOUND
    kind, body, metadata = _content(data)
    timestamp = timestamp_parse(data.get("timestamp"))
    fields = {
        "customer": customer,
        "source": Message.Source.PHONE if from_me else Message.Source.CONTACT,
        "kind": kind,
        "body": body,
        "metadata": metadata,
        "chat_jid": str(chat),
        "quoted_id": (_string(data, "quoted_id") or "")[:MAX_ID_LENGTH],
        "timestamp": timestamp or timezone.now(),
        "timestamp_estimated": timestamp is None,
        "status": Message.Status.SENT if from_me else Message.Status.RECEIVED,
        "unread": not from_me and kind not in Message.PLACEHOLDER_KINDS,
    }
    if from_me:
        fields["sent_at"] = fields["timestamp"]

    existing = _message_locked(user, gateway_id, direction)
    if existing is not None:
        return _message_upgrade(existing, fields)

    try:
        with transaction.atomic():
            message = Message.objects.create(
                owner=user, gateway_message_id=gateway_id, direction=direction, **fields
            )
    except IntegrityError:
        existing = _message_locked(user, gateway_id, direction)
        if existing is None:
            raise
        return _message_upgrade(existing, fields)

    pending_updates_apply(message)
    logger.info(
        "Stored %s %s message %s for user %s from %s",
        direction,
        kind,
        message.pk,
        user.pk,
        phone_mask(phone) if phone else "a LID",
    )
    return Outcome.APPLIED


def _message_locked(user, gateway_id: str, direction: str) -> Message | None:
    return (
        Message.objects.select_for_update()
        .filter(owner=user, gateway_message_id=gateway_id, direction=direction)
        .first()
    )


def _message_upgrade(message: Message, fields: dict) -> str:
    """Replace a placeholder with real content; anything else is a replay."""
    new_kind = fields["kind"]
    if (
        message.kind not in Message.PLACEHOLDER_KINDS
        or new_kind in Message.PLACEHOLDER_KINDS
    ):
        if not message.chat_jid:
            message.chat_jid = fields["chat_jid"]
            message.save(update_fields=["chat_jid", "updated_at"])
        return Outcome.DUPLICATE

    message.kind = new_kind
    message.body = fields["body"]
    message.metadata = {**message.metadata, **fields["metadata"]}
    message.metadata.pop("reason", None)
    message.quoted_id = fields["quoted_id"]
    message.unread = fields["unread"] and message.revoked_at is None
    message.save(
        update_fields=["kind", "body", "metadata", "quoted_id", "unread", "updated_at"]
    )
    logger.info("Upgraded placeholder message %s with its content", message.pk)
    return Outcome.APPLIED


def _message_status(*, user, data: dict, at: datetime) -> str:
    event_type = "message.status"
    status = RECEIPT_STATUSES.get(data.get("status"))
    if status is None:
        logger.warning(
            "Ignored a message.status with unknown status %r for user %s",
            str(data.get("status"))[:40],
            user.pk,
        )
        return _ignored(user, event_type, "unknown_status")

    gateway_id = _string(data, "gateway_message_id")
    if gateway_id is not None and len(gateway_id) > MAX_ID_LENGTH:
        raise _rejected(event_type, "gateway_message_id is too long.")
    moment = timestamp_parse(data.get("timestamp")) or at
    error = data.get("error")

    message = _message_by_code(user, data.get("message_id"))
    if message is None and gateway_id:
        message = _message_locked(user, gateway_id, Message.Direction.OUTBOUND)
    if message is None:
        if not gateway_id:
            raise _rejected(
                event_type, "neither message_id nor gateway_message_id names a message."
            )
        if Message.objects.filter(owner=user, gateway_message_id=gateway_id).exists():
            # Receipts never change an inbound message.
            return _ignored(user, event_type, "receipt_for_inbound")
        return update_hold(
            owner=user,
            gateway_message_id=gateway_id,
            kind=PendingMessageUpdate.Kind.STATUS,
            payload={"status": status, "at": moment.isoformat(), "error": error},
        )

    if gateway_id and not message.gateway_message_id:
        gateway_id_assign(message, gateway_id)
    return status_apply(message, status=status, at=moment, error=error)


def _message_by_code(user, value) -> Message | None:
    if not isinstance(value, str):
        return None
    try:
        code = uuid.UUID(value)
    except ValueError:
        return None
    return (
        Message.objects.select_for_update()
        .filter(owner=user, code=code, direction=Message.Direction.OUTBOUND)
        .first()
    )


def _message_target(user, gateway_id: str) -> Message | None:
    """Return the stored message an edit, revoke or reaction points at."""
    return (
        Message.objects.select_for_update()
        .filter(owner=user, gateway_message_id=gateway_id)
        .order_by("pk")
        .first()
    )


UPDATE_KINDS = {
    "edited": PendingMessageUpdate.Kind.EDIT,
    "revoked": PendingMessageUpdate.Kind.REVOKE,
    "edit_undecryptable": PendingMessageUpdate.Kind.EDIT_UNAVAILABLE,
}


def _message_updated(*, user, data: dict, at: datetime) -> str:
    event_type = "message.updated"
    gateway_id = _gateway_message_id(data, event_type)
    change = data.get("change")
    kind = UPDATE_KINDS.get(change)
    if kind is None:
        return _ignored(user, event_type, "unknown_change")
    text = data.get("text") if isinstance(data.get("text"), str) else None
    if kind == PendingMessageUpdate.Kind.EDIT and text is None:
        kind = PendingMessageUpdate.Kind.EDIT_UNAVAILABLE

    message = _message_target(user, gateway_id)
    if message is None:
        payload = {"at": at.isoformat()}
        if kind == PendingMessageUpdate.Kind.EDIT:
            payload["text"] = text
        return update_hold(
            owner=user, gateway_message_id=gateway_id, kind=kind, payload=payload
        )

    if kind == PendingMessageUpdate.Kind.EDIT:
        return edit_apply(message, text=text, at=at)
    if kind == PendingMessageUpdate.Kind.REVOKE:
        return revoke_apply(message, at=at)
    return edit_unavailable_apply(message, at=at)


def _message_reaction(*, user, data: dict, at: datetime) -> str:
    event_type = "message.reaction"
    gateway_id = _gateway_message_id(data, event_type)
    emoji = data.get("emoji")
    if not isinstance(emoji, str):
        raise _rejected(event_type, "emoji must be text; an empty string removes it.")
    emoji = emoji[:32]
    sender_jid = _jid(data.get("sender_jid"))
    sender = str(sender_jid) if sender_jid is not None else "unknown"

    message = _message_target(user, gateway_id)
    if message is None:
        return update_hold(
            owner=user,
            gateway_message_id=gateway_id,
            kind=PendingMessageUpdate.Kind.REACTION,
            payload={"sender": sender, "emoji": emoji, "at": at.isoformat()},
        )
    return reaction_apply(message, sender=sender, emoji=emoji)


def _contact_lid_mapped(*, user, data: dict, at: datetime) -> str:
    event_type = "contact.lid_mapped"
    lid = _lid(data.get("lid"))
    phone = _e164(data.get("phone"))
    if phone is None:
        jid = _jid(data.get("jid"))
        if jid is not None and jid.kind == JidKind.PHONE:
            phone = jid_to_phone(str(jid))
    if lid is None or phone is None:
        raise _rejected(event_type, "lid and phone (E.164) are both required.")
    if phone[1:] == lid.split("@", 1)[0]:
        raise _rejected(event_type, "the phone is the LID's digits, not a number.")

    own_key, own_lid = _own_identity(user)
    if (own_key and match_key(phone) == own_key) or lid == own_lid:
        return _ignored(user, event_type, "own_number")

    customer = customer_identify(owner=user, phone=phone, lid=lid, create=False)
    if customer is None:
        return _ignored(user, event_type, "no_customer")
    logger.info("Linked LID to customer %s (%s)", customer.pk, phone_mask(phone))
    return Outcome.APPLIED


_HANDLERS = {
    "message.received": _message_received,
    "message.status": _message_status,
    "message.updated": _message_updated,
    "message.reaction": _message_reaction,
    "contact.lid_mapped": _contact_lid_mapped,
}
