"""Send the gateway's dead-lettered callback events to Django again.

A dead letter is an event Django rejected for good, for example with a
400 from a bug since fixed. Run this once Django accepts such events.
"""

import logging

from django.core.management.base import BaseCommand, CommandError

from sessions_wa.gateway import (
    GatewayClient,
    GatewayError,
    gateway_url_for_user,
    gateway_urls,
)

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Put the gateway's dead-lettered callback events back into its outbox, "
        "which posts them to Django again with their event ids."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--user-id",
            type=int,
            default=None,
            help="Only this subscriber's events (default: every subscriber's, "
            "on every gateway node).",
        )

    def handle(self, *args, user_id, **options):
        if user_id is not None:
            targets = [(gateway_url_for_user(user_id), user_id)]
        else:
            targets = [(url, None) for url in gateway_urls()]

        total = 0
        for url, target_user_id in targets:
            try:
                result = GatewayClient(base_url=url).dead_letters_requeue(
                    target_user_id
                )
            except GatewayError as exc:
                logger.warning(
                    "Requeuing dead letters at %s failed: status=%s code=%s",
                    url,
                    exc.status,
                    exc.code,
                )
                raise CommandError(
                    f"The gateway at {url} did not requeue its dead letters: "
                    f"{exc.message} Check that it runs and shares WA_GATEWAY_SECRET "
                    "with Django, then run this command again."
                ) from exc
            count = result.get("requeued", 0)
            total += count
            self.stdout.write(f"{url}: {count} dead letters requeued")

        logger.info("Requeued %s dead letters on %s gateway nodes", total, len(targets))
        self.stdout.write(self.style.SUCCESS(f"{total} dead letters requeued in all."))
