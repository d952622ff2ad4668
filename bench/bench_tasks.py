"""A Celery task that does nothing, to measure the worker's own ceiling."""

from celery import shared_task


@shared_task(name="bench.noop")
def noop() -> None:
    return None
