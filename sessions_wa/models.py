"""Each subscriber's WhatsApp session and the log of gateway events."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class WhatsAppSession(models.Model):
    """The one WhatsApp Web login a subscriber links, as Django last knew it.

    `state` changes only through `sessions_wa.services.session_transition`.
    `last_event_at` and `last_event_seq` identify the newest gateway session
    event applied, so an older event never moves the state back.
    """

    class State(models.TextChoices):
        NEW = "new", _("Not linked yet")
        STARTING = "starting", _("Starting")
        QR_PENDING = "qr_pending", _("Waiting for the QR code scan")
        QR_EXPIRED = "qr_expired", _("QR code expired")
        CONNECTED = "connected", _("Connected")
        DISCONNECTED = "disconnected", _("Disconnected")
        LOGGED_OUT = "logged_out", _("Logged out")
        FAILED = "failed", _("Failed")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="whatsapp_session",
    )
    session_key = models.CharField(max_length=32, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.NEW)
    # Kept for API clients written against the boolean; always derived from
    # `state` by the transition function.
    connected = models.BooleanField(default=False)

    qr = models.TextField(
        blank=True, help_text=_("Raw QR string from WhatsApp, never an image.")
    )
    qr_expires_at = models.DateTimeField(null=True, blank=True)

    jid = models.CharField(max_length=128, blank=True)
    phone = models.CharField(max_length=20, blank=True, help_text=_("E.164"))
    lid = models.CharField(max_length=128, blank=True)
    push_name = models.CharField(max_length=255, blank=True)
    connected_since = models.DateTimeField(null=True, blank=True)

    last_error = models.TextField(blank=True)
    last_error_code = models.CharField(max_length=32, blank=True)
    gateway_url = models.CharField(max_length=255, blank=True)

    # The time a reconcile first got no response from the gateway. The next
    # response or callback clears it, and until then the state may be stale.
    gateway_unreachable_since = models.DateTimeField(null=True, blank=True)

    last_event_at = models.DateTimeField(null=True, blank=True)
    last_event_seq = models.BigIntegerField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("WhatsApp session")
        verbose_name_plural = _("WhatsApp sessions")
        indexes = [
            # reconcile: sessions in a live state not touched for a while.
            models.Index(fields=["state", "updated_at"], name="wa_session_state_upd"),
            # cleanup: sessions unused for WA_SESSION_MAX_IDLE_DAYS.
            models.Index(fields=["last_activity_at"], name="wa_session_activity"),
        ]

    def __str__(self):
        return f"{self.session_key} ({self.state})"

    @staticmethod
    def key_for_user_id(user_id: int) -> str:
        return f"user_{user_id}"


class GatewayEvent(models.Model):
    """One callback event received from the gateway, recorded once by id.

    The unique `event_id` makes a repeated delivery a no-op. Message text and
    QR strings are removed from `data` before it is stored.
    """

    class Outcome(models.TextChoices):
        APPLIED = "applied", _("Applied")
        IGNORED = "ignored", _("Ignored")
        STALE = "stale", _("Stale")
        REJECTED = "rejected", _("Rejected")
        DUPLICATE = "duplicate", _("Duplicate")
        FAILED = "failed", _("Failed")

    event_id = models.UUIDField(unique=True)
    # Indexed by wa_event_user_recv, which starts with the user; a second
    # index would cost a write for every logged event.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="gateway_events",
        db_index=False,
    )
    # The user id as the gateway sent it, kept when no such user exists.
    gateway_user_id = models.BigIntegerField()
    seq = models.BigIntegerField()
    type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    data = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name = _("gateway event")
        verbose_name_plural = _("gateway events")
        indexes = [
            models.Index(fields=["user", "received_at"], name="wa_event_user_recv"),
            # Pruning the log by age.
            models.Index(fields=["received_at"], name="wa_event_received"),
        ]

    def __str__(self):
        return f"{self.type} {self.event_id} ({self.outcome})"
