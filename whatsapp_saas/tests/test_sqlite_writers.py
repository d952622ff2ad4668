"""Concurrent writers on the embedded SQLite database wait instead of failing."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.harness import python_run

# Run in a fresh interpreter so the settings are read for a file-based
# SQLite database whatever DATABASE_URL the test run uses. Each thread gets
# its own connection, reads, pauses while holding its transaction, and then
# writes: the pattern that fails at once with "database is locked" when the
# write lock is taken only at the first write.
WRITERS_SCRIPT = """
import json, threading, time
import django
django.setup()
from django.db import connection, transaction

WRITERS = 10
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, writer INTEGER)")
connection.close()

start = threading.Barrier(WRITERS)
errors = []

def write(number):
    start.wait()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM counter")
            time.sleep(0.02)
            cursor.execute("INSERT INTO counter (writer) VALUES (%s)", [number])
    except Exception as error:
        errors.append(f"{type(error).__name__}: {error}")
    finally:
        connection.close()

threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with connection.cursor() as cursor:
    cursor.execute("SELECT COUNT(*) FROM counter")
    rows = cursor.fetchone()[0]
print(json.dumps({"errors": errors, "rows": rows}))
"""


def _writers_run(tmp_path: Path) -> dict:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL")
    }
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'writers.sqlite3'}"
    environment["DJANGO_SETTINGS_MODULE"] = "whatsapp_saas.settings"
    completed = python_run(WRITERS_SCRIPT, env=environment, timeout=120)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_ten_concurrent_sqlite_writers_all_commit(tmp_path):
    result = _writers_run(tmp_path)

    assert result == {"errors": [], "rows": 10}
