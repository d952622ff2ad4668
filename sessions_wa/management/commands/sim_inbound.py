"""Make the sim gateway deliver a customer's message to a subscriber.

Development only: the gateway must run with WA_ENGINE=sim (as `make run`
starts it) and the subscriber's WhatsApp session must be connected.
"""

import logging

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from messaging.phones import match_key, phone_parse
from sessions_wa.gateway import GatewayClient, GatewayError
from sessions_wa.management.subscriber import email_argument_add, subscriber_by_email
from sessions_wa.models import WhatsAppSession

logger = logging.getLogger(__name__)


# Gateway error codes about the `from` number rather than the session.
SENDER_ERROR_CODES = ("GW_ERR_INVALID_RECIPIENT", "GW_ERR_INVALID_PHONE")


def _match_key_or_none(typed: str, user) -> str | None:
    try:
        phone = phone_parse(typed, default_region=user.default_country or None)
    except ValidationError:
        return None
    return match_key(phone)


class Command(BaseCommand):
    help = (
        "Simulate an incoming WhatsApp message: the sim gateway reports it to "
        "Django as if the customer had written to the subscriber."
    )

    def add_arguments(self, parser):
        email_argument_add(parser)
        parser.add_argument(
            "--from",
            dest="sender",
            required=True,
            help=(
                "The customer's number, such as +5511900000001 or, in the "
                "subscriber's country, 11 90000-0001; or a JID."
            ),
        )
        parser.add_argument("--text", required=True, help="The message text.")
        parser.add_argument(
            "--push-name", default=None, help="The customer's WhatsApp name."
        )

    def handle(self, *args, email, sender, text, push_name, **options):
        user = subscriber_by_email(email)
        if not text.strip():
            raise CommandError("--text is empty; give the message's text.")
        typed = sender
        if "@" not in sender:
            # Read as the API reads a number, in the subscriber's country.
            # The gateway takes the digits as they are, so "11 91234-5678"
            # became +1 191 234 5678.
            try:
                sender = phone_parse(
                    sender, default_region=user.default_country or None
                )
            except ValidationError as exc:
                raise CommandError(f"--from: {exc.messages[0]}") from exc
        own_phone, gateway_url = (
            WhatsAppSession.objects.filter(user=user)
            .values_list("phone", "gateway_url")
            .first()
        ) or (None, "")
        sender_key = _match_key_or_none(sender, user)
        if own_phone and sender_key == match_key(own_phone):
            # Django ignores a message from the subscriber's own number, in
            # any of the spellings that match_key joins.
            raise CommandError(
                f"--from {sender} is {user.email}'s own WhatsApp number, whose "
                "messages never show in the inbox; give a customer's number."
            )

        # `from` is a Python keyword, so the fields go in as a dict.
        fields = {"from": sender, "text": text}
        if push_name:
            fields["push_name"] = push_name

        logger.info("Simulating an inbound message for user %s", user.pk)
        try:
            # The node that runs the session, as in sim_scan.
            client = GatewayClient(gateway_url or None)
            result = client.sim("inbound", user.pk, **fields)
        except GatewayError as exc:
            logger.warning(
                "Simulated inbound message for user %s failed: status=%s code=%s",
                user.pk,
                exc.status,
                exc.code,
            )
            if exc.code in SENDER_ERROR_CODES:
                # The gateway reads `from` with the check that sends use, so
                # its message calls the number a recipient.
                raise CommandError(
                    f"--from {typed!r} is not a number or JID the gateway "
                    "takes; give the customer's number with its country code, "
                    "such as +5511900000001."
                ) from exc
            raise CommandError(
                f"The gateway rejected the simulated message: {exc.message} "
                "The gateway must run with WA_ENGINE=sim, and the subscriber's "
                "WhatsApp session must be connected (scan the QR code on /settings/)."
            ) from exc

        self.stdout.write(
            self.style.SUCCESS(
                f"The gateway accepted the message from {sender} to {user.email} "
                f"(gateway_message_id {result.get('gateway_message_id')}). It "
                "shows in the inbox once the gateway's callback reaches Django."
            )
        )
