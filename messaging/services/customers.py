"""Customer writes: create, update, delete, and identify senders.

A customer is found by `match_key` (one key for all spellings of a number)
or by LID. When WhatsApp reveals that a LID and a number are one person,
the two rows become one (`customer_merge`).
"""

from __future__ import annotations

import logging
from functools import partial

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from messaging.models import Customer, Message
from messaging.phones import match_key, phone_mask, phone_parse
from whatsapp_saas.exceptions import ApplicationError

from .quota import COUNTED_SOURCES, quota_refund

logger = logging.getLogger(__name__)

NAME_MAX_LENGTH = Customer._meta.get_field("name").max_length


def validation_message(error: ValidationError) -> str:
    """Return the first message of a ValidationError as plain text."""
    return error.messages[0] if error.messages else str(error)


def phone_clean(*, owner, value, field: str = "phone") -> str:
    """Parse a typed number in the owner's default country; return E.164.

    Raises ApplicationError with code ``invalid_phone`` naming the field and
    the value.
    """
    try:
        return phone_parse(value, default_region=owner.default_country)
    except ValidationError as error:
        raise ApplicationError(
            validation_message(error),
            code="invalid_phone",
            extra={"field": field, "value": value if isinstance(value, str) else None},
        ) from None


def _name_clean(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApplicationError(
            _("The name must be text."), code="invalid_name", extra={"field": "name"}
        )
    name = " ".join(value.split())
    if len(name) > NAME_MAX_LENGTH:
        raise ApplicationError(
            _("The name has %(length)s characters; the maximum is %(max)s.")
            % {"length": len(name), "max": NAME_MAX_LENGTH},
            code="invalid_name",
            extra={"field": "name"},
        )
    return name


def _duplicate_error(existing: Customer, phone: str) -> ApplicationError:
    return ApplicationError(
        _(
            "%(phone)s is already saved as the customer “%(name)s”; edit that "
            "customer instead."
        )
        % {"phone": phone, "name": existing.display_name},
        code="duplicate_customer",
        extra={"field": "phone", "value": phone, "customer_id": str(existing.code)},
        status_code=409,
    )


def customer_create(*, owner, phone, name: str = "") -> Customer:
    """Create a customer from a typed number; one customer per person."""
    e164 = phone_clean(owner=owner, value=phone)
    key = match_key(e164)
    clean_name = _name_clean(name)

    existing = Customer.objects.filter(owner=owner, match_key=key).first()
    if existing is not None:
        raise _duplicate_error(existing, e164)

    try:
        with transaction.atomic():
            customer = Customer.objects.create(
                owner=owner, name=clean_name, phone=e164, match_key=key
            )
    except IntegrityError:
        existing = Customer.objects.filter(owner=owner, match_key=key).first()
        if existing is None:
            raise
        raise _duplicate_error(existing, e164) from None

    logger.info("Created customer %s for user %s", customer.pk, owner.pk)
    return customer


def customer_update(*, customer: Customer, name=None, phone=None) -> Customer:
    """Change a customer's name and/or number; None leaves a field as it is.

    A new number that is another spelling of the same one (the Brazilian
    ninth digit, say) keeps the JID WhatsApp uses. A different number clears
    that JID, so the next send goes to the new number.
    """
    fields = []
    if name is not None:
        customer.name = _name_clean(name)
        fields.append("name")

    if phone is not None:
        e164 = phone_clean(owner=customer.owner, value=phone)
        key = match_key(e164)
        other = (
            Customer.objects.filter(owner=customer.owner, match_key=key)
            .exclude(pk=customer.pk)
            .first()
        )
        if other is not None:
            raise _duplicate_error(other, e164)
        if key != customer.match_key:
            customer.wa_jid = ""
            fields.append("wa_jid")
        customer.phone = e164
        customer.match_key = key
        customer.phone_unresolved = False
        fields += ["phone", "match_key", "phone_unresolved"]

    if not fields:
        return customer

    try:
        with transaction.atomic():
            customer.save(update_fields=[*fields, "updated_at"])
    except IntegrityError:
        other = (
            Customer.objects.filter(owner=customer.owner, match_key=customer.match_key)
            .exclude(pk=customer.pk)
            .first()
        )
        if other is None:
            raise
        raise _duplicate_error(other, customer.phone) from None

    logger.info("Updated customer %s (%s)", customer.pk, ", ".join(fields))
    return customer


def customer_delete(*, customer: Customer) -> None:
    """Delete a customer and their conversation.

    The customer's row is locked first. A send that commits a message
    before the lock has its message deleted with the customer. A send
    that commits after it waits for the delete and then fails its foreign
    key check, which the send reports as the customer not found. Without
    the lock, a message committed between the deletes of the messages and
    of the customer failed the delete instead. Queued parts never reached
    WhatsApp, so they go back to the daily quota once the delete commits.
    The messages' idempotency keys are kept, so that a repeat of their
    send does not send again.
    """
    customer_id = customer.pk
    owner_id = customer.owner_id
    with transaction.atomic():
        locked = Customer.objects.select_for_update().filter(pk=customer_id)
        list(locked.values_list("pk", flat=True))
        # Locked, so that a message failed or claimed meanwhile is read in
        # its new state and given back once at most.
        queued = (
            Message.objects.select_for_update()
            .filter(
                customer_id=customer_id,
                status=Message.Status.QUEUED,
                source__in=COUNTED_SOURCES,
            )
            .values_list("timestamp", flat=True)
        )
        unsent = list(queued)
        # Imported here: the sending module imports this one.
        from .sending import deleted_send_keys_record

        deleted_send_keys_record(Message.objects.filter(customer_id=customer_id))
        customer.delete()
        if unsent:
            # After commit, because a send of this owner locks the count's
            # row before this customer's, and this delete holds the customer.
            transaction.on_commit(partial(quota_refund, owner_id, unsent))
    logger.info("Deleted customer %s of user %s", customer_id, owner_id)


def customer_for_phone(*, owner, phone: str) -> Customer:
    """Return the owner's customer for an E.164 number, creating it if new."""
    key = match_key(phone)
    customer = Customer.objects.filter(owner=owner, match_key=key).first()
    if customer is not None:
        return customer
    try:
        with transaction.atomic():
            customer = Customer.objects.create(owner=owner, phone=phone, match_key=key)
    except IntegrityError:
        customer = Customer.objects.filter(owner=owner, match_key=key).first()
        if customer is None:
            raise
        return customer
    logger.info("Created customer %s for user %s from a send", customer.pk, owner.pk)
    return customer


def customer_merge(*, keep: Customer, drop: Customer) -> Customer:
    """Move `drop`'s messages and identity to `keep`, then delete `drop`.

    Used when a LID-only customer turns out to be a known number.
    """
    moved = Message.objects.filter(customer=drop).update(customer=keep)
    drop_lid = drop.lid
    if not keep.name and drop.name:
        keep.name = drop.name
    if not keep.push_name and drop.push_name:
        keep.push_name = drop.push_name
    if not keep.wa_jid and drop.wa_jid:
        keep.wa_jid = drop.wa_jid
    drop_id = drop.pk
    drop.delete()

    if drop_lid and not keep.lid:
        keep.lid = drop_lid
    keep.save()
    logger.info(
        "Merged customer %s into %s (%s messages moved)", drop_id, keep.pk, moved
    )
    return keep


def customer_identify(
    *,
    owner,
    phone: str | None = None,
    lid: str | None = None,
    jid: str | None = None,
    push_name: str | None = None,
    create: bool = True,
) -> Customer | None:
    """Find the customer for a WhatsApp identity, updating what it reveals.

    `phone` is E.164, `lid` a normalised ``...@lid`` JID and `jid` the JID
    WhatsApp used for the chat, which becomes the customer's `wa_jid`. A
    phone and a LID that belong to two rows merge into the phone's row.
    Returns None when nothing matches and `create` is False. Call it inside a
    transaction, because it locks the rows it reads.
    """
    key = match_key(phone) if phone else None
    by_phone = None
    if key:
        by_phone = (
            Customer.objects.select_for_update()
            .filter(owner=owner, match_key=key)
            .first()
        )
    by_lid = None
    if lid:
        by_lid = (
            Customer.objects.select_for_update().filter(owner=owner, lid=lid).first()
        )

    if by_phone and by_lid and by_phone.pk != by_lid.pk:
        customer = customer_merge(keep=by_phone, drop=by_lid)
    else:
        customer = by_phone or by_lid

    if customer is None:
        if not create:
            return None
        customer = _customer_create_from_identity(
            owner=owner, phone=phone, key=key, lid=lid, jid=jid, push_name=push_name
        )
        if customer is not None:
            return customer
        # Another transaction created the row first; read it and update.
        customer = customer_identify(
            owner=owner,
            phone=phone,
            lid=lid,
            jid=jid,
            push_name=push_name,
            create=False,
        )
        if customer is None:
            raise ApplicationError(
                _("The customer could not be saved because of a conflicting row."),
                code="customer_conflict",
            )
        return customer

    _customer_identity_update(
        customer, phone=phone, key=key, lid=lid, jid=jid, push_name=push_name
    )
    return customer


def _customer_create_from_identity(*, owner, phone, key, lid, jid, push_name):
    try:
        with transaction.atomic():
            customer = Customer.objects.create(
                owner=owner,
                push_name=(push_name or "")[:NAME_MAX_LENGTH],
                phone=phone,
                match_key=key,
                lid=lid,
                wa_jid=jid or "",
                phone_unresolved=phone is None,
            )
    except IntegrityError:
        return None
    logger.info(
        "Created customer %s for user %s from WhatsApp (%s)",
        customer.pk,
        owner.pk,
        phone_mask(phone) if phone else "LID only",
    )
    return customer


def customer_identity_changes(
    customer, *, phone=None, key=None, lid=None, jid=None, push_name=None
) -> dict:
    """Return the fields a WhatsApp identity would change on `customer`.

    The arguments are those of `customer_identify` plus `key`, the phone's
    match key. An empty result means the stored row already contains every value.
    """
    changes = {}
    if phone and customer.match_key != key:
        changes["phone"] = phone
        changes["match_key"] = key
    if phone and customer.phone_unresolved:
        changes["phone_unresolved"] = False
    if lid and customer.lid != lid:
        changes["lid"] = lid
    if jid and customer.wa_jid != jid:
        changes["wa_jid"] = jid
    if push_name and customer.push_name != push_name[:NAME_MAX_LENGTH]:
        changes["push_name"] = push_name[:NAME_MAX_LENGTH]
    return changes


def _customer_identity_update(customer, *, phone, key, lid, jid, push_name):
    changes = customer_identity_changes(
        customer, phone=phone, key=key, lid=lid, jid=jid, push_name=push_name
    )
    for name, value in changes.items():
        setattr(customer, name, value)
    if changes:
        customer.save(update_fields=[*changes, "updated_at"])
