"""The mail backend used when a deployment with DEBUG off sets none."""

from __future__ import annotations

import logging

from django.core import checks
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger(__name__)

UNSENT_BACKEND = "accounts.mail.UnsentEmailBackend"


class UnsentEmailBackend(BaseEmailBackend):
    """A backend that drops every email and logs that it was not sent.

    The log line names the subject and the number of recipients, never the
    text or the addresses.

    Django's console backend, the development default, prints each email
    to the process output. In production a password reset link would then
    be in the logs, for anyone who reads them to use.
    """

    def send_messages(self, email_messages):
        for message in email_messages:
            logger.error(
                "Email %r to %s recipients was not sent because EMAIL_BACKEND "
                "is not set; set it, with EMAIL_HOST and the other mail "
                "settings, to send mail",
                message.subject,
                len(message.recipients()),
            )
        return 0


@checks.register(checks.Tags.compatibility, deploy=False)
def unsent_email_check(app_configs, **kwargs):
    """Warn at start that mail is dropped while EMAIL_BACKEND is unset."""
    from django.conf import settings

    if settings.EMAIL_BACKEND != UNSENT_BACKEND:
        return []
    return [
        checks.Warning(
            "EMAIL_BACKEND is not set, so password reset emails are not sent.",
            hint=(
                "Set EMAIL_BACKEND, for example to "
                "django.core.mail.backends.smtp.EmailBackend with EMAIL_HOST, "
                "EMAIL_PORT, EMAIL_HOST_USER and EMAIL_HOST_PASSWORD."
            ),
            id="accounts.W001",
        )
    ]
