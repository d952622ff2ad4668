"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "whatsapp_saas.settings")

app = Celery("whatsapp_saas")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(sender=None, **kwargs):
    """Close database connections that are broken or older than CONN_MAX_AGE.

    Django does this around each request. Doing it around each task lets a
    worker keep its connection between tasks, where Celery's Django fix-up
    would open a new one for every task (see CELERY_DB_REUSE_MAX). Eager
    tasks run inside the caller's request, which manages its own connection.
    """
    if sender is not None and sender.request.is_eager:
        return
    close_old_connections()
