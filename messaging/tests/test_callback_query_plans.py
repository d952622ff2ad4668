"""A callback reads the messages its events name through their indexes.

A new database has no statistics until autovacuum first analyzes it. With
the owners and the named ids as two lists in one WHERE, PostgreSQL then
read every message of the owners and filtered them, on every callback, so
a callback cost more the more a subscriber had stored.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Message

from .helpers import callback_post, customer_make, event, received_data

HISTORY = 6000
NAMED = 15

pytestmark = pytest.mark.postgres


def _history_insert(user, customer) -> None:
    """Store HISTORY read outbound messages of `user` in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_message (
                code, owner_id, customer_id, direction, source, kind, body,
                metadata, status, error_code, error, gateway_message_id,
                chat_jid, quoted_id, timestamp, timestamp_estimated, edited,
                edited_content_unavailable, edit_history, reactions, unread,
                idempotency_key, created_at, updated_at
            )
            SELECT gen_random_uuid(), %s, %s, 'outbound', 'api', 'text', 'Hello',
                '{}', 'read', '', '', 'HIST' || n, '', '', now(), false, false,
                false, '[]', '{}', false, '', now(), now()
            FROM generate_series(1, %s) AS n
            """,
            [user.pk, customer.pk, HISTORY],
        )


def _rows_read(plan: dict, table: str) -> tuple[int, int]:
    """Return (rows the scans of `table` returned, rows any filter removed)."""
    returned = 0
    if plan.get("Relation Name") == table:
        returned = plan["Actual Rows"] * plan["Actual Loops"]
    removed = plan.get("Rows Removed by Filter", 0) * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        child_returned, child_removed = _rows_read(child, table)
        returned += child_returned
        removed += child_removed
    return returned, removed


def _statement_rows_read(
    queries, start: str, table: str, end: str = ""
) -> tuple[int, int]:
    sql = next(
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith(start) and query["sql"].endswith(end)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        (plan,) = cursor.fetchone()[0]
    return _rows_read(plan["Plan"], table)


def _receipts(user, messages, *, with_codes: int) -> list[dict]:
    return [
        event(
            user,
            "message.status",
            {
                "message_id": str(message.code) if index < with_codes else None,
                "gateway_message_id": message.gateway_message_id,
                "status": "read",
            },
        )
        for index, message in enumerate(messages)
    ]


@pytest.mark.parametrize("with_codes", [NAMED, 0, NAMED - 1])
def test_receipt_lock_reads_named_rows(alice, with_codes):
    _history_insert(alice, customer_make(alice))
    named = list(Message.objects.filter(owner=alice).order_by("-pk")[:NAMED])

    with CaptureQueriesContext(connection) as queries:
        result = callback_post(_receipts(alice, named, with_codes=with_codes))

    returned, removed = _statement_rows_read(
        queries,
        "WITH coded",
        "messaging_message",
        end='FOR UPDATE OF "messaging_message"',
    )
    assert result == {"accepted": NAMED, "duplicates": 0}
    assert returned <= 2 * NAMED
    assert removed == 0


def test_duplicate_check_reads_named_rows(alice):
    _history_insert(alice, customer_make(alice))
    events = [
        event(alice, "message.received", received_data(gateway_message_id=f"NEW{n}"))
        for n in range(NAMED)
    ]

    with CaptureQueriesContext(connection) as queries:
        callback_post(events)

    returned, removed = _statement_rows_read(
        queries, 'SELECT t."owner_id"', "messaging_message"
    )
    assert Message.objects.filter(owner=alice, direction="inbound").count() == NAMED
    assert returned <= NAMED
    assert removed == 0
