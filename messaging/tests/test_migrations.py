"""Data steps of the messaging migrations, run on the real schema history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.migrations import migrate_to, migrate_to_latest

BEFORE_COUNTS = [("messaging", "0002_message_idempotency_key")]
WITH_COUNTS = [("messaging", "0003_daily_send_count")]


@pytest.mark.django_db(transaction=True)
def test_daily_counts_start_from_todays_sends():
    apps = migrate_to(BEFORE_COUNTS)
    user = apps.get_model("accounts", "User").objects.create(
        email="migrated@example.com", password="unusable"
    )
    customer = apps.get_model("messaging", "Customer").objects.create(
        owner=user, phone="+5511900000001", match_key="551100000001"
    )
    message_model = apps.get_model("messaging", "Message")
    now = timezone.now()
    # Three of today's sends count, but a phone message and an older send do not.
    for source in ("api", "api", "dashboard", "phone", "api"):
        message_model.objects.create(
            owner=user,
            customer=customer,
            direction="outbound",
            source=source,
            kind="text",
            body="Oi",
            status="sent",
            timestamp=now,
        )
    older_send = message_model.objects.order_by("pk").last()
    message_model.objects.filter(pk=older_send.pk).update(
        created_at=now - timedelta(days=2)
    )

    apps = migrate_to(WITH_COUNTS)

    counts = apps.get_model("messaging", "DailySendCount").objects.values_list(
        "owner_id", "day", "sent"
    )
    assert list(counts) == [(user.pk, timezone.localdate(), 3)]
    migrate_to_latest()
