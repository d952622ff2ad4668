from django.apps import AppConfig


class SessionsWaConfig(AppConfig):
    name = "sessions_wa"
    verbose_name = "WhatsApp sessions"
