"""Repeated queries are prepared, so PostgreSQL plans them once per connection."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import User

pytestmark = pytest.mark.skipif(
    "prepare_threshold" not in connection.settings_dict.get("OPTIONS", {}),
    reason="needs PostgreSQL with DATABASE_PREPARED_STATEMENTS on",
)


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_query_prepared_after_threshold():
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]

    for number in range(threshold + 1):
        User.objects.filter(email=f"nobody-{number}@example.com").exists()

    assert any('"email"' in sql for sql in _prepared_statements())


@pytest.mark.django_db
def test_query_below_threshold_not_prepared():
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]

    for number in range(threshold - 1):
        User.objects.filter(last_name=f"Nobody {number}").exists()

    assert not any('"last_name"' in sql for sql in _prepared_statements())
