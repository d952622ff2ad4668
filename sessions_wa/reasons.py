"""Reasons a session stopped working: a stable code and a sentence for people.

`WhatsAppSession.last_error_code` stores the code and `last_error` the English
sentence (for the admin, logs and API clients). Pages translate by code, so the
sentence appears in the subscriber's language whatever language was active
when the error was stored.
"""

from __future__ import annotations

from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

GATEWAY_UNREACHABLE = "gateway_unreachable"
GATEWAY_FULL = "gateway_full"
START_REJECTED = "start_rejected"
GATEWAY_LOST = "gateway_lost"
GATEWAY_FAILED = "gateway_failed"
LOGOUT_UNREACHABLE = "logout_unreachable"
SUBSCRIPTION_INACTIVE = "subscription_inactive"

# Reasons of session.disconnected and session.logged_out events.
NETWORK = "network"
RESTART = "restart"
STOPPED = "stopped"
REPLACED = "replaced"
BANNED = "banned"
FATAL = "fatal"
QR_TIMEOUT = "qr_timeout"
DEVICE_REMOVED = "device_removed"
RESTORE_FAILED = "restore_failed"
REQUESTED = "requested"
LOGGED_OUT = "logged_out"

MESSAGES = {
    GATEWAY_UNREACHABLE: _(
        "The WhatsApp gateway could not be reached, so your session did not "
        "start. Try again in a few minutes."
    ),
    GATEWAY_FULL: _(
        "The WhatsApp gateway has no free connections right now. Try again in "
        "a few minutes."
    ),
    START_REJECTED: _(
        "The WhatsApp gateway could not start your session. Try again; if it "
        "keeps failing, contact support."
    ),
    GATEWAY_LOST: _(
        "The WhatsApp gateway restarted before your QR code was ready. Get a "
        "new QR code to try again."
    ),
    GATEWAY_FAILED: _(
        "WhatsApp closed this session. Get a new QR code to link your phone again."
    ),
    LOGOUT_UNREACHABLE: _(
        "The WhatsApp gateway could not be reached to unlink this computer. "
        "Remove it on your phone under Settings, Linked devices."
    ),
    SUBSCRIPTION_INACTIVE: _(
        "WhatsApp was stopped because your subscription is not active."
    ),
    NETWORK: _("The connection to WhatsApp dropped. It reconnects by itself."),
    RESTART: _("The connection to WhatsApp is restarting. It reconnects by itself."),
    STOPPED: _("The session was stopped. Reconnect to continue."),
    REPLACED: _(
        "WhatsApp Web was opened elsewhere with this login, so this session "
        "was closed. Get a new QR code to link again."
    ),
    BANNED: _(
        "WhatsApp refused this number, which may be banned. Check the "
        "WhatsApp app on your phone."
    ),
    FATAL: _(
        "WhatsApp closed the connection with an error that retrying does not "
        "fix. Get a new QR code to link again."
    ),
    DEVICE_REMOVED: _(
        "This computer was removed from Linked devices on your phone. Get a "
        "new QR code to link it again."
    ),
    RESTORE_FAILED: _(
        "After a server restart WhatsApp no longer accepted the saved login. "
        "Get a new QR code to link your phone again."
    ),
    LOGGED_OUT: _(
        "WhatsApp logged this session out. Get a new QR code to link it again."
    ),
}


def reason_message(code: str) -> str:
    """Return the sentence for `code` in the active language, or ""."""
    message = MESSAGES.get(code)
    return str(message) if message is not None else ""


def reason_message_en(code: str, detail: str = "") -> str:
    """Return the English sentence stored in `last_error`, plus any detail."""
    with translation.override("en"):
        message = reason_message(code)
    if message and detail:
        return f"{message} ({detail})"
    return message or detail


def gateway_unreachable_message(since) -> str:
    """Return the notice for a session whose gateway has not responded since
    `since`, in the active language and time zone."""
    return _(
        "Our WhatsApp service has not responded since %(time)s, so the status "
        "shown may be out of date. Messages you send wait in the queue and go "
        "out once it responds again."
    ) % {"time": date_format(timezone.localtime(since), "DATETIME_FORMAT")}
