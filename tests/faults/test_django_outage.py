"""Django is down while customers write to the subscriber.

The gateway keeps each inbound message in its outbox until Django accepts
it, so every message sent during the outage must be stored exactly once
after Django comes back.
"""

from __future__ import annotations

import re

import pytest
import requests

from messaging.models import Message

from ..harness import poll_until
from .conftest import CUSTOMER_PHONE

pytestmark = pytest.mark.processes

INBOUND_COUNT = 5


RETRIED_RE = re.compile(
    r'^wa_gateway_callback_attempts_total\{outcome="retried"\} (\S+)$', re.M
)


def _callback_retries(stack) -> float:
    metrics = requests.get(f"{stack.gateway.url}/metrics", timeout=5).text
    match = RETRIED_RE.search(metrics)
    return float(match.group(1)) if match else 0.0


def _outbox_pending(stack) -> int:
    return requests.get(f"{stack.gateway.url}/healthz", timeout=5).json()[
        "outbox_pending"
    ]


def test_inbound_messages_during_django_outage_arrive_once(fault_stack):
    subscriber = fault_stack.subscriber_connected()
    user = subscriber.user

    fault_stack.django.stop()
    ids = [f"3EB0OUTAGE{n:04d}" for n in range(INBOUND_COUNT)]
    for number, message_id in enumerate(ids):
        response = fault_stack.gateway.request(
            "POST",
            "/sim/inbound",
            payload={
                "user_id": user.pk,
                "from": CUSTOMER_PHONE,
                "text": f"Are you open today? ({number})",
                "id": message_id,
            },
        )
        assert response.status_code == 202, response.text
    poll_until(
        lambda: _callback_retries(fault_stack) > 0,
        timeout=10,
        message="the gateway to retry a callback while Django is down",
    )
    assert _outbox_pending(fault_stack) >= INBOUND_COUNT
    assert not Message.objects.filter(gateway_message_id__in=ids).exists()
    fault_stack.django.start()

    poll_until(
        lambda: _outbox_pending(fault_stack) == 0,
        timeout=30,
        message="the gateway's outbox to empty",
    )
    stored = list(
        Message.objects.filter(owner=user, gateway_message_id__in=ids).values_list(
            "gateway_message_id", "direction", "body"
        )
    )
    assert sorted(row[0] for row in stored) == ids
    assert {row[1] for row in stored} == {Message.Direction.INBOUND}
    assert len({row[2] for row in stored}) == INBOUND_COUNT
