"""Django's `changepassword`, with the email read in any letter case.

Emails are stored in lower case, and the stock command looks the user up
exactly, so `changepassword Eve@Example.com` would find no user.
"""

from django.contrib.auth.management.commands import changepassword

from accounts.models import email_normalize


class Command(changepassword.Command):
    def handle(self, *args, **options):
        if options.get("username"):
            options["username"] = email_normalize(options["username"])
        return super().handle(*args, **options)
