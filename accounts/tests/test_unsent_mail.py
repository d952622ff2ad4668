"""Without a mail backend in production, mail is dropped and logged, not printed."""

from __future__ import annotations

import logging

from django.core import mail
from django.core.checks import Warning as CheckWarning

from accounts.mail import UNSENT_BACKEND, unsent_email_check

RESET_BODY = "Open http://127.0.0.1:8000/accounts/password-reset/Mw/secret-token/"


def test_unsent_backend_logs_subject_not_body(settings, caplog, capsys):
    settings.EMAIL_BACKEND = UNSENT_BACKEND

    with caplog.at_level(logging.ERROR, logger="accounts.mail"):
        sent = mail.send_mail(
            "Password reset", RESET_BODY, "no-reply@localhost", ["ana@example.com"]
        )

    assert sent == 0
    assert "'Password reset' to 1 recipients was not sent" in caplog.text
    assert "secret-token" not in caplog.text
    assert "ana@example.com" not in caplog.text
    assert "secret-token" not in capsys.readouterr().out


def test_check_warns_while_mail_is_dropped(settings):
    settings.EMAIL_BACKEND = UNSENT_BACKEND

    warnings = unsent_email_check(None)

    assert [warning.id for warning in warnings] == ["accounts.W001"]
    assert isinstance(warnings[0], CheckWarning)


def test_check_quiet_with_a_backend(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

    assert unsent_email_check(None) == []
