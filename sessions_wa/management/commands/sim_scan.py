"""Make the sim gateway scan a subscriber's QR code, as a phone would.

Development only: the gateway must run with WA_ENGINE=sim (as `make run`
starts it). It does what the settings page's "Simulate scan" button does,
for a session started through the API.
"""

import logging

from django.core.management.base import BaseCommand, CommandError

from sessions_wa import selectors
from sessions_wa.gateway import GatewayClient, GatewayError
from sessions_wa.management.subscriber import email_argument_add, subscriber_by_email
from sessions_wa.masking import mask_phone
from sessions_wa.models import WhatsAppSession
from sessions_wa.sim import SIM_SCAN_DEFAULT_PHONE, sim_phone_e164

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Simulate a QR scan: the sim gateway links the subscriber's pending "
        "QR code to a WhatsApp number, and the session becomes connected."
    )

    def add_arguments(self, parser):
        email_argument_add(parser)
        parser.add_argument(
            "--phone",
            default=SIM_SCAN_DEFAULT_PHONE,
            help=(
                f"The number that scans, in E.164 (default {SIM_SCAN_DEFAULT_PHONE})."
            ),
        )

    def handle(self, *args, email, phone, **options):
        user = subscriber_by_email(email)
        number = sim_phone_e164(phone)
        if number is None:
            raise CommandError(
                f"{phone!r} is not a valid phone number. Give it with the "
                "country code, such as +5511900000009."
            )

        session = selectors.session_get_for_user(user=user)
        if session is not None and session.state == WhatsAppSession.State.CONNECTED:
            raise CommandError(
                f"The session of {user.email} is already connected, so there is "
                "no QR code to scan. Log it out first to pair another phone."
            )
        if session is None or session.state != WhatsAppSession.State.QR_PENDING:
            state = session.state if session else "not started"
            raise CommandError(
                f"The session of {user.email} shows no QR code (state: {state}). "
                "Start it first with POST /api/settings/whatsapp/session or the "
                "settings page's 'Get my QR code', then run this again."
            )

        logger.info(
            "Simulating a scan of session %s by %s", session.pk, mask_phone(number)
        )
        try:
            # The node that started the session, which the web process chose
            # with its own WA_GATEWAY_URL; this shell may not have it set.
            client = GatewayClient(session.gateway_url or None)
            client.sim("scan", user.pk, phone=number)
        except GatewayError as exc:
            logger.warning(
                "Simulated scan of session %s failed: status=%s code=%s",
                session.pk,
                exc.status,
                exc.code,
            )
            raise CommandError(
                f"The gateway rejected the simulated scan: {exc.message} "
                "The gateway must run with WA_ENGINE=sim."
            ) from exc

        self.stdout.write(
            self.style.SUCCESS(
                f"The gateway linked {user.email}'s QR code to {number}. The "
                "session shows connected once the gateway's callback reaches "
                "Django."
            )
        )
