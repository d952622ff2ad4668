"""The Celery worker is paused while a subscriber sends a burst.

The worker gets SIGSTOP, the subscriber sends as many messages as the send
pacing lets go at once, and the worker resumes. The first send queued the
drain task of the subscriber's shard and the others found it queued. So
one task sends the whole burst to the gateway in one `/send/batch`, in the
order the API accepted it, and each message reaches the customer once.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from messaging.models import Message

from ..harness import poll_until
from .conftest import messages_wait, worker_settled

pytestmark = pytest.mark.processes

# WA_SEND_BURST's default: the pacing lets this many go at once.
BURST = 5
# One line per batch: "Sending messages 4, 5 of user 2; 6 of user 3 in ...".
BATCH_LINE = "Sending messages "
BATCH_PART_RE = re.compile(r"(\d+(?:, \d+)*) of user (\d+)")


def test_paused_worker_sends_burst_in_one_batch(fault_stack):
    subscriber = fault_stack.subscriber_connected()
    user = subscriber.user
    bodies = [f"Burst message {n}" for n in range(BURST)]
    worker_pid = fault_stack.worker.pid

    os.kill(worker_pid, signal.SIGSTOP)
    try:
        for body in bodies:
            answer = fault_stack.send(subscriber, body)
            assert answer.status_code == 202, answer.text
    finally:
        os.kill(worker_pid, signal.SIGCONT)

    messages_wait(user, bodies, Message.Status.READ, timeout=60)
    poll_until(
        lambda: worker_settled(fault_stack.worker),
        timeout=30,
        message="the worker to finish its tasks",
    )

    accepted = list(
        Message.objects.filter(owner=user, body__in=bodies)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    batches = [
        [int(number) for number in match.group(1).split(", ")]
        for line in fault_stack.worker.log_since_start().splitlines()
        if BATCH_LINE in line
        for match in BATCH_PART_RE.finditer(line.split(BATCH_LINE, 1)[1])
        if int(match.group(2)) == user.pk
    ]
    assert batches == [accepted]
    drains = [
        line
        for line in fault_stack.worker.task_lines("message_send_drain")
        if "] received" in line
    ]
    assert len(drains) == 1
    assert fault_stack.sends_total() == BURST
