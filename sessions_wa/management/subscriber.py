"""The `--email` option of the sim commands, and the subscriber it names."""

from django.core.management.base import CommandError

from accounts.models import User

DEFAULT_EMAIL = "demo@example.com"


def email_argument_add(parser) -> None:
    """Add the `--email` option, the demo subscriber's address by default."""
    parser.add_argument(
        "--email",
        default=DEFAULT_EMAIL,
        help=f"Email address of the subscriber (default {DEFAULT_EMAIL}).",
    )


def subscriber_by_email(email: str) -> User:
    """Return the subscriber with `email`, or raise CommandError saying what to do."""
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        raise CommandError(
            f"No subscriber has the email {email}. Create the demo one with "
            "`manage.py ensure_demo_subscriber` or pass --email."
        )
    return user
