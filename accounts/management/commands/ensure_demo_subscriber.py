"""Create the demo subscriber once; later runs leave its password alone."""

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.services import demo_subscriber_ensure

DEFAULT_EMAIL = "demo@example.com"


class Command(BaseCommand):
    help = (
        "Create the demo subscriber with an active subscription. A random "
        "password is printed once, on creation; later runs only make sure the "
        "subscription is active."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--email",
            default=DEFAULT_EMAIL,
            help=f"Email address of the demo subscriber (default {DEFAULT_EMAIL}).",
        )
        parser.add_argument(
            "--password",
            default=None,
            help="Password to set on creation instead of a random one.",
        )

    def handle(self, *args, email, password, **options):
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(
                f"--email {email!r} is not an email address; give one such as "
                f"{DEFAULT_EMAIL}."
            ) from None
        if password is not None:
            try:
                validate_password(password)
            except ValidationError as error:
                raise CommandError(
                    "--password is rejected: " + " ".join(error.messages)
                ) from None

        user, created_password = demo_subscriber_ensure(email=email, password=password)

        if created_password is None:
            self.stdout.write(
                f"The demo subscriber {user.email} already exists; its password "
                "was not changed. To set a new one, run: "
                f"manage.py changepassword {user.email}"
            )
            return

        if password:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created the demo subscriber {user.email} with the given password."
                )
            )
            return

        self.stdout.write(
            self.style.SUCCESS(f"Created the demo subscriber {user.email}.")
        )
        self.stdout.write(f"Password (shown only this once): {created_password}")
