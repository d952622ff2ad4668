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

import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from messaging.models import Customer, Message, PendingMessageUpdate
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
from whatsapp_saas.queries import (
    model_columns,
    row_model,
    rows_copy,
    rows_update,
    values_in,
)

from .customers import customer_identify, customer_identity_changes
from .updates import (
    STATUS_RANK,
    Outcome,
    edit_apply,
    edit_unavailable_apply,
    gateway_id_assign,
    pending_updates_apply,
    reaction_apply,
    revoke_apply,
    status_apply,
    status_changes,
    update_hold,
)

logger = logging.getLogger(__name__)

Kind = Message.Kind
# Kind.values builds a new list on every read.
KIND_VALUES = frozenset(Kind.values)

# Gateway receipt words mapped to Message statuses; `played` (a voice note
# was listened to) is a read receipt.
RECEIPT_STATUSES = {
    "sent": Message.Status.SENT,
    "delivered": Message.Status.DELIVERED,
    "read": Message.Status.READ,
    "played": Message.Status.READ,
    "failed": Message.Status.FAILED,
}

# The order of the receipt words the gateway folds. An `earlier` entry must
# come before the receipt's own status in it.
FOLDED_RECEIPT_ORDER = {"sent": 1, "delivered": 2, "read": 3, "played": 4}

# Ignored-event counters live a little over a day in the cache.
IGNORED_COUNTER_SECONDS = 2 * 24 * 3600

MAX_ID_LENGTH = Message._meta.get_field("gateway_message_id").max_length


def ignored_counter_key(user_id: int, reason: str, day: str) -> str:
    return f"messaging:ignored:{user_id}:{day}:{reason}"


def _ignored(user, event_type: str, reason: str) -> str:
    """Log an event that is deliberately not stored, and count it on commit.

    The cache is not rolled back with the database, so the count waits for
    the transaction. An event whose batch is undone and applied again, or
    posted again by the gateway, then counts once.
    """
    logger.info("Ignored %s for user %s: %s", event_type, user.pk, reason)
    key = ignored_counter_key(user.pk, reason, timezone.now().date().isoformat())
    transaction.on_commit(partial(_ignored_count, key))
    return Outcome.IGNORED


def _ignored_count(key: str) -> None:
    try:
        cache.add(key, 0, IGNORED_COUNTER_SECONDS)
        cache.incr(key)
    except Exception:  # noqa: BLE001 - a counter must never fail a callback
        logger.warning(
            "Could not count an ignored event in the cache (%s)", key, exc_info=True
        )


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
    if not isinstance(kind, str) or kind not in KIND_VALUES:
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


@dataclass(slots=True)
class _Received:
    """A `message.received` event read and checked, before any query."""

    gateway_id: str
    direction: str
    phone: str | None
    key: str | None
    lid: str | None
    chat_jid: str
    push_name: str | None
    fields: dict


