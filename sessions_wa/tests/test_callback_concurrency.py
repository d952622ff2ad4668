"""Two deliveries of the same batch at once, on PostgreSQL row locks."""

import threading
from unittest import mock

import pytest
from django.db import connection
from django.test import Client

from accounts.tests.factories import subscriber_create
from sessions_wa.models import GatewayEvent, WhatsAppSession
from sessions_wa.tests.helpers import message_event, post_callback, qr_event
from whatsapp_saas.testing import run_together

State = WhatsAppSession.State


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_same_batch_is_applied_once():
    owner = subscriber_create("owner@example.com")
    WhatsAppSession.objects.create(
        user=owner, session_key=f"user_{owner.pk}", state=State.STARTING
    )
    batch = [qr_event(owner.pk, 1), message_event(owner.pk, 2)]

    applied = []
    applied_lock = threading.Lock()

    def record_application(*, user, event):
        with applied_lock:
            applied.append(event["event_id"])
        return "applied"

    barrier = threading.Barrier(2)
    responses = []

    def deliver():
        try:
            barrier.wait(timeout=10)
            responses.append(post_callback(Client(), batch))
        finally:
            connection.close()

    with mock.patch(
        "messaging.services.gateway_event_apply", side_effect=record_application
    ):
        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    bodies = sorted((r.json() for r in responses), key=lambda body: body["accepted"])
    assert [r.status_code for r in responses] == [200, 200]
    assert bodies == [
        {"accepted": 0, "duplicates": 2},
        {"accepted": 2, "duplicates": 0},
    ]
    assert applied == [batch[1]["event_id"]]
    assert GatewayEvent.objects.count() == 2
    assert WhatsAppSession.objects.get(user=owner).state == State.QR_PENDING


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batch_for_unknown_user_is_recorded_once():
    batch = [qr_event(424_242, 1)]

    responses = run_together([lambda: post_callback(Client(), batch)] * 2)

    assert sorted(r.json()["duplicates"] for r in responses) == [0, 1]
    assert GatewayEvent.objects.count() == 1
