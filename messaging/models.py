"""Customers, their messages, and message updates that arrive early."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Customer(models.Model):
    """A person a subscriber talks to on WhatsApp, owned by that subscriber.

    One person is one row per owner. `match_key` folds the spellings of one
    number into one value (see `messaging.phones.match_key`), and `lid` is
    WhatsApp's privacy id when one is known. A customer first seen only through a LID
    has no phone (`phone_unresolved`) until WhatsApp reveals the number.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customers"
    )
    name = models.CharField(_("name"), max_length=200, blank=True)
    push_name = models.CharField(
        _("WhatsApp name"),
        max_length=200,
        blank=True,
        help_text=_("The name the customer set in WhatsApp, as last seen."),
    )
    # NULL, not "", for "unknown": the unique constraints below skip NULLs,
    # so any number of customers may lack a phone or a LID.
    phone = models.CharField(_("phone"), max_length=16, null=True, blank=True)  # noqa: DJ001
    match_key = models.CharField(  # noqa: DJ001
        max_length=16, null=True, blank=True, editable=False
    )
    wa_jid = models.CharField(
        _("WhatsApp JID"),
        max_length=64,
        blank=True,
        help_text=_("The JID WhatsApp last used for this customer; sends go there."),
    )
    lid = models.CharField(_("LID"), max_length=64, null=True, blank=True)  # noqa: DJ001
    phone_unresolved = models.BooleanField(
        default=False,
        help_text=_("Known only by a LID; WhatsApp has not revealed the number."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "match_key"],
                condition=Q(match_key__isnull=False),
                name="customer_unique_match_key_per_owner",
            ),
            models.UniqueConstraint(
                fields=["owner", "lid"],
                condition=Q(lid__isnull=False),
                name="customer_unique_lid_per_owner",
            ),
        ]
        indexes = [models.Index(fields=["owner", "created_at"])]

    def __str__(self):
        # display_name may be a lazy translation, and Python requires a str.
        return str(self.display_name)

    @property
    def display_name(self) -> str:
        return self.name or self.push_name or self.phone or _("Unknown number")


