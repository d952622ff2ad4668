"""Redis, the Celery broker and cache, is down while subscribers send.

The stack's own redis-server is stopped (never the machine's shared one).
While it is down the API must respond to every send clearly: accepted (202)
or a JSON error saying what failed, never a 5xx page. After Redis is back, and
the periodic requeue of stuck sends has run, every accepted message is sent
exactly once.
"""

from __future__ import annotations

import pytest

from messaging.models import Message

from .conftest import messages_wait

pytestmark = pytest.mark.processes

SEND_COUNT = 3


def _is_clear(answer) -> bool:
    """Accepted, or a JSON error the client can act on (4xx, or 503: retry)."""
    is_json = "json" in answer.headers.get("Content-Type", "")
    status = answer.status_code
    return is_json and (status == 202 or 400 <= status < 500 or status == 503)


def test_sends_during_redis_outage_are_sent_once_after(fault_stack):
    subscriber = fault_stack.subscriber_connected()
    user = subscriber.user

    fault_stack.redis.stop()
    bodies = [f"Sent while Redis was down {n}" for n in range(SEND_COUNT)]
    answers = {body: fault_stack.send(subscriber, body) for body in bodies}
    fault_stack.redis.start()

    problems = [
        f"{body!r}: {answer.status_code} {answer.text[:200]}"
        for body, answer in answers.items()
        if not _is_clear(answer)
    ]
    assert not problems, "unclear answers during the outage:\n" + "\n".join(problems)
    accepted = [body for body, answer in answers.items() if answer.status_code == 202]

    fault_stack.requeue_stuck()
    messages_wait(user, accepted, Message.Status.READ, timeout=60)
    assert fault_stack.sends_total() == len(accepted)
    refused = [body for body in bodies if body not in accepted]
    assert not Message.objects.filter(
        owner=user, body__in=refused, status__in=["sent", "delivered", "read"]
    ).exists(), "a send the API refused was delivered anyway"
