"""Sends in the embedded mode run inside the web request: never sleep, never hang.

`.apply()` runs the task eagerly, as the embedded mode (no Redis) does.
"""

from __future__ import annotations

import socket
import time
from unittest import mock

import pytest

from messaging import tasks
from messaging.tasks import message_send as message_send_task

from .helpers import customer_make, outbound_make


def _run(message) -> str:
    return message_send_task.apply(args=(message.pk,)).get()


@pytest.fixture
def customer(alice):
    return customer_make(alice)


@pytest.fixture
def slow_pacing(settings):
    settings.WA_SEND_BURST = 1
    settings.WA_SEND_RATE_PER_MINUTE = 2


def test_paced_send_returns_at_once_and_stays_queued(
    alice, customer, fake_gateway, slow_pacing
):
    first = outbound_make(alice, customer)
    second = outbound_make(alice, customer)
    _run(first)

    started = time.monotonic()
    with mock.patch("messaging.tasks._eager_send_later") as later:
        outcome = _run(second)

    second.refresh_from_db()
    assert outcome == "paced"
    assert time.monotonic() - started < 1
    assert second.status == "queued"
    (message_id, delay), _kwargs = later.call_args
    assert message_id == second.pk
    assert 0 < delay <= 30


def test_paced_send_is_timed_in_a_daemon_thread(alice, customer):
    with mock.patch("messaging.tasks.threading.Timer") as timer:
        tasks._eager_send_later(7, 12.5)

    (delay, target), kwargs = timer.call_args
    assert (delay, target, kwargs["args"]) == (12.5, tasks._eager_send_run, (7,))
    assert timer.return_value.daemon is True
    timer.return_value.start.assert_called_once_with()


def test_paced_send_goes_out_when_its_timer_fires(
    alice, customer, fake_gateway, celery_eager
):
    message = outbound_make(alice, customer)

    with mock.patch("messaging.tasks.db.connections.close_all") as close_all:
        tasks._eager_send_run(message.pk)

    message.refresh_from_db()
    assert message.status == "sent"
    close_all.assert_called_once_with()


def test_send_uses_the_short_gateway_timeout(
    alice, customer, fake_gateway, settings, monkeypatch
):
    settings.WA_GATEWAY_TIMEOUT = 30
    monkeypatch.setattr(tasks, "EAGER_GATEWAY_TIMEOUT", 0.2)
    # The gateway sends, then answers late; the repeat gets the answer at once.
    fake_gateway.script.append((202, None, 2.0))
    message = outbound_make(alice, customer)

    started = time.monotonic()
    _run(message)

    message.refresh_from_db()
    assert time.monotonic() - started < 1.5
    assert message.status == "sent"
    assert len(fake_gateway.sends) == 1


@pytest.fixture
def silent_gateway(settings):
    """A port on 127.0.0.1 that takes connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    settings.WA_GATEWAY_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings.WA_GATEWAY_URLS = []
    yield
    listener.close()


def test_stuck_gateway_is_repeated_once_then_fails(
    alice, customer, silent_gateway, monkeypatch
):
    monkeypatch.setattr(tasks, "EAGER_GATEWAY_TIMEOUT", 0.2)
    message = outbound_make(alice, customer)

    started = time.monotonic()
    _run(message)

    message.refresh_from_db()
    assert time.monotonic() - started < 1
    assert (message.status, message.error_code) == ("failed", "gateway_unavailable")
    assert "after 2 attempts" in message.error


def test_queued_message_explains_the_pacing(alice_client, alice, customer):
    outbound_make(alice, customer, status="queued")

    page = alice_client.get(f"/customers/{customer.code}/").content.decode()

    assert "queued: sending is paced" in page