class Message(models.Model):
    """One WhatsApp message in a customer's conversation, in either direction.

    `timestamp` is the message's own time (when WhatsApp reports it was sent),
    not when this row was written; conversations are ordered by
    (`timestamp`, `id`). An outbound text longer than WhatsApp's limit is
    stored as one row per part, linked through `previous_part`, and the
    parts are sent in order.
    """

    class Direction(models.TextChoices):
        INBOUND = "inbound", _("Inbound")
        OUTBOUND = "outbound", _("Outbound")

    class Source(models.TextChoices):
        API = "api", _("API")
        DASHBOARD = "dashboard", _("Dashboard")
        PHONE = "phone", _("Phone")
        CONTACT = "contact", _("Contact")

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        IMAGE = "image", _("Image")
        VIDEO = "video", _("Video")
        AUDIO = "audio", _("Audio")
        DOCUMENT = "document", _("Document")
        STICKER = "sticker", _("Sticker")
        LOCATION = "location", _("Location")
        CONTACT = "contact", _("Contact card")
        INTERACTIVE_REPLY = "interactive_reply", _("Button or list reply")
        UNDECRYPTABLE = "undecryptable", _("Could not be decrypted")
        UNAVAILABLE = "unavailable", _("Not available")
        UNKNOWN = "unknown", _("Unsupported")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")
        RECEIVED = "received", _("Received")

    # Placeholder kinds that later real content for the same id replaces.
    PLACEHOLDER_KINDS = frozenset({Kind.UNDECRYPTABLE, Kind.UNAVAILABLE})

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No index of its own: every index below starts with the owner, and
    # each index costs a write for every stored message.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="messages"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TEXT)
    # No length cap: inbound texts can exceed WhatsApp's send limit, and
    # outbound texts are split into parts before they are stored.
    body = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    error_code = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    # NULL until the gateway accepts the send; the unique constraint skips it.
    gateway_message_id = models.CharField(  # noqa: DJ001
        max_length=128, null=True, blank=True
    )
    chat_jid = models.CharField(max_length=64, blank=True)
    quoted_id = models.CharField(max_length=128, blank=True)
    timestamp = models.DateTimeField()
    timestamp_estimated = models.BooleanField(
        default=False,
        help_text=_("WhatsApp gave no time; the time the message arrived is used."),
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    edited = models.BooleanField(default=False)
    edited_content_unavailable = models.BooleanField(
        default=False,
        help_text=_("The message was edited but the new text could not be decrypted."),
    )
    edit_history = models.JSONField(default=list, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    reactions = models.JSONField(default=dict, blank=True)
    unread = models.BooleanField(default=False)
    idempotency_key = models.CharField(
        _("idempotency key"),
        max_length=64,
        blank=True,
        help_text=_(
            "The key the sender gave to make a repeated send return this "
            "message instead of sending again."
        ),
    )
    previous_part = models.OneToOneField(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="next_part",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # One row per WhatsApp message: replays, duplicate callbacks and
            # the echo of a message sent through the API find this row.
            models.UniqueConstraint(
                fields=["owner", "gateway_message_id", "direction"],
                condition=Q(gateway_message_id__isnull=False),
                name="message_unique_gateway_id_per_owner",
            ),
            # Every part of a long text carries the key. Only the first part
            # must be unique.
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~Q(idempotency_key="") & Q(previous_part__isnull=True),
                name="message_unique_idempotency_key_per_owner",
            ),
        ]
        indexes = [
            models.Index(
                fields=["owner", "customer", "timestamp", "id"],
                name="message_conversation_idx",
            ),
            models.Index(
                fields=["status", "updated_at"],
                condition=Q(status__in=["queued", "sending"]),
                name="message_unsent_idx",
            ),
            # The drain task's read of a subscriber's queued messages.
            models.Index(
                fields=["owner", "id"],
                condition=Q(status="queued"),
                name="message_queued_idx",
            ),
            models.Index(
                fields=["owner", "customer"],
                condition=Q(unread=True),
                name="message_unread_idx",
            ),
            models.Index(
                fields=["owner", "direction", "created_at"],
                name="message_owner_created_idx",
            ),
        ]

    def __str__(self):
        return f"{self.direction} {self.kind} {self.code}"

    @property
    def is_outbound(self) -> bool:
        return self.direction == self.Direction.OUTBOUND


class PendingMessageUpdate(models.Model):
    """An update that arrived before the message it refers to.

    WhatsApp can deliver a receipt, an edit, a revoke or a reaction before
    the message itself (offline replays, history sync). The update is kept
    here, keyed by the message's WhatsApp id, and applied when that message
    is stored. `payload` contains the event data.
    """

    class Kind(models.TextChoices):
        STATUS = "status", _("Status")
        EDIT = "edit", _("Edit")
        EDIT_UNAVAILABLE = "edit_unavailable", _("Edit that could not be decrypted")
        REVOKE = "revoke", _("Revoke")
        REACTION = "reaction", _("Reaction")

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="pending_message_updates",
    )
    gateway_message_id = models.CharField(max_length=128)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "gateway_message_id"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self):
        return f"{self.kind} for {self.gateway_message_id}"


class DailySendCount(models.Model):
    """Messages a subscriber sent through the dashboard and the API on one day.

    `message_send` adds each send's parts to today's row with one upsert,
    whose row lock also orders concurrent sends of the subscriber, so the
    daily quota check costs the same at the first and the 100,000th message
    of a day. Days run midnight to midnight in the server's TIME_ZONE.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="daily_send_counts",
    )
    day = models.DateField()
    sent = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "day"], name="daily_send_count_one_row_per_day"
            ),
        ]

    def __str__(self):
        return f"{self.sent} on {self.day}"


class DeletedSendKey(models.Model):
    """An idempotency key whose messages were deleted within its window.

    A repeat of that send then gets an error and sends nothing, as a repeat
    returns the stored messages and sends nothing while they exist.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    key = models.CharField(max_length=64)
    # When the send that used the key was accepted; the window counts from it.
    used_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "key"], name="deleted_send_key_unique_per_owner"
            ),
        ]
        indexes = [models.Index(fields=["used_at"])]

    def __str__(self):
        return f"{self.key} used at {self.used_at}"
