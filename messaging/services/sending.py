"""Outbound messages: accept a send, and record what the gateway did.

`message_send` checks the request, stores the message (one row per part of
a long text) as `queued`, and queues the send task when the transaction
commits. It never calls the gateway itself. The task (`messaging.tasks`)
claims a row, calls the gateway, and records the outcome through the
functions below. `messages_delete` removes messages and gives the quota of
unsent parts back.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from datetime import timedelta
from functools import cache, partial

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from kombu.exceptions import OperationalError

from accounts.services import subscription_require_active
from messaging.failures import STORED_LANGUAGE, failure_sentence_stored
from messaging.models import (
    Customer,
    DailySendCount,
    DeletedSendKey,
    Message,
    PendingMessageUpdate,
)
from messaging.phones import (
    JidKind,
    jid_kind_label,
    jid_parse,
    match_key,
    phone_mask,
)
from messaging.selectors import (
    SENDABLE_STATES,
    customer_not_found_error,
    send_block_reason,
    session_not_connected_message,
    whatsapp_state,
)
from messaging.text import (
    EMPTY_MESSAGE,
    WHATSAPP_TEXT_LIMIT,
    text_is_blank,
    text_split,
    utf16_length,
)
from whatsapp_saas.exceptions import ApplicationError, invalid_fields_message
from whatsapp_saas.queries import (
    cast_type,
    model_columns,
    prepared_cursor,
    row_build,
    row_create,
    row_get,
    row_model,
    save_plan,
    save_values,
    unique_row,
)

from .customers import customer_for_phone, customer_identify, phone_clean
from .quota import (
    COUNTED_SOURCES,
    daily_limit,
    quota_exceeded_error,
    quota_refund,
    quota_take,
)
from .updates import (
    STATUS_RANK,
    UNKNOWN_OUTCOME_FAILURES,
    gateway_id_assign,
    held_updates_apply_locked,
)

logger = logging.getLogger(__name__)

Status = Message.Status

RECIPIENT_MISSING = gettext_lazy(
    "Give either customer_id or to, not both and not neither."
)

# The maximum length of one send, in UTF-16 units: 16 parts.
CONTENT_MAX_LENGTH = 16 * WHATSAPP_TEXT_LIMIT


def _content_clean(content) -> str:
    if not isinstance(content, str) or text_is_blank(content):
        raise ApplicationError(
            str(EMPTY_MESSAGE),
            code="empty_message",
            extra={"field": "content"},
        )
    length = utf16_length(content)
    if length > CONTENT_MAX_LENGTH:
        raise ApplicationError(
            _(
                "The message is %(length)s characters long; the maximum is "
                "%(max)s. Send it in several messages."
            )
            % {"length": length, "max": CONTENT_MAX_LENGTH},
            code="message_too_long",
            extra={"field": "content", "max_length": CONTENT_MAX_LENGTH},
        )
    return content


def _recipient_from_to(owner, to) -> dict:
    """Read `to` as a typed number or a person's JID."""
    if isinstance(to, str) and "@" in to:
        try:
            jid = jid_parse(to)
        except ValidationError as error:
            raise ApplicationError(
                error.messages[0],
                code="invalid_recipient",
                extra={"field": "to", "value": to},
            ) from None
        if jid.kind == JidKind.LID:
            return {"lid": str(jid)}
        if jid.kind != JidKind.PHONE:
            raise ApplicationError(
                _("%(to)s is %(kind)s; messages go to one person's number.")
                % {"to": to, "kind": jid_kind_label(jid.kind)},
                code="invalid_recipient",
                extra={"field": "to", "value": to},
            )
    return {"phone": phone_clean(owner=owner, value=to, field="to")}


def _with_recipient_error(owner, to, content_error: ApplicationError):
    """Return `content_error`, or one error naming both fields when `to` is
    invalid too, so that the client fixes both at once."""
    if to is None:
        return content_error
    try:
        _recipient_from_to(owner, to)
    except ApplicationError as to_error:
        fields = {"content": [content_error.message], "to": [to_error.message]}
        return ApplicationError(
            invalid_fields_message(), code="invalid", extra={"fields": fields}
        )
    return content_error


