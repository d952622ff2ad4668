"""Helpers that the apps' test suites share."""

from __future__ import annotations

import threading

from django.db import connection


def run_together(calls: list) -> list:
    """Run each callable in its own thread and database connection, all at once.

    Returns each call's result, or the exception it raised, in order.
    """
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(index, call):
        try:
            barrier.wait(timeout=5)
            results[index] = call()
        except Exception as error:  # noqa: BLE001 - the caller asserts on it
            results[index] = error
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(index, call))
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return results