def _received_read(user, data: dict, own: tuple) -> _Received | str:
    """Read a `message.received` event, or return an outcome word if it is ignored.

    `own` is the subscriber's (match key, LID) from `_own_identity`. Raises
    ApplicationError for data that breaks the contract.
    """
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
    key = match_key(phone) if phone else None
    own_key, own_lid = own
    if (key and own_key and key == own_key) or (lid and lid == own_lid):
        return _ignored(user, event_type, "own_number")

    kind, body, metadata = _content(data)
    timestamp = timestamp_parse(data.get("timestamp"))
    fields = {
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
    return _Received(
        gateway_id=gateway_id,
        direction=(
            Message.Direction.OUTBOUND if from_me else Message.Direction.INBOUND
        ),
        phone=phone,
        key=key,
        lid=lid,
        chat_jid=str(chat),
        push_name=None if from_me else _string(data, "push_name"),
        fields=fields,
    )


def _message_received(*, user, data: dict, at: datetime) -> str:
    received = _received_read(user, data, _own_identity(user))
    if isinstance(received, str):
        return received

    customer = customer_identify(
        owner=user,
        phone=received.phone,
        lid=received.lid,
        jid=received.chat_jid,
        push_name=received.push_name,
    )
    fields = {**received.fields, "customer": customer}
    gateway_id, direction = received.gateway_id, received.direction

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
        fields["kind"],
        message.pk,
        user.pk,
        phone_mask(received.phone) if received.phone else "a LID",
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


@dataclass(slots=True)
class _Receipt:
    """A `message.status` event read and checked, before any query."""

    status: str
    code: uuid.UUID | None
    gateway_id: str | None
    at: datetime
    error: object
    # (status, time) of lower statuses the gateway folded into this receipt.
    earlier: tuple = ()


def _receipt_read(user, data: dict, at: datetime) -> _Receipt | str:
    """Read a `message.status` event, or return an outcome word if it is ignored."""
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
    return _Receipt(
        status=status,
        code=_uuid_or_none(data.get("message_id")),
        gateway_id=gateway_id,
        at=timestamp_parse(data.get("timestamp")) or at,
        error=data.get("error"),
        earlier=_receipt_earlier(user, data.get("earlier"), data.get("status")),
    )


def _receipt_earlier(user, value, word) -> tuple:
    """Return a receipt's `earlier` object as (status, time) pairs, lowest first.

    When receipts of one message wait in the gateway's outbox together, it
    posts the highest one, whose receipt word is `word`, and lists the lower
    statuses with their times. Entries that are not a lower status with an
    ISO time are left out, with one log line for all of them, and the rest
    of the receipt still applies.
    """
    if value is None:
        return ()
    if not isinstance(value, dict) or len(value) > len(FOLDED_RECEIPT_ORDER):
        raise _rejected(
            "message.status",
            "earlier must be an object mapping at most "
            f"{len(FOLDED_RECEIPT_ORDER)} lower status words to times.",
        )
    limit = FOLDED_RECEIPT_ORDER.get(word, 0)
    pairs = []
    left_out = []
    for earlier_word, time in value.items():
        parsed = timestamp_parse(time)
        if FOLDED_RECEIPT_ORDER.get(earlier_word, limit) >= limit or parsed is None:
            left_out.append(str(earlier_word)[:40])
            continue
        pairs.append((RECEIPT_STATUSES[earlier_word], parsed))
    if left_out:
        logger.warning(
            "Left out invalid earlier statuses %s of a %r message.status for "
            "user %s: expected lower statuses among sent, delivered, read and "
            "played, each with an ISO time",
            left_out,
            str(word)[:40],
            user.pk,
        )
    pairs.sort(key=lambda pair: STATUS_RANK[pair[0]])
    return tuple(pairs)


def _message_status(*, user, data: dict, at: datetime) -> str:
    event_type = "message.status"
    receipt = _receipt_read(user, data, at)
    if isinstance(receipt, str):
        return receipt
    gateway_id = receipt.gateway_id

    message = _message_by_code(user, receipt.code)
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
            payload={
                "status": receipt.status,
                "at": receipt.at.isoformat(),
                "error": receipt.error,
                "earlier": [
                    [earlier_status, earlier_at.isoformat()]
                    for earlier_status, earlier_at in receipt.earlier
                ],
            },
        )

    if gateway_id and not message.gateway_message_id:
        gateway_id_assign(message, gateway_id)
    return status_apply(
        message,
        status=receipt.status,
        at=receipt.at,
        error=receipt.error,
        earlier=receipt.earlier,
    )


def _uuid_or_none(value) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _message_by_code(user, code: uuid.UUID | None) -> Message | None:
    if code is None:
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


# Event types `gateway_event_run_apply` applies together.
RUN_EVENT_TYPES = frozenset({"message.received", "message.status"})


def gateway_event_run_apply(
    *, users: dict, events: list[dict], apply_one
) -> list[tuple]:
    """Apply consecutive `message.received` and `message.status` events.

    The events may belong to several subscribers: `users` maps each event's
    `user_id` to its User. Returns an (outcome, detail) pair per event, in
    order. The result is the same as applying each event with
    `gateway_event_apply`, with far fewer queries. The customers, messages
    and held updates the run names are read with one query per table for
    all its subscribers, each row matched to its own subscriber. New
    messages are inserted together, and receipts are saved together.

    An event the shared path cannot take (a new customer, a replay, a
    receipt that arrived first) goes to `apply_one(index)`, which applies
    that event alone and returns its pair. Everything gathered before it is
    written first, and the rows are read again after it. Call inside the
    callback transaction, with the session rows of the run's subscribers
    locked.
    """
    return _EventRun(users, events, apply_one).apply()