def _customer_code(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _customer_deleted(owner, pk=None, *, code=None) -> bool:
    """Return whether the owner's customer, by id or code, no longer exists."""
    lookup = {"pk": pk} if pk is not None else {"code": code}
    return not Customer.objects.filter(owner=owner, **lookup).exists()


def _customer_gone(user, customer, customer_code) -> ApplicationError:
    """Return the error for a send whose customer was deleted while it ran.

    `customer` is the customer's id or code, for the log. A send by
    `customer_id` (`customer_code`) gets the usual 404. A send by `to` gets
    409, because the customer it found or created for the number is gone
    and sending again creates a new one.
    """
    logger.info(
        "Send of user %s not stored: customer %s was deleted meanwhile",
        user.pk,
        customer,
    )
    if customer_code is not None:
        return customer_not_found_error(customer_code)
    return ApplicationError(
        _(
            "The customer for this number was deleted while the message was "
            "being sent, so nothing was sent. Send it again to add the "
            "customer anew."
        ),
        code="customer_deleted",
        extra={"field": "to"},
        status_code=409,
    )


def _customer_by_code(owner, value) -> Customer:
    code = _customer_code(value)
    customer = row_get(Customer, owner=owner, code=code) if code else None
    if customer is None:
        raise customer_not_found_error(value)
    return customer


def session_require_sendable(user) -> None:
    """Raise ApplicationError ``session_not_connected`` unless sends can go.

    A connected session and a disconnected one, which reconnects by itself,
    accept sends. Any other state (never linked, waiting for a QR scan,
    logged out, failed) needs the subscriber to connect first.
    """
    state = whatsapp_state(user)
    if state not in SENDABLE_STATES:
        raise ApplicationError(
            session_not_connected_message(),
            code="session_not_connected",
            extra={"state": state},
            status_code=409,
        )


def message_send(
    *,
    user,
    content,
    customer_code=None,
    to=None,
    source: str = Message.Source.API,
    idempotency_key: str = "",
) -> list[Message]:
    """Queue a text to one customer; return the stored message parts.

    The recipient is `customer_code` (the customer's UUID) or `to` (a number
    typed in the user's default country, or a person's JID), which finds or
    creates the customer. The send task is queued on commit.

    A repeated call with the same `idempotency_key` within
    IDEMPOTENCY_WINDOW returns the messages the first call stored and sends
    nothing; keys belong to one user.

    Raises ApplicationError when the input is invalid, the customer is not
    the user's (404), the subscription is inactive, or the daily quota would
    be exceeded. It also raises ``session_not_connected`` when the WhatsApp
    session cannot send: never linked, waiting for a QR scan, logged out or
    failed.
    """
    from .send_queue import message_send_wake

    if (customer_code is None) == (to is None):
        raise ApplicationError(
            str(RECIPIENT_MISSING),
            code="invalid_recipient",
            extra={"field": "customer_id"},
        )
    try:
        text = _content_clean(content)
    except ApplicationError as error:
        raise _with_recipient_error(user, to, error) from None
    parts = text_split(text)
    if _one_statement_fits(user, to=to, parts=parts, key=idempotency_key):
        return _message_send_one_statement(user, customer_code, parts[0], source)

    try:
        customer = _customer_by_code(user, customer_code) if to is None else None
    except ApplicationError as error:
        # The customer of a repeated send may have been deleted since, with
        # the first send's messages.
        if idempotency_key and error.status_code == 404:
            _deleted_key_check(user, _idempotency_key_clean(idempotency_key))
        raise
    recipient = _recipient_from_to(user, to) if to is not None else None
    key = _idempotency_key_clean(idempotency_key)
    replay = partial(
        _idempotent_replay, user, key, parts=parts, customer=customer, to=recipient
    )

    try:
        with transaction.atomic():
            earlier = replay()
            if earlier:
                return earlier
            subscription_require_active(user)
            session_require_sendable(user)
            if customer is None and "phone" in recipient:
                customer = customer_for_phone(owner=user, phone=recipient["phone"])
            elif customer is None:
                customer = customer_identify(owner=user, lid=recipient["lid"])
            # Counted last, because the count's row lock orders this user's
            # sends until commit. A repeat of an idempotency key waits here,
            # then fails on the key's unique constraint and replays.
            now = timezone.now()
            quota_take(user, len(parts), now=now)
            messages = _parts_create(user, customer, parts, source, key=key, now=now)
            transaction.on_commit(partial(message_send_wake, user.pk, messages[0].pk))
    except IntegrityError:
        earlier = replay()
        if earlier:
            return earlier
        if customer is not None and _customer_deleted(user, customer.pk):
            raise _customer_gone(
                user, customer.pk, customer_code if to is None else None
            ) from None
        raise

    logger.debug(
        "Queued message %s (%s parts) for user %s to customer %s",
        messages[0].pk,
        len(messages),
        user.pk,
        customer.pk,
    )
    return messages


def _one_statement_fits(user, *, to, parts, key) -> bool:
    """Return whether a send can be stored by `_message_send_one_statement`.

    That covers the API's usual send on PostgreSQL: one part to a customer
    named by id, without an idempotency key, from a user who may send. Any
    other send goes through the general path, and so does every error but
    an unknown customer and the quota, because that path checks in its own
    order.
    """
    return (
        to is None
        and len(parts) == 1
        and not key
        and connection.vendor == "postgresql"
        and send_block_reason(user=user) is None
    )


def _message_send_one_statement(user, customer_code, body: str, source: str):
    """Store a one-part send to a customer by id in a single statement.

    The general path takes five round trips to the database: the customer,
    BEGIN, the quota's upsert, the INSERT and COMMIT. Here one statement
    reads the customer, adds to today's count only when the quota allows
    it, and inserts the message. Outside a transaction the statement
    commits on its own. The count's row stays locked until commit, so one
    user's sends still get their ids in the order they commit.
    """
    from .send_queue import message_send_wake

    code = _customer_code(customer_code)
    if code is None:
        raise customer_not_found_error(customer_code)

    now = timezone.localtime()
    limit = daily_limit(user)
    message = _one_send_message(user, body, source, now)
    sql, plan, value_plan = _one_send_statement(connection.vendor)
    params = [user.pk, code, user.pk, now.date(), 1, 1, limit, limit]
    params += save_values(message, value_plan, add=True)
    # Inside a caller's transaction, a savepoint undoes the statement on an
    # error and releases the count's row when the quota rejects the send.
    nested = connection.in_atomic_block
    try:
        with transaction.atomic() if nested else nullcontext():
            with prepared_cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
            if row is not None and row[-1] is None:
                used = (
                    DailySendCount.objects.filter(owner=user, day=now.date())
                    .values_list("sent", flat=True)
                    .first()
                )
                raise quota_exceeded_error(
                    limit=limit, used=used or 0, parts=1, now=now
                )
    except IntegrityError:
        # Outside a transaction the foreign key check runs with the
        # statement, and fails when the customer was deleted meanwhile.
        if nested or not _customer_deleted(user, code=code):
            raise
        raise _customer_gone(user, code, customer_code) from None
    if row is None:
        raise customer_not_found_error(customer_code)

    customer = row_model(Customer, plan, row[:-1])
    message.pk = row[-1]
    message.customer = customer
    message.chat_jid = customer.wa_jid
    message._state.adding = False
    message._state.db = connection.alias
    transaction.on_commit(partial(message_send_wake, user.pk, message.pk))
    logger.debug(
        "Queued message %s (%s parts) for user %s to customer %s",
        message.pk,
        1,
        user.pk,
        customer.pk,
    )
    return [message]


# The Message fields whose values are the same for every one-part send,
# which the statement contains as constants. Every other field is a
# parameter of each send, so a field added later gets its own default or
# pre_save value on every send, as the general path gives it.
ONE_SEND_CONSTANTS = frozenset(
    {
        "direction",
        "kind",
        "metadata",
        "status",
        "error_code",
        "error",
        "gateway_message_id",
        "quoted_id",
        "timestamp_estimated",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "edited",
        "edited_content_unavailable",
        "edit_history",
        "revoked_at",
        "reactions",
        "unread",
        "idempotency_key",
        "previous_part",
    }
)


def _one_send_message(owner, body: str, source: str, now) -> Message:
    """Return the unsaved message of a one-part send, without its customer."""
    return row_build(
        Message,
        owner=owner,
        direction=Message.Direction.OUTBOUND,
        source=source,
        kind=Message.Kind.TEXT,
        body=body,
        metadata={},
        status=Status.QUEUED,
        timestamp=now,
        previous_part=None,
        idempotency_key="",
    )


@cache
def _one_send_statement(vendor: str):
    """Build the statement of `_message_send_one_statement`.

    Returns the SQL, the plan that reads the customer's columns from its
    row, and the `save_plan` of the Message fields whose values follow the
    eight parameters of the customer and the count, in order. The ONE_SEND_CONSTANTS
    values are written into the SQL once, from a message that
    `_one_send_message` built, which saves preparing and quoting them on
    every send. Each value is cast to its column's type without length,
    as a value in a SELECT list has no type of its own.
    """
    quote = connection.ops.quote_name
    customer_meta = Customer._meta
    count_meta = DailySendCount._meta
    counts = quote(count_meta.db_table)

    def column(meta, name: str) -> str:
        return quote(meta.get_field(name).column)

    sent = column(count_meta, "sent")
    count_owner = column(count_meta, "owner")
    count_day = column(count_meta, "day")
    row_of = quote("customer")
    plan = model_columns(Customer, "customer", vendor)
    customer_columns = ", ".join(
        quote(field.column) for field in customer_meta.concrete_fields
    )
    template = _one_send_message(None, "", Message.Source.API, timezone.now())

    fields = []
    columns = []
    values = []
    for field in Message._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(quote(field.column))
        if field.name == "customer":
            values.append(f"{row_of}.{quote(customer_meta.pk.column)}")
            continue
        if field.name == "chat_jid":
            values.append(f"{row_of}.{column(customer_meta, 'wa_jid')}")
            continue
        cast = cast_type(field)
        if field.name in ONE_SEND_CONSTANTS:
            value = field.get_db_prep_save(field.pre_save(template, True), connection)
            literal = connection.ops.compose_sql("%s", [value])
            # A literal % would read as a placeholder.
            values.append(f"{literal.replace('%', '%%')}::{cast}")
        else:
            values.append(f"%s::{cast}")
            fields.append(field)

    message_pk = quote(Message._meta.pk.column)
    sql = (
        f"WITH {row_of} AS ("
        f"SELECT {customer_columns} FROM {quote(customer_meta.db_table)} "
        f"WHERE {column(customer_meta, 'owner')} = %s "
        f"AND {column(customer_meta, 'code')} = %s), "
        f"{quote('counted')} AS ("
        f"INSERT INTO {counts} ({count_owner}, {count_day}, {sent}) "
        f"SELECT %s, %s::date, %s FROM {row_of} WHERE %s <= %s "
        f"ON CONFLICT ({count_owner}, {count_day}) "
        f"DO UPDATE SET {sent} = {counts}.{sent} + EXCLUDED.{sent} "
        f"WHERE {counts}.{sent} + EXCLUDED.{sent} <= %s "
        f"RETURNING {sent}), "
        f"{quote('inserted')} AS ("
        f"INSERT INTO {quote(Message._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM {row_of}, {quote('counted')} "
        f"RETURNING {message_pk}) "
        f"SELECT {', '.join(plan[0])}, "
        f"(SELECT {message_pk} FROM {quote('inserted')}) "
        f"FROM {row_of}"
    )
    return sql, plan, save_plan(fields)


# How long a send's idempotency key returns its messages. A later send with
# the key is a new message.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
IDEMPOTENCY_KEY_MAX_LENGTH = Message._meta.get_field("idempotency_key").max_length


def _idempotency_key_clean(value) -> str:
    key = value.strip() if isinstance(value, str) else ""
    # ASCII only: an HTTP header carries no defined text encoding.
    if (
        len(key) > IDEMPOTENCY_KEY_MAX_LENGTH
        or not key.isascii()
        or not key.isprintable()
    ):
        raise ApplicationError(
            _(
                "The idempotency key must be at most %(max)s printable ASCII "
                "characters, such as a UUID."
            )
            % {"max": IDEMPOTENCY_KEY_MAX_LENGTH},
            code="invalid_idempotency_key",
            extra={"field": "idempotency_key"},
        )
    if "," in key:
        # Servers join a header that a request repeats with commas, so two
        # headers would read as one new key and send again.
        raise ApplicationError(
            _(
                "The idempotency key %(key)s has a comma, as when the "
                "Idempotency-Key header is sent more than once; send one key "
                "without commas."
            )
            % {"key": repr(key)},
            code="invalid_idempotency_key",
            extra={"field": "idempotency_key"},
        )
    return key


def _idempotent_replay(user, key: str, *, parts, customer, to) -> list[Message]:
    """Return the messages an earlier send with `key` stored, or [].

    The send names its recipient by `customer` or by `to` (the recipient
    that `_recipient_from_to` read). An earlier send older than
    IDEMPOTENCY_WINDOW gives its key up. A key reused for another text or
    recipient is an error, so a client bug does not get back the wrong
    message.
    """
    if not key:
        return []
    earlier = list(
        Message.objects.filter(owner=user, idempotency_key=key)
        .select_related("customer")
        .order_by("pk")
    )
    if not earlier:
        _deleted_key_check(user, key)
        return []
    if earlier[0].created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        Message.objects.filter(pk__in=[m.pk for m in earlier]).update(
            idempotency_key=""
        )
        return []
    same_recipient = _same_recipient(earlier[0], customer, to)
    bodies = [m.body for m in earlier]
    if same_recipient and len(bodies) < len(parts) and bodies == parts[: len(bodies)]:
        # Only the first parts are left: deleting a part deletes those after it.
        raise _key_deleted_error(user)
    if not same_recipient or bodies != parts:
        raise ApplicationError(
            _(
                "This idempotency key was used for another message in the last "
                "24 hours; use a new key for each message."
            ),
            code="idempotency_key_reused",
            extra={"field": "idempotency_key"},
            status_code=422,
        )
    logger.info(
        "Send of user %s repeats idempotency key of message %s; nothing sent",
        user.pk,
        earlier[0].pk,
    )
    return earlier


def _deleted_key_check(user, key: str) -> None:
    """Raise a 409 when the messages of an earlier send with `key` were deleted.

    Sending the text again would send it twice, which the key rules out.
    """
    cutoff = timezone.now() - IDEMPOTENCY_WINDOW
    if DeletedSendKey.objects.filter(owner=user, key=key, used_at__gte=cutoff).exists():
        raise _key_deleted_error(user)


def _key_deleted_error(user) -> ApplicationError:
    logger.info(
        "Send of user %s repeats the idempotency key of deleted messages; nothing sent",
        user.pk,
    )
    return ApplicationError(
        _(
            "Messages of an earlier send with this idempotency key were "
            "deleted, so nothing was sent again. Use a new key to send the "
            "text again."
        ),
        code="idempotency_key_deleted",
        extra={"field": "idempotency_key"},
        status_code=409,
    )


def deleted_send_keys_record(messages) -> None:
    """Keep the idempotency keys of `messages`, which are about to be deleted.

    `messages` is a queryset. Only first parts carry a key of their own, and
    a key older than IDEMPOTENCY_WINDOW is free again, so neither is kept.
    A key kept before and used again since takes its new time.
    """
    cutoff = timezone.now() - IDEMPOTENCY_WINDOW
    used = (
        messages.filter(previous_part__isnull=True, created_at__gte=cutoff)
        .exclude(idempotency_key="")
        .values_list("owner_id", "idempotency_key", "created_at")
    )
    keys = [
        DeletedSendKey(owner_id=owner_id, key=key, used_at=used_at)
        for owner_id, key, used_at in used
    ]
    if not keys:
        return
    DeletedSendKey.objects.bulk_create(
        keys,
        update_conflicts=True,
        unique_fields=["owner", "key"],
        update_fields=["used_at"],
    )


def deleted_send_keys_purge() -> int:
    """Delete kept keys older than IDEMPOTENCY_WINDOW; return how many."""
    cutoff = timezone.now() - IDEMPOTENCY_WINDOW
    deleted, _per_model = DeletedSendKey.objects.filter(used_at__lt=cutoff).delete()
    return deleted


def _same_recipient(message: Message, customer, to: dict | None) -> bool:
    """Return True when `message` went to the recipient of this send."""
    if customer is not None:
        return message.customer_id == customer.pk
    if to is None:
        return False
    if "phone" in to:
        return message.customer.match_key == match_key(to["phone"])
    return message.customer.lid == to["lid"]


def _parts_create(
    user, customer, parts: list[str], source: str, *, key: str = "", now
) -> list[Message]:
    messages: list[Message] = []
    previous = None
    for index, part in enumerate(parts, start=1):
        metadata = {"part": index, "parts": len(parts)} if len(parts) > 1 else {}
        previous = row_create(
            Message,
            owner=user,
            customer=customer,
            direction=Message.Direction.OUTBOUND,
            source=source,
            kind=Message.Kind.TEXT,
            body=part,
            metadata=metadata,
            status=Status.QUEUED,
            chat_jid=customer.wa_jid,
            timestamp=now,
            previous_part=previous,
            idempotency_key=key,
        )
        messages.append(previous)
    return messages


def message_send_enqueue(
    message_id: int, *, countdown: float | None = None, attempt: int = 0
) -> bool:
    """Queue the send task for one message; return False if the broker failed.

    The message is stored as `queued` before this runs, so a broker outage
    only delays it: `message_requeue_stuck` queues it again later. The
    error is logged instead of raised, because the send was already accepted.
    `attempt` is the number of attempts already made, which counts against
    WA_SEND_MAX_RETRIES as Celery's own retries do.
    """
    from messaging.tasks import message_send as message_send_task

    options = {"retries": attempt} if attempt else {}
    return task_enqueue(
        message_send_task,
        (message_id,),
        f"message {message_id}",
        countdown=countdown,
        **options,
    )


def task_enqueue(task, args: tuple, label: str, **options) -> bool:
    """Queue a send task; return False, after logging, if the broker failed.

    The messages it sends are stored as `queued` first, so a broker outage
    only delays them until `message_requeue_stuck` queues them again.
    `label` names the task's work in the log, and `options` go to
    `apply_async`.
    """
    try:
        task.apply_async(args, **options)
    except (OperationalError, OSError) as error:
        logger.warning(
            "Could not queue %s (%s); the stuck-message requeue sends its "
            "messages once the broker is back",
            label,
            error.__class__.__name__,
        )
        return False
    return True


def message_recipient(message: Message) -> str | None:
    """Return where to send: the JID WhatsApp last used, else the number.

    The first attempt stores its choice in ``metadata["send_to"]``, and
    retries reuse it. The gateway keys a send by message id and rejects a
    repeat with another recipient, and an inbound message may change the
    customer's JID between two attempts.
    """
    stored = message.metadata.get("send_to")
    if isinstance(stored, str) and stored:
        return stored
    customer = message.customer
    return customer.wa_jid or customer.phone or customer.lid or None


def message_claim(message_id: int, *, metadata: dict | None = None) -> bool:
    """Move a queued message to `sending`; False when another run has it.

    The conditional UPDATE is the lock. Of two task runs for one message,
    only one changes the row, so a redelivered task never sends twice.
    `metadata`, when given, replaces the message's metadata in the same
    UPDATE (see `message_metadata_with_recipient`).
    """
    changes = {"status": Status.SENDING, "updated_at": timezone.now()}
    if metadata is not None:
        changes["metadata"] = metadata
    claimed = Message.objects.filter(pk=message_id, status=Status.QUEUED).update(
        **changes
    )
    return claimed == 1


def message_metadata_with_recipient(message: Message, recipient: str) -> dict | None:
    """Return the metadata that keeps the first attempt's recipient.

    None when ``metadata["send_to"]`` already holds it. The task stores the
    result with its claim, so a retry sends to the same JID.
    """
    if message.metadata.get("send_to") == recipient:
        return None
    return {**message.metadata, "send_to": recipient}


def message_postpone(message_id: int) -> None:
    """Touch a queued message whose task was delayed on purpose (pacing).

    `message_requeue_stuck` picks messages by `updated_at`, so a long send
    backlog is not queued a second time every minute.
    """
    Message.objects.filter(pk=message_id, status=Status.QUEUED).update(
        updated_at=timezone.now()
    )


def message_release(message_id: int) -> bool:
    """Put a claimed message back to `queued` so a retry can claim it."""
    released = Message.objects.filter(pk=message_id, status=Status.SENDING).update(
        status=Status.QUEUED, updated_at=timezone.now()
    )
    return released == 1


def message_record_sent(
    *, message_id: int, gateway_message_id, to_jid=None, customer=None
) -> None:
    """Record a send the gateway accepted.

    The status becomes `sent` unless a receipt already moved it further,
    and the customer's `wa_jid` becomes the JID the gateway sent to.
    `customer`, when the caller has it, saves reading it again.

    Usually this is one UPDATE, which also checks for held updates. When the
    WhatsApp id is already on another row (the send's echo was stored
    first) or on this one with another value, the row is locked and the
    echo merged instead.
    """
    gateway_id = (
        gateway_message_id
        if isinstance(gateway_message_id, str) and gateway_message_id
        else None
    )
    jid = sent_to_jid(message_id, to_jid)
    updates_held = _sent_update(message_id, gateway_id, jid)
    sent_record_finish(
        message_id,
        updates_held=updates_held,
        gateway_id=gateway_id,
        jid=jid,
        customer=customer,
    )


def sent_record_finish(
    message_id: int, *, updates_held, gateway_id: str | None, jid: str | None, customer
) -> None:
    """Finish recording a send after its conditional UPDATE.

    `updates_held` is what the UPDATE returned: None when it could not
    record the send (the locked path merges the echo instead), True when
    held updates wait for the WhatsApp id. Then the customer's `wa_jid`
    becomes the JID the gateway sent to.
    """
    if updates_held is None:
        _sent_record_locked(message_id, gateway_id, jid)
    elif updates_held:
        held_updates_apply_locked(Message.objects.filter(pk=message_id))

    # Most sends go to the JID the customer already has; skipping the
    # UPDATE then saves a query and a row write per message.
    if jid is None:
        return
    if customer is None:
        customer = Customer.objects.filter(messages__pk=message_id).first()
    if customer is not None and customer.wa_jid != jid:
        Customer.objects.filter(pk=customer.pk).update(wa_jid=jid)
        customer.wa_jid = jid


def _sent_update(message_id: int, gateway_id: str | None, jid: str | None):
    """Record the send in one conditional UPDATE, or return None when it cannot.

    The row must have no WhatsApp id yet or this one. A unique-constraint
    error means that the send's echo already has the id. The locked path
    merges both cases. Otherwise the statement also returns whether updates
    for the WhatsApp id wait in PendingMessageUpdate (False without an id).

    Written in SQL because it runs for every send: the ORM form with its
    CASE expressions cost more Python time than the database spent.
    """
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    held_table = quote(PendingMessageUpdate._meta.db_table)
    now = timezone.now()
    status, sent_at, chat_jid, gateway_column = (
        quote("status"),
        quote("sent_at"),
        quote("chat_jid"),
        quote("gateway_message_id"),
    )
    sets = [
        f"{status} = CASE WHEN {status} IN (%s, %s) THEN %s ELSE {status} END",
        f"{sent_at} = COALESCE({sent_at}, %s)",
        f"{quote('updated_at')} = %s",
    ]
    params: list = [Status.QUEUED, Status.SENDING, Status.SENT, now, now]
    where = f"{quote('id')} = %s"
    where_params: list = [message_id]
    held_sql = "1 = 0"
    held_params: list = []
    if gateway_id is not None:
        sets.append(f"{gateway_column} = %s")
        params.append(gateway_id)
        where += f" AND ({gateway_column} IS NULL OR {gateway_column} = %s)"
        where_params.append(gateway_id)
        held_sql = (
            f"EXISTS (SELECT 1 FROM {held_table} AS held "
            f"WHERE held.{quote('owner_id')} = {table}.{quote('owner_id')} "
            f"AND held.{gateway_column} = %s)"
        )
        held_params.append(gateway_id)
    if jid is not None:
        sets.append(
            f"{chat_jid} = CASE WHEN {chat_jid} = '' THEN %s ELSE {chat_jid} END"
        )
        params.append(jid)
    sql = f"UPDATE {table} SET {', '.join(sets)} WHERE {where} RETURNING {held_sql}"

    # A savepoint only inside a transaction. In autocommit mode a failed
    # statement leaves the connection usable, and BEGIN and COMMIT would
    # be two more round trips per send.
    guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with guard, connection.cursor() as cursor:
            cursor.execute(sql, [*params, *where_params, *held_params])
            row = cursor.fetchone()
    except IntegrityError:
        return None
    if row is None:
        return None
    return bool(row[0])


def _sent_record_locked(message_id: int, gateway_id: str | None, jid: str | None):
    with transaction.atomic():
        message = unique_row(Message.objects.select_for_update().filter(pk=message_id))
        if message is None:
            # Deleted with its customer while the gateway was sending it.
            logger.info(
                "Message %s was deleted before its send was recorded", message_id
            )
            return
        fields = []
        if gateway_id is not None and message.gateway_message_id != gateway_id:
            # Saved with the status below: one UPDATE instead of two.
            gateway_id_assign(message, gateway_id, save=False)
            fields.append("gateway_message_id")
        if STATUS_RANK.get(message.status, -1) < STATUS_RANK[Status.SENT]:
            message.status = Status.SENT
            fields.append("status")
        if message.sent_at is None:
            message.sent_at = timezone.now()
            fields.append("sent_at")
        if jid is not None and not message.chat_jid:
            message.chat_jid = jid
            fields.append("chat_jid")
        if fields:
            message.save(update_fields=[*fields, "updated_at"])


def sent_to_jid(message_id: int, to_jid) -> str | None:
    """Return the customer JID the gateway sent to, or None when unusable."""
    if not isinstance(to_jid, str):
        return None
    try:
        jid = jid_parse(to_jid)
    except ValidationError:
        logger.warning(
            "The gateway returned an invalid to_jid for message %s", message_id
        )
        return None
    if not jid.is_customer:
        return None
    return str(jid)


def message_fail(*, message_id: int, code: str, reason: str) -> bool:
    """Mark an unsent message failed, and every later part of it.

    The failed parts go back to the daily quota, because WhatsApp never had
    them. The message itself stays counted when `code` is in
    UNKNOWN_OUTCOME_FAILURES, because the gateway may have sent it. Its
    later parts are sent only after it, so they always go back.
    """
    now = timezone.now()
    unsent = [Status.QUEUED, Status.SENDING]
    with transaction.atomic():
        first = (
            Message.objects.filter(pk=message_id)
            .values_list("owner_id", "timestamp", "source")
            .first()
        )
        failed = Message.objects.filter(pk=message_id, status__in=unsent).update(
            status=Status.FAILED,
            error_code=code,
            error=reason,
            failed_at=now,
            updated_at=now,
        )
        parts_failed = 0 if code in UNKNOWN_OUTCOME_FAILURES else failed

        following = Message.objects.filter(previous_part_id=message_id).first()
        while following is not None:
            parts_failed += Message.objects.filter(
                pk=following.pk, status__in=unsent
            ).update(
                status=Status.FAILED,
                error_code="previous_part_failed",
                error=failure_sentence_stored("previous_part_failed"),
                failed_at=now,
                updated_at=now,
            )
            following = Message.objects.filter(previous_part_id=following.pk).first()

        if first is not None and parts_failed:
            owner_id, timestamp, source = first
            if source in COUNTED_SOURCES:
                quota_refund(owner_id, [timestamp] * parts_failed)
    return failed == 1


def messages_delete(*, message_ids) -> int:
    """Delete messages and their later parts; return how many were deleted.

    Deleting a part deletes the parts after it (`previous_part` cascades),
    so they are read first. Their idempotency keys are kept, so that a
    repeat of their send does not send again. The queued parts of counted sources never
    reached WhatsApp and go back to the daily quota once the delete
    commits, as a deleted customer's do. They are locked before the
    delete, so that a send task's claim either came first, and its part
    stays counted, or waits and then finds no row.
    """
    deleted_ids = set(message_ids)
    with transaction.atomic():
        later = deleted_ids
        while later:
            next_parts = Message.objects.filter(previous_part_id__in=later)
            later = set(next_parts.values_list("pk", flat=True)) - deleted_ids
            deleted_ids |= later
        queued = (
            Message.objects.select_for_update()
            .filter(
                pk__in=deleted_ids,
                direction=Message.Direction.OUTBOUND,
                status=Status.QUEUED,
                source__in=COUNTED_SOURCES,
            )
            .order_by("pk")
            .values_list("owner_id", "timestamp")
        )
        unsent: dict[int, list] = {}
        for owner_id, timestamp in queued:
            unsent.setdefault(owner_id, []).append(timestamp)
        deleting = Message.objects.filter(pk__in=deleted_ids)
        deleted_send_keys_record(deleting)
        deleted = deleting.delete()[1]
        # After commit, because a send locks its owner's count before it
        # inserts, and this delete holds message rows.
        for owner_id, timestamps in unsent.items():
            transaction.on_commit(partial(quota_refund, owner_id, timestamps))
    count = deleted.get(Message._meta.label, 0)
    logger.info(
        "Deleted %s messages; %s queued parts went back to the quota",
        count,
        sum(len(timestamps) for timestamps in unsent.values()),
    )
    return count


# Gateway error codes a retry can resolve although their HTTP status is 4xx.
# A send still running on the gateway after a timeout is reported "in doubt"
# until it ends, and then every repeat gets its result.
RETRYABLE_GATEWAY_CODES = frozenset({"GW_ERR_SEND_IN_DOUBT"})

# Gateway codes for a client that is not connected (or not loaded yet after
# a gateway restart).
NOT_READY_GATEWAY_CODES = frozenset(
    {"GW_ERR_CLIENT_NOT_READY", "GW_ERR_SESSION_NOT_FOUND"}
)


def gateway_error_retryable(*, status, code, user) -> bool:
    """Return True when a 4xx from the gateway may pass if the send waits.

    A client that is not ready is retried while the session is connected or
    reconnecting by itself, so messages queued during a reconnect go out
    once it is back. After a logout or failure nothing will bring it back.
    """
    if code in RETRYABLE_GATEWAY_CODES:
        return True
    not_ready = code in NOT_READY_GATEWAY_CODES or (not code and status == 409)
    return not_ready and whatsapp_state(user) in SENDABLE_STATES


def gateway_failure_reason(*, status, code, message: Message) -> tuple[str, str]:
    """Return (error_code, sentence) for a send the gateway rejected for good.

    The gateway's error code decides where it is known, because one HTTP
    status covers several causes (409 is "not connected", "in doubt" and
    "message id reused"). The sentence is in English, as stored.
    """
    number = message.customer.phone or message.customer.wa_jid or ""
    failure_code = _gateway_failure_code(status, code or "")
    if failure_code is not None:
        return failure_code, failure_sentence_stored(failure_code, number=number)

    code = code or ""
    with translation.override(STORED_LANGUAGE):
        if code.startswith("GW_ERR_INVALID") or (not code and status == 400):
            return "invalid_request", _(
                "The gateway rejected the message as invalid (%(code)s)."
            ) % {"code": code or status}
        return "send_failed", _(
            "The message could not be sent (gateway status %(status)s, %(code)s). "
            "Send it again later."
        ) % {"status": status or _("none"), "code": code or _("no code")}


def _gateway_failure_code(status, code: str) -> str | None:
    """Return the failure code with a fixed sentence for a gateway error."""
    if code in NOT_READY_GATEWAY_CODES or (not code and status == 409):
        return "session_not_connected"
    if code == "GW_ERR_NOT_ON_WHATSAPP" or (not code and status == 422):
        return "not_on_whatsapp"
    if code.startswith("GW_ERR_INVALID_RECIPIENT") or code == "GW_ERR_INVALID_PHONE":
        return "invalid_recipient"
    if code == "GW_ERR_SEND_IN_DOUBT":
        return "send_in_doubt"
    if code.startswith("GW_ERR_SIGNATURE"):
        return "gateway_misconfigured"
    return None


def message_log_label(message: Message) -> str:
    """Identify a message in logs without its text or full number."""
    return f"message {message.pk} to {phone_mask(message_recipient(message) or '')}"
