"""`prepared_cursor` runs statements that PostgreSQL prepares once per connection."""

from __future__ import annotations

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from whatsapp_saas.queries import prepared_cursor

STATEMENT = "SELECT %s::bigint + 1 AS prepared_cursor_probe"

pytestmark = pytest.mark.postgres


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements "
            "WHERE statement LIKE '%%prepared_cursor_probe%%'"
        )
        return [row[0] for row in cursor.fetchall()]


def _run(value: int) -> int:
    with prepared_cursor() as cursor:
        cursor.execute(STATEMENT, [value])
        return cursor.fetchone()[0]


def test_statement_is_prepared_once_and_reused(db):
    results = [_run(value) for value in range(3)]

    assert results == [1, 2, 3]
    assert len(_prepared_statements()) == 1


def test_setting_off_prepares_nothing(db, settings):
    settings.DATABASE_PREPARED_STATEMENTS = False

    assert _run(41) == 42
    assert _prepared_statements() == []


def test_django_cursors_never_prepare(db):
    _run(1)

    with connection.cursor() as cursor:
        cursor.execute(f"{STATEMENT} -- plain", [1])
        cursor.execute(f"{STATEMENT} -- plain", [1])

    assert len(_prepared_statements()) == 1


def test_logged_queries_run_unprepared(db):
    with CaptureQueriesContext(connection) as queries:
        _run(5)

    assert [query["sql"] for query in queries.captured_queries] == [
        STATEMENT.replace("%s", "5")
    ]
    assert _prepared_statements() == []


def test_errors_arrive_as_django_errors(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE prepared_cursor_unique (value integer UNIQUE)"
        )

    with pytest.raises(IntegrityError):
        with prepared_cursor() as cursor:
            for _ in range(2):
                cursor.execute(
                    "INSERT INTO prepared_cursor_unique (value) VALUES (%s)", [7]
                )


def test_integer_sizes_share_one_statement(db):
    for value in (1, 40_000, 3_000_000_000):
        _run(value)

    assert len(_prepared_statements()) == 1


def test_named_integers_share_one_statement(db):
    for value in (1, 40_000, 3_000_000_000):
        with prepared_cursor() as cursor:
            cursor.execute(
                "SELECT %(value)s::bigint AS prepared_cursor_probe", {"value": value}
            )
            assert cursor.fetchone()[0] == value

    assert len(_prepared_statements()) == 1


def test_booleans_stay_booleans(db):
    with prepared_cursor() as cursor:
        cursor.execute(
            "SELECT pg_typeof(%s)::text AS prepared_cursor_probe, %s", [True, 7]
        )
        assert cursor.fetchone() == ("boolean", 7)


def test_statement_runs_after_rollback(db):
    _run(1)
    try:
        with transaction.atomic():
            _run(2)
            raise RuntimeError("undo")
    except RuntimeError:
        pass

    assert _run(3) == 4


@pytest.mark.django_db(transaction=True)
def test_column_type_change_prepares_again(caplog):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE prepared_cursor_probe (value varchar(10))")
        cursor.execute("INSERT INTO prepared_cursor_probe VALUES ('a')")
    select = "SELECT value AS prepared_cursor_probe FROM prepared_cursor_probe"
    try:
        with prepared_cursor() as cursor:
            cursor.execute(select)
        # A migration run by another process.
        with psycopg.connect(**connection.get_connection_params()) as other:
            other.execute(
                "ALTER TABLE prepared_cursor_probe ALTER COLUMN value TYPE text"
            )

        with prepared_cursor() as cursor:
            cursor.execute(select)
            rows = cursor.fetchall()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE prepared_cursor_probe")

    assert rows == [("a",)]
    assert "preparing them again" in caplog.text