def _pairs_join(table: str, column: str, pairs) -> tuple[str, list]:
    """Return a FROM clause of the rows of `table` named by (owner id, value)
    `pairs`, as ``t``, and its parameters.

    The pairs become a join on the owner and `column`, which PostgreSQL
    runs through the unique index of the two, one pair at a time. The test
    for NULL lets it use such an index that leaves NULLs out. With the
    owners and the values as two lists in one WHERE, a table without
    statistics yet (a new database filling up) led it to read every row of
    the owners and filter them.
    """
    quote = connection.ops.quote_name
    pairs = sorted(pairs)
    sql = (
        "unnest(%s::bigint[], %s::varchar[]) AS named (owner_id, value) "
        f"JOIN {quote(table)} AS t ON t.{quote('owner_id')} = named.owner_id "
        f"AND t.{quote(column)} = named.value AND t.{quote(column)} IS NOT NULL"
    )
    return sql, [[owner_id for owner_id, _ in pairs], [value for _, value in pairs]]


def _pairs_q(pairs) -> Q:
    """Return a filter for the messages named by (owner id, WhatsApp id) `pairs`.

    It is the form of `_pairs_join` for databases other than PostgreSQL.
    """
    named = Q(pk__in=[])
    for owner_id, gateway_id in pairs:
        named |= Q(owner_id=owner_id, gateway_message_id=gateway_id)
    return named


