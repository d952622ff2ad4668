"""manage.py gateway_requeue_dead_letters: a signed call to every gateway node."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sessions_wa.tests.helpers import FakeGateway


def requeue(*args):
    out = StringIO()
    call_command("gateway_requeue_dead_letters", *args, stdout=out)
    return out.getvalue()


def test_requeues_every_users_dead_letters(fake_gateway):
    fake_gateway.reply("/outbox/dead-letters/requeue", (200, {"requeued": 3}))

    output = requeue()

    [call] = fake_gateway.calls("/outbox/dead-letters/requeue")
    assert call["signed"] is True
    assert call["json"] == {}
    assert "3 dead letters requeued in all." in output


def test_requeues_one_users_dead_letters(fake_gateway):
    fake_gateway.reply("/outbox/dead-letters/requeue", (200, {"requeued": 1}))

    requeue("--user-id", "42")

    [call] = fake_gateway.calls("/outbox/dead-letters/requeue")
    assert call["json"] == {"user_id": 42}


def test_calls_every_gateway_node(settings, fake_gateway):
    other = FakeGateway(settings.WA_GATEWAY_SECRETS).start()
    try:
        settings.WA_GATEWAY_URLS = [fake_gateway.url, other.url]
        for node in (fake_gateway, other):
            node.reply("/outbox/dead-letters/requeue", (200, {"requeued": 2}))

        output = requeue()

        assert len(other.calls("/outbox/dead-letters/requeue")) == 1
    finally:
        other.close()
    assert len(fake_gateway.calls("/outbox/dead-letters/requeue")) == 1
    assert "4 dead letters requeued in all." in output


def test_gateway_error_names_the_node(fake_gateway):
    fake_gateway.reply(
        "/outbox/dead-letters/requeue",
        (401, {"code": "GW_ERR_SIGNATURE", "message": "Bad signature."}),
    )

    with pytest.raises(CommandError) as raised:
        requeue()

    assert fake_gateway.url in str(raised.value)
    assert "WA_GATEWAY_SECRET" in str(raised.value)
