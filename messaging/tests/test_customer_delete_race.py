"""A send and the deletion of its customer at the same time, on PostgreSQL.

Each test keeps one side's transaction open in a thread while the other
side runs, so the order is the same on every run.
"""

from __future__ import annotations

import threading
import time
from unittest import mock

import pytest
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import Customer, DailySendCount, Message
from messaging.services import customer_delete, message_send
from messaging.services.quota import daily_count_add
from messaging.services.sending import message_fail
from whatsapp_saas.exceptions import ApplicationError

from .helpers import customer_make, sent_today

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class _HeldTransaction:
    """Run `work` in a thread's transaction and hold it open until released."""

    def __init__(self, work):
        self.work = work
        self.ready = threading.Event()
        self.release = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            with transaction.atomic():
                self.work()
                self.ready.set()
                self.release.wait(10)
        except Exception as error:  # noqa: BLE001 - the test asserts on it
            self.error = error
            self.ready.set()
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(10)


def _release_when_blocked(open_transaction) -> threading.Thread:
    """Release `open_transaction` once another backend waits for a lock.

    The send then has read the customer and waits in its foreign key
    check, whatever the machine's speed.
    """

    def watch():
        try:
            with connection.cursor() as cursor:
                for _ in range(1000):
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                    if cursor.fetchone()[0]:
                        break
                    time.sleep(0.01)
        finally:
            open_transaction.release.set()
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    return watcher


def _delete_in_thread(customer, errors) -> threading.Thread:
    def delete():
        try:
            customer_delete(customer=Customer.objects.get(pk=customer.pk))
        except Exception as error:  # noqa: BLE001 - the test asserts on it
            errors.append(error)
        finally:
            connection.close()

    return threading.Thread(target=delete)


def _delete_rows(customer):
    Message.objects.filter(customer=customer).delete()
    Customer.objects.filter(pk=customer.pk).delete()


def test_send_to_deleted_customer_not_found(alice):
    customer = customer_make(alice)

    with _HeldTransaction(lambda: _delete_rows(customer)) as open_transaction:
        # The send still reads the customer from its snapshot, and its
        # foreign key check waits for the delete to commit.
        _release_when_blocked(open_transaction)
        with pytest.raises(ApplicationError) as caught:
            message_send(user=alice, customer_code=customer.code, content="Oi")

    assert open_transaction.error is None
    assert caught.value.code == "not_found"
    assert caught.value.status_code == 404
    assert not Message.objects.exists()
    assert not DailySendCount.objects.exists()


def test_general_path_deleted_customer_not_found(alice):
    customer = customer_make(alice)

    with (
        mock.patch(
            "messaging.services.sending._one_statement_fits", return_value=False
        ),
        _HeldTransaction(lambda: _delete_rows(customer)) as open_transaction,
    ):
        _release_when_blocked(open_transaction)
        with pytest.raises(ApplicationError) as caught:
            message_send(user=alice, customer_code=customer.code, content="Oi")

    assert open_transaction.error is None
    assert caught.value.code == "not_found"
    assert not DailySendCount.objects.exists()


def test_send_to_deleted_number_gets_409(alice):
    customer = customer_make(alice, phone="+5511900000001")

    with _HeldTransaction(lambda: _delete_rows(customer)) as open_transaction:
        _release_when_blocked(open_transaction)
        with pytest.raises(ApplicationError) as caught:
            message_send(user=alice, to="+5511900000001", content="Oi")

    assert open_transaction.error is None
    assert caught.value.code == "customer_deleted"
    assert caught.value.status_code == 409
    assert caught.value.extra == {"field": "to"}


def test_delete_takes_message_sent_meanwhile(alice):
    customer = customer_make(alice)
    errors = []

    def share_lock():
        table = Customer._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {table} WHERE id = %s FOR SHARE", [customer.pk]
            )

    deleting = _delete_in_thread(customer, errors)
    with _HeldTransaction(share_lock) as open_transaction:
        deleting.start()
        deleting.join(0.3)
        assert deleting.is_alive()
        # A send commits while the delete waits for the row.
        [message] = message_send(user=alice, customer_code=customer.code, content="Oi")
        open_transaction.release.set()
        deleting.join(10)

    assert open_transaction.error is None
    assert errors == []
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert not Message.objects.filter(pk=message.pk).exists()


def test_delete_and_send_no_deadlock(alice):
    customer = customer_make(alice)
    message_send(user=alice, customer_code=customer.code, content="Queued")
    errors = []
    deleting = _delete_in_thread(customer, errors)
    table = Customer._meta.db_table

    def send_side():
        # A send's order: the count's row first, then the customer's row in
        # its foreign key check.
        try:
            with transaction.atomic():
                daily_count_add(alice.pk, timezone.localdate(), 1)
                deleting.start()
                time.sleep(0.3)
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"SELECT 1 FROM {table} WHERE id = %s FOR KEY SHARE",
                        [customer.pk],
                    )
        except Exception as error:  # noqa: BLE001 - the test asserts on it
            errors.append(error)
        finally:
            connection.close()

    sending = threading.Thread(target=send_side)
    sending.start()
    sending.join(10)
    deleting.join(10)

    assert errors == []
    assert sent_today(alice) == 1


def test_fail_during_delete_refunds_once(alice):
    deleted = customer_make(alice)
    other = customer_make(alice, phone="+5511900000002")
    [failing] = message_send(user=alice, customer_code=deleted.code, content="1")
    message_send(user=alice, customer_code=deleted.code, content="2")
    message_send(user=alice, customer_code=other.code, content="3")
    errors = []
    deleting = _delete_in_thread(deleted, errors)

    def fail():
        message_fail(message_id=failing.pk, code="no_recipient", reason="None.")

    with _HeldTransaction(fail) as open_transaction:
        watcher = _release_when_blocked(open_transaction)
        deleting.start()
        deleting.join(10)
        watcher.join(10)

    assert open_transaction.error is None
    assert errors == []
    assert sent_today(alice) == 1
