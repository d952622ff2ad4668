from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        # Importing the module registers the mail check.
        from . import mail  # noqa: F401
