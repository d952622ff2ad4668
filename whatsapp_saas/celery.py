"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "whatsapp_saas.settings")

app = Celery("whatsapp_saas")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
