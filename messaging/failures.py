"""The reason an outbound message failed, in the reader's language.

A failed message stores a stable `error_code` and a sentence in English,
because the worker that fails it serves no user and so has no language.
Pages and the API build the sentence of a known code again, in the
language of the request. Other codes show the stored sentence.
"""

from __future__ import annotations

from django.utils import translation
from django.utils.translation import gettext as _

# The language of the sentences stored with a failed message.
STORED_LANGUAGE = "en"

# Failure codes whose sentence names the customer's number.
CODES_WITH_NUMBER = frozenset({"not_on_whatsapp", "invalid_recipient"})


def failure_sentence(code: str, *, number: str = "") -> str | None:
    """Return the sentence of the failure `code` in the active language.

    `number` is the customer's number or WhatsApp id, for the codes in
    CODES_WITH_NUMBER. Returns None for a code without a fixed sentence,
    such as one that names the gateway's own error code.
    """
    if code == "session_not_connected":
        return _(
            "WhatsApp was not connected when this message was sent. Reconnect "
            "WhatsApp on the Settings page, then send the message again."
        )
    if code == "not_on_whatsapp":
        return _(
            "%(number)s has no WhatsApp account, so the message could not be "
            "delivered. Check the number with the customer."
        ) % {"number": number}
    if code == "invalid_recipient":
        return _(
            "WhatsApp rejected %(number)s as an invalid number. Check the "
            "customer's number."
        ) % {"number": number}
    if code == "send_in_doubt":
        return _(
            "The gateway stopped while sending this message, so it may or may "
            "not have reached the customer. Check the chat on the phone before "
            "sending it again."
        )
    if code == "gateway_misconfigured":
        return _(
            "The gateway rejected the request signature, so nothing was sent. "
            "An operator must set the same WA_GATEWAY_SECRET on both sides."
        )
    if code == "previous_part_failed":
        return _("An earlier part of this message failed, so this part was not sent.")
    if code == "no_recipient":
        return _("The customer has no phone number or WhatsApp id to send to.")
    return None


def failure_sentence_stored(code: str, *, number: str = "") -> str:
    """Return the sentence of `code` as a failed message stores it."""
    with translation.override(STORED_LANGUAGE):
        sentence = failure_sentence(code, number=number)
    if sentence is None:
        raise ValueError(f"the failure code {code!r} has no fixed sentence")
    return sentence


def failure_reason(message) -> str:
    """Return the reason `message` failed, in the active language where known."""
    if not message.error_code:
        return message.error
    number = ""
    if message.error_code in CODES_WITH_NUMBER:
        customer = message.customer
        number = customer.phone or customer.wa_jid or ""
    return failure_sentence(message.error_code, number=number) or message.error
