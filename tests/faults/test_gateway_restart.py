"""The gateway stops while a subscriber is connected, and comes back.

A connected session must come back from the gateway's saved login, with no
new QR code, and the messages the subscriber sent while the gateway was
down must each reach the customer exactly once after it is back.
"""

from __future__ import annotations

import pytest

from messaging.models import Message
from sessions_wa.models import GatewayEvent, WhatsAppSession

from ..harness import poll_until
from .conftest import messages_wait, session_state_wait, wait_seconds

pytestmark = pytest.mark.processes

DOWNTIME_SECONDS = 1.5


def _gateway_state(stack, user_id: int) -> str | None:
    response = stack.gateway.request("GET", "/status", query={"user_id": user_id})
    return response.json().get("state") if response.status_code == 200 else None


def _qr_events(user) -> int:
    return GatewayEvent.objects.filter(user=user, type="session.qr").count()


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_connected_session_survives_gateway_restart(fault_stack, stop):
    subscriber = fault_stack.subscriber_connected()
    user = subscriber.user
    before = fault_stack.send(subscriber, "Before the restart")
    assert before.status_code == 202, before.text
    messages_wait(user, ["Before the restart"], Message.Status.READ, timeout=30)
    qr_events = _qr_events(user)

    if stop == "sigterm":
        fault_stack.gateway.stop()
    else:
        fault_stack.gateway.kill()
    bodies = [f"Sent while the gateway was down {n}" for n in range(3)]
    answers = [fault_stack.send(subscriber, body) for body in bodies]
    wait_seconds(DOWNTIME_SECONDS)
    fault_stack.gateway.start()

    assert [a.status_code for a in answers] == [202] * 3, [a.text for a in answers]
    poll_until(
        lambda: _gateway_state(fault_stack, user.pk) == "connected",
        timeout=30,
        message="the gateway to restore the session",
    )
    session_state_wait(user, WhatsAppSession.State.CONNECTED, timeout=30)
    messages_wait(user, bodies, Message.Status.READ, timeout=60)
    assert fault_stack.sends_total() == len(bodies)
    assert _qr_events(user) == qr_events, "the restart asked for a new QR code"
    gateway_ids = list(
        Message.objects.filter(owner=user, body__in=bodies).values_list(
            "gateway_message_id", flat=True
        )
    )
    assert len(set(gateway_ids)) == len(bodies)
    assert None not in gateway_ids
