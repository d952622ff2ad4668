"""The send task against a fake gateway on 127.0.0.1."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Customer, Message
from messaging.services import message_record_sent
from messaging.tasks import message_send as message_send_task

from .helpers import customer_make, outbound_make, session_connect


def _run(message) -> str:
    return message_send_task.apply(args=(message.pk,)).get()


@pytest.fixture
def customer(alice):
    return customer_make(alice)


def test_task_sends_with_message_code_as_idempotency_key(alice, customer, fake_gateway):
    message = outbound_make(alice, customer, body="Olá 👋🏽")

    _run(message)

    call = fake_gateway.requests[0]
    assert call.message_id == str(message.code)
    assert call.text == "Olá 👋🏽"
    assert call.user_id == alice.pk
    assert fake_gateway.bad_signatures == 0


def test_task_records_sent_status_and_gateway_id(alice, customer, fake_gateway):
    message = outbound_make(alice, customer)

    outcome = _run(message)

    message.refresh_from_db()
    assert outcome == "sent"
    assert message.status == "sent"
    assert message.sent_at is not None
    assert (
        message.gateway_message_id
        == (fake_gateway.answers[str(message.code)]["gateway_message_id"])
    )


def test_task_sends_to_e164_without_jid(alice, customer, fake_gateway):
    _run(outbound_make(alice, customer))

    assert fake_gateway.requests[0].to == "+5511900000001"


def test_task_sends_to_jid_whatsapp_last_used(alice, fake_gateway):
    # Typed with the ninth digit; WhatsApp uses the account without it.
    customer = customer_make(
        alice, phone="+5511900000001", wa_jid="551100000001@s.whatsapp.net"
    )

    _run(outbound_make(alice, customer))

    assert fake_gateway.requests[0].to == "551100000001@s.whatsapp.net"


def test_task_sends_to_lid_of_unresolved_customer(alice, fake_gateway):
    customer = Customer.objects.create(
        owner=alice, lid="100000000000001@lid", phone_unresolved=True
    )

    _run(outbound_make(alice, customer))

    assert fake_gateway.requests[0].to == "100000000000001@lid"


def test_task_keeps_jid_gateway_returned(alice, customer, fake_gateway):
    fake_gateway.script.append(
        (
            202,
            {"gateway_message_id": "3EB0AAA", "to_jid": "551100000001@s.whatsapp.net"},
            0,
        )
    )

    _run(outbound_make(alice, customer))

    customer.refresh_from_db()
    assert customer.wa_jid == "551100000001@s.whatsapp.net"


def test_task_retries_after_503_and_sends_once(alice, customer, fake_gateway):
    fake_gateway.script.append((503, {"code": "GW_ERR_BUSY", "message": "busy"}, 0))
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.status == "sent"
    assert len(fake_gateway.requests) == 2
    assert len(fake_gateway.sends) == 1


def test_task_retries_after_timeout_without_second_send(
    alice, customer, fake_gateway, settings
):
    settings.WA_GATEWAY_TIMEOUT = 0.3
    # The gateway sends, then responds after the client timed out.
    fake_gateway.script.append((202, None, 1.0))
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.status == "sent"
    assert [call.message_id for call in fake_gateway.requests] == [
        str(message.code)
    ] * 2
    assert len(fake_gateway.sends) == 1
    assert (
        message.gateway_message_id
        == (fake_gateway.answers[str(message.code)]["gateway_message_id"])
    )


def test_task_gives_up_when_gateway_is_unreachable(alice, customer, settings):
    settings.WA_GATEWAY_URL = "http://127.0.0.1:9"
    settings.WA_GATEWAY_URLS = []
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.status == "failed"
    assert message.error_code == "gateway_unavailable"
    assert "could not be reached" in message.error


@pytest.mark.parametrize(
    ("status", "code", "error_code", "phrase"),
    [
        (409, "GW_ERR_CLIENT_NOT_READY", "session_not_connected", "not connected"),
        (404, "GW_ERR_SESSION_NOT_FOUND", "session_not_connected", "not connected"),
        (409, None, "session_not_connected", "not connected"),
        (422, "GW_ERR_NOT_ON_WHATSAPP", "not_on_whatsapp", "has no WhatsApp account"),
        (400, "GW_ERR_INVALID_RECIPIENT", "invalid_recipient", "invalid number"),
        (400, "GW_ERR_INVALID_PHONE", "invalid_recipient", "invalid number"),
        (400, "GW_ERR_INVALID_BODY", "invalid_request", "GW_ERR_INVALID_BODY"),
        (
            401,
            "GW_ERR_SIGNATURE_MISMATCH",
            "gateway_misconfigured",
            "WA_GATEWAY_SECRET",
        ),
        (409, "GW_ERR_IDEMPOTENCY_CONFLICT", "send_failed", "IDEMPOTENCY_CONFLICT"),
        (413, "GW_ERR_BODY_TOO_LARGE", "send_failed", "413"),
    ],
)
def test_task_fails_permanent_errors_with_reason(
    alice, customer, fake_gateway, status, code, error_code, phrase
):
    # After a logout a client that is not ready will not come back.
    session_connect(alice, state="logged_out")
    body = {"code": code, "message": "no"} if code else {}
    fake_gateway.script.append((status, body, 0))
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.status == "failed"
    assert message.error_code == error_code
    assert phrase in message.error
    assert message.failed_at is not None
    assert len(fake_gateway.requests) == 1


@pytest.mark.parametrize("state", ["connected", "disconnected"])
def test_task_retries_client_not_ready_while_reconnecting(
    alice, customer, fake_gateway, state
):
    session_connect(alice, state=state)
    fake_gateway.script.append((409, {"code": "GW_ERR_CLIENT_NOT_READY"}, 0))
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.status == "sent"
    assert len(fake_gateway.requests) == 2


def test_task_fails_client_never_ready(alice, customer, fake_gateway):
    session_connect(alice, state="disconnected")
    fake_gateway.script.extend([(409, {"code": "GW_ERR_CLIENT_NOT_READY"}, 0)] * 3)
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.error_code == "session_not_connected"
    assert len(fake_gateway.requests) == 3


def test_task_retries_send_in_doubt(alice, customer, fake_gateway):
    fake_gateway.script.append((409, {"code": "GW_ERR_SEND_IN_DOUBT"}, 0))
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.status == "sent"
    assert len(fake_gateway.requests) == 2


def test_task_fails_lasting_send_in_doubt(alice, customer, fake_gateway):
    fake_gateway.script.extend([(409, {"code": "GW_ERR_SEND_IN_DOUBT"}, 0)] * 3)
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.error_code == "send_in_doubt"
    assert "Check the chat on the phone" in message.error


def test_task_stores_first_recipient(alice, customer, fake_gateway):
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.metadata["send_to"] == "+5511900000001"


def test_retry_keeps_first_recipient_after_jid_change(alice, customer, fake_gateway):
    message = outbound_make(alice, customer, metadata={"send_to": "+5511900000001"})
    Customer.objects.filter(pk=customer.pk).update(wa_jid="551100000001@s.whatsapp.net")

    _run(message)

    assert fake_gateway.requests[0].to == "+5511900000001"


def test_not_on_whatsapp_reason_names_the_number(alice, customer, fake_gateway):
    fake_gateway.script.append((422, {"code": "GW_ERR_NOT_ON_WHATSAPP"}, 0))
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert "+5511900000001" in message.error


def test_task_run_twice_sends_once(alice, customer, fake_gateway):
    message = outbound_make(alice, customer)

    _run(message)
    second = _run(message)

    assert second == "skipped"
    assert len(fake_gateway.requests) == 1


def test_task_skips_message_another_run_claimed(alice, customer, fake_gateway):
    message = outbound_make(alice, customer, status="sending")

    assert _run(message) == "skipped"
    assert fake_gateway.requests == []


def test_task_for_deleted_message_does_nothing(alice, customer, fake_gateway):
    message = outbound_make(alice, customer)
    Message.objects.filter(pk=message.pk).delete()

    assert _run(message) == "missing"


def test_task_fails_customer_without_any_address(alice, fake_gateway):
    customer = Customer.objects.create(owner=alice, name="Nobody")
    message = outbound_make(alice, customer)

    _run(message)

    message.refresh_from_db()
    assert message.error_code == "no_recipient"
    assert fake_gateway.requests == []


def test_parts_are_sent_in_order(alice, customer, fake_gateway, celery_eager):
    first = outbound_make(alice, customer, body="one")
    second = outbound_make(alice, customer, body="two", previous_part=first)
    outbound_make(alice, customer, body="three", previous_part=second)

    _run(first)

    assert [call.text for call in fake_gateway.requests] == ["one", "two", "three"]
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_later_part_waits_for_earlier_one(alice, customer, fake_gateway):
    first = outbound_make(alice, customer, body="one")
    second = outbound_make(alice, customer, body="two", previous_part=first)

    assert _run(second) == "waiting"
    assert fake_gateway.requests == []


def test_failed_part_fails_the_parts_after_it(alice, customer, fake_gateway):
    fake_gateway.script.append((422, {"code": "GW_ERR_NOT_ON_WHATSAPP"}, 0))
    first = outbound_make(alice, customer, body="one")
    second = outbound_make(alice, customer, body="two", previous_part=first)
    third = outbound_make(alice, customer, body="three", previous_part=second)

    _run(first)

    second.refresh_from_db()
    third.refresh_from_db()
    assert (second.status, second.error_code) == ("failed", "previous_part_failed")
    assert (third.status, third.error_code) == ("failed", "previous_part_failed")


def test_empty_bucket_reschedules_instead_of_failing(alice, customer, settings):
    settings.WA_SEND_BURST = 1
    settings.WA_SEND_RATE_PER_MINUTE = 1
    first = outbound_make(alice, customer)
    second = outbound_make(alice, customer)

    with (
        mock.patch("messaging.tasks.GatewayClient") as client,
        mock.patch("messaging.tasks.message_send_enqueue") as enqueue,
    ):
        client.return_value.send.return_value = {"gateway_message_id": "3EB0P1"}
        assert message_send_task(first.pk) == "sent"
        outcome = message_send_task(second.pk)

    second.refresh_from_db()
    assert outcome == "paced"
    assert second.status == "queued"
    (message_id,), kwargs = enqueue.call_args
    assert message_id == second.pk
    assert 0 < kwargs["countdown"] <= 60


def test_paced_retry_keeps_its_attempt_count(alice, customer, settings):
    settings.WA_SEND_BURST = 1
    settings.WA_SEND_RATE_PER_MINUTE = 1
    from messaging.ratelimit import send_slot_take

    send_slot_take(alice.pk)
    message = outbound_make(alice, customer)

    # Run as a worker runs the fourth attempt (apply() would run it eagerly).
    message_send_task.push_request(retries=3, is_eager=False)
    try:
        with mock.patch("messaging.tasks.message_send_enqueue") as enqueue:
            outcome = message_send_task.run(message.pk)
    finally:
        message_send_task.pop_request()

    assert outcome == "paced"
    assert enqueue.call_args.kwargs["attempt"] == 3


def test_record_sent_keeps_status_a_receipt_moved_further(alice, customer):
    message = outbound_make(alice, customer, status="delivered")

    message_record_sent(message_id=message.pk, gateway_message_id="3EB0D")

    message.refresh_from_db()
    assert message.status == "delivered"
    assert message.gateway_message_id == "3EB0D"


def _record_sent_after_echo(user, customer):
    """Record a send whose echo (the phone's copy) was stored first."""
    message = outbound_make(user, customer, status="sending")
    echo = outbound_make(
        user, customer, status="read", source="phone", gateway_message_id="3EB0ECHO"
    )

    message_record_sent(message_id=message.pk, gateway_message_id="3EB0ECHO")

    message.refresh_from_db()
    return message, echo


def test_record_sent_absorbs_echo_stored_first(alice, customer):
    message, echo = _record_sent_after_echo(alice, customer)

    assert not Message.objects.filter(pk=echo.pk).exists()
    assert message.gateway_message_id == "3EB0ECHO"
    assert message.status == "read"


def test_record_sent_absorbs_echo_in_autocommit(transactional_db, alice, customer):
    message, echo = _record_sent_after_echo(alice, customer)

    assert not Message.objects.filter(pk=echo.pk).exists()
    assert message.gateway_message_id == "3EB0ECHO"
    assert message.status == "read"


def test_record_sent_applies_receipts_held_for_the_id(alice, customer):
    from .helpers import apply

    apply(alice, "message.status", {"gateway_message_id": "3EB0H", "status": "read"})
    message = outbound_make(alice, customer, status="sending")

    message_record_sent(message_id=message.pk, gateway_message_id="3EB0H")

    message.refresh_from_db()
    assert message.status == "read"


def test_usual_send_makes_three_statements(transactional_db, alice, fake_gateway):

    customer = customer_make(alice, wa_jid="5511900000001@s.whatsapp.net")
    message = outbound_make(alice, customer)

    with CaptureQueriesContext(connection) as queries:
        _run(message)

    # Read, claim, and one UPDATE that records the send and checks for held
    # updates, each in autocommit mode as a worker runs them.
    statements = [query["sql"].split()[0] for query in queries.captured_queries]
    assert statements == ["SELECT", "UPDATE", "UPDATE"]
