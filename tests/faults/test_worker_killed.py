"""The Celery worker is killed in the middle of sending a message.

The gateway is paused (SIGSTOP) so the worker's /send request is in flight
when the worker gets SIGKILL; then the gateway resumes and a new worker
starts, and the periodic requeue of stuck sends runs. The customer must get
the message exactly once, counted at the gateway, and the conversation must
show it once.
"""

from __future__ import annotations

import os
import signal

import pytest

from messaging.models import Message

from ..harness import poll_until
from .conftest import messages_wait, worker_settled

pytestmark = pytest.mark.processes

BODY = "Your order left the warehouse"


def test_worker_killed_during_send_delivers_once(fault_stack):
    subscriber = fault_stack.subscriber_connected()
    user = subscriber.user
    gateway_pid = fault_stack.gateway.pid

    os.kill(gateway_pid, signal.SIGSTOP)
    try:
        answer = fault_stack.send(subscriber, BODY)
        assert answer.status_code == 202, answer.text
        fault_stack.worker.wait_for_log("Sending message", timeout=30)
        fault_stack.worker.kill()
    finally:
        os.kill(gateway_pid, signal.SIGCONT)

    fault_stack.worker.start()
    fault_stack.requeue_stuck()
    messages_wait(user, [BODY], Message.Status.READ, timeout=60)
    poll_until(
        lambda: worker_settled(fault_stack.worker),
        timeout=30,
        message="the new worker to finish its tasks",
    )

    # A second requeue finds nothing to send again.
    fault_stack.requeue_stuck()
    fault_stack.worker.wait_for_log("message_requeue_stuck", timeout=10)
    poll_until(
        lambda: worker_settled(fault_stack.worker),
        timeout=30,
        message="the second requeue to finish",
    )
    assert fault_stack.sends_total() == 1
    outbound = Message.objects.filter(owner=user, direction=Message.Direction.OUTBOUND)
    assert list(outbound.values_list("body", flat=True)) == [BODY]