def _messages_stored(pairs: set) -> set[tuple[int, str, str]]:
    """Return (owner id, WhatsApp id, direction) of the stored messages
    among (owner id, WhatsApp id) `pairs`."""
    if connection.vendor != "postgresql":
        return set(
            Message.objects.filter(_pairs_q(pairs)).values_list(
                "owner_id", "gateway_message_id", "direction"
            )
        )
    joined, params = _pairs_join(Message._meta.db_table, "gateway_message_id", pairs)
    quote = connection.ops.quote_name
    columns = ", ".join(
        f"t.{quote(name)}" for name in ("owner_id", "gateway_message_id", "direction")
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {joined}", params)
        return set(cursor.fetchall())


def _customers_named(owner_ids, keys, lids) -> list[Customer]:
    """Return the customers of `owner_ids` with a match key in `keys` or a
    LID in `lids`.

    On PostgreSQL the statement is built once, with each list as one array
    parameter. The ORM form has a parameter per value, which Django
    prepares and psycopg quotes one by one, and it is compiled each time.
    """
    if connection.vendor != "postgresql":
        return list(
            Customer.objects.filter(owner_id__in=owner_ids).filter(
                Q(match_key__in=keys) | Q(lid__in=lids)
            )
        )

    sql, plan = _customers_named_statement(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, [sorted(owner_ids), sorted(keys), sorted(lids)])
        return [row_model(Customer, plan, row) for row in cursor.fetchall()]


@functools.cache
def _customers_named_statement(vendor: str):
    quote = connection.ops.quote_name
    plan = model_columns(Customer, Customer._meta.db_table, vendor)
    sql = (
        f"SELECT {', '.join(plan[0])} FROM {quote(Customer._meta.db_table)} "
        f"WHERE {quote('owner_id')} = ANY(%s::bigint[]) "
        f"AND ({quote('match_key')} = ANY(%s::varchar[]) "
        f"OR {quote('lid')} = ANY(%s::varchar[]))"
    )
    return sql, plan


# The fields a run of receipts reads and writes (`status_changes`). The
# receipt lock reads only these, so reading any other field of such a
# message would cost a query per message.
RECEIPT_FIELDS = (
    "id",
    "owner",
    "code",
    "direction",
    "gateway_message_id",
    "status",
    "error_code",
    "error",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "updated_at",
)


def _receipt_messages_locked(owner_ids, codes: set, gateway_ids: set) -> list[Message]:
    """Lock the outbound messages of `owner_ids` that receipts name, by primary key.

    `codes` are the messages' own ids. `gateway_ids` are (owner id,
    WhatsApp id) pairs, since a WhatsApp id is unique per subscriber only.
    The order is the one the send task locks in, one message at a time. On
    PostgreSQL the statement is written out, because compiling the ORM form
    (an OR of two IN lists, locking and ordering) took longer than the
    database's work for a callback's receipts.
    """
    owner_ids = sorted(owner_ids)
    outbound = Message.Direction.OUTBOUND
    if connection.vendor != "postgresql":
        return list(
            Message.objects.select_for_update()
            .filter(owner_id__in=owner_ids, direction=outbound)
            .filter(Q(code__in=codes) | _pairs_q(gateway_ids))
            .order_by("pk")
        )
    # Each branch finds its rows through a unique index: the code's, and
    # (owner, WhatsApp id, direction) one pair at a time (`_pairs_join`).
    # With the owners in the WHERE of the locked rows, a table without
    # statistics yet led PostgreSQL to read every outbound message of the
    # owners on every callback. So the code's rows are read on their own
    # first (a MATERIALIZED CTE keeps the planner from merging the two),
    # and only those of the owners and outbound are locked. The pairs'
    # branch names only the owners' rows, of either direction, and rows of
    # the other direction are left out below.
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    pk = quote("id")
    by_gateway_id, pair_params = _pairs_join(
        Message._meta.db_table, "gateway_message_id", gateway_ids
    )
    plan = model_columns(
        Message, Message._meta.db_table, connection.vendor, RECEIPT_FIELDS
    )
    owner_id = quote("owner_id")
    direction = quote("direction")
    sql = (
        f"WITH coded AS MATERIALIZED (SELECT {pk}, {owner_id}, {direction} "
        f"FROM {table} WHERE {quote('code')} = ANY(%s::uuid[])) "
        f"SELECT {', '.join(plan[0])} FROM {table} WHERE {pk} IN ("
        f"SELECT {pk} FROM coded WHERE {owner_id} = ANY(%s::bigint[]) "
        f"AND {direction} = %s "
        f"UNION ALL SELECT t.{pk} FROM {by_gateway_id}) "
        f"ORDER BY {pk} FOR UPDATE OF {table}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(codes), owner_ids, outbound, *pair_params])
        rows = cursor.fetchall()
    messages = [row_model(Message, plan, row) for row in rows]
    return [message for message in messages if message.direction == outbound]


class _EventRun:
    def __init__(self, users: dict, events: list[dict], apply_one):
        self.events = events
        self.apply_one = apply_one
        self.owners = [users[event.get("user_id")] for event in events]
        distinct = {owner.pk: owner for owner in self.owners}
        own = {owner_id: _own_identity(owner) for owner_id, owner in distinct.items()}
        self.reads = [
            self._read(owner, event, own[owner.pk])
            for owner, event in zip(self.owners, events, strict=True)
        ]
        self.loaded = False
        self.inserts: list[dict] = []
        self.inserted: set[tuple[int, str, str]] = set()
        self.dirty: dict[int, Message] = {}
        self.dirty_fields: set[str] = set()

    def _read(self, owner, event: dict, own: tuple):
        """Return the event's _Received, _Receipt, outcome word, or None.

        None sends the event to `apply_one`, which also reports a malformed
        event as rejected.
        """
        data = event.get("data")
        if not isinstance(data, dict):
            return None
        try:
            if event.get("type") == "message.received":
                return _received_read(owner, data, own)
            if event.get("type") == "message.status":
                return _receipt_read(owner, data, _event_time(event))
        except ApplicationError:
            return None
        return None

    def apply(self) -> list[tuple]:
        results = []
        for index, read in enumerate(self.reads):
            result = self._apply_shared(index, read)
            if result is None:
                self._flush()
                result = self.apply_one(index)
                # The event may have created, merged or changed rows.
                self.loaded = False
            results.append(result)
        self._flush()
        return results

    def _apply_shared(self, index: int, read) -> tuple | None:
        if isinstance(read, str):
            return read, ""
        if isinstance(read, _Received):
            return self._received(index, read)
        if isinstance(read, _Receipt):
            return self._receipt(index, read)
        return None

    def _load(self, start: int) -> None:
        """Read what the events from `start` on refer to, a query per table.

        Each query covers every subscriber of the run, and every row is
        filed under its owner's id, so one subscriber's rows never match
        another's event.
        """
        if self.loaded:
            return
        self.loaded = True
        received, receipts = [], []
        for owner, read in zip(self.owners[start:], self.reads[start:], strict=True):
            if isinstance(read, _Received):
                received.append((owner.pk, read))
            elif isinstance(read, _Receipt):
                receipts.append((owner.pk, read))

        self.by_key, self.by_lid = {}, {}
        keys = {read.key for _, read in received if read.key}
        lids = {read.lid for _, read in received if read.lid}
        owner_ids = {owner_id for owner_id, _ in received}
        if keys or lids:
            for customer in _customers_named(owner_ids, keys, lids):
                if customer.match_key:
                    self.by_key[customer.owner_id, customer.match_key] = customer
                if customer.lid:
                    self.by_lid[customer.owner_id, customer.lid] = customer

        gateway_ids = {read.gateway_id for _, read in received}
        self.stored = set()
        self.held_ids = set()
        if gateway_ids:
            self.stored = _messages_stored(
                {(owner_id, read.gateway_id) for owner_id, read in received}
            )
            self.held_ids = set(
                values_in(
                    PendingMessageUpdate,
                    ("owner_id", "gateway_message_id"),
                    owner_id=owner_ids,
                    gateway_message_id=gateway_ids,
                )
            )

        self.by_code, self.by_gateway_id = {}, {}
        codes = {read.code for _, read in receipts if read.code}
        # A receipt that names its message by code needs no other lookup.
        # When the code finds nothing, the receipt goes to `apply_one`,
        # which also tries the WhatsApp id.
        receipt_ids = {
            (owner_id, read.gateway_id)
            for owner_id, read in receipts
            if read.gateway_id and not read.code
        }
        if codes or receipt_ids:
            receipt_owners = {owner_id for owner_id, _ in receipts}
            for message in _receipt_messages_locked(receipt_owners, codes, receipt_ids):
                self.by_code[message.owner_id, message.code] = message
                if message.gateway_message_id:
                    self.by_gateway_id[message.owner_id, message.gateway_message_id] = (
                        message
                    )

    def _received(self, index: int, read: _Received) -> tuple | None:
        self._load(index)
        owner = self.owners[index]
        key = (owner.pk, read.gateway_id, read.direction)
        if (
            key in self.stored
            or key in self.inserted
            or (owner.pk, read.gateway_id) in self.held_ids
        ):
            return None

        by_phone = self.by_key.get((owner.pk, read.key)) if read.key else None
        by_lid = self.by_lid.get((owner.pk, read.lid)) if read.lid else None
        if by_phone and by_lid and by_phone.pk != by_lid.pk:
            return None
        customer = by_phone or by_lid
        if customer is None or customer_identity_changes(
            customer,
            phone=read.phone,
            key=read.key,
            lid=read.lid,
            jid=read.chat_jid,
            push_name=read.push_name,
        ):
            return None

        self.inserts.append(
            {
                "owner_id": owner.pk,
                "gateway_message_id": read.gateway_id,
                "direction": read.direction,
                "customer_id": customer.pk,
                **read.fields,
            }
        )
        self.inserted.add(key)
        return Outcome.APPLIED, ""

    def _receipt(self, index: int, read: _Receipt) -> tuple | None:
        self._load(index)
        owner_id = self.owners[index].pk
        message = self.by_code.get((owner_id, read.code)) if read.code else None
        if message is None and read.gateway_id:
            message = self.by_gateway_id.get((owner_id, read.gateway_id))
        if message is None or (read.gateway_id and not message.gateway_message_id):
            return None

        fields = status_changes(
            message,
            status=read.status,
            at=read.at,
            error=read.error,
            earlier=read.earlier,
        )
        if not fields:
            return Outcome.DUPLICATE, ""
        self.dirty[message.pk] = message
        self.dirty_fields.update(fields)
        return Outcome.APPLIED, ""

    def _flush(self) -> None:
        if self.inserts:
            keys = rows_copy(Message, self.inserts)
            logger.info(
                "Stored %s messages for users %s (ids %s to %s)",
                len(self.inserts),
                sorted({row["owner_id"] for row in self.inserts}),
                keys[0],
                keys[-1],
            )
            self.inserts = []
        if self.dirty:
            now = timezone.now()
            for message in self.dirty.values():
                message.updated_at = now
            rows_update(
                Message,
                self.dirty.values(),
                [*sorted(self.dirty_fields), "updated_at"],
            )
            self.dirty = {}
            self.dirty_fields = set()
