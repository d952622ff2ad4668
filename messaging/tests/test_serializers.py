"""Serializers whose model fields are built once per class."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone

from django.utils import timezone
from rest_framework import serializers

from messaging.models import Message
from messaging.serializers import MessageSerializer, field_copy, messages_data

from .helpers import customer_make, outbound_make


class _PlainMessageSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="code", read_only=True)
    customer_id = serializers.UUIDField(source="customer.code", read_only=True)

    class Meta:
        model = Message
        fields = MessageSerializer.Meta.fields
        read_only_fields = fields


def test_message_output_matches_plain_serializer(alice):
    customer = customer_make(alice)
    message = outbound_make(alice, customer, status="sent", metadata={"part": 1})

    first = MessageSerializer(message).data
    second = MessageSerializer(message).data

    assert first == second == _PlainMessageSerializer(message).data


def test_output_hides_send_to_metadata(alice):
    customer = customer_make(alice)
    metadata = {"part": 1, "send_to": "+5511900000001"}
    message = outbound_make(alice, customer, status="sent", metadata=metadata)

    [written] = messages_data([message])

    assert written["metadata"] == {"part": 1}
    assert MessageSerializer(message).data["metadata"] == {"part": 1}
    assert message.metadata["send_to"] == "+5511900000001"


def test_instances_get_own_fields():
    first = MessageSerializer()
    second = MessageSerializer()

    assert first.fields["status"] is not second.fields["status"]
    assert first.fields["status"].parent is first
    assert second.fields["status"].parent is second


def test_field_copy_matches_copy_module():
    for field in MessageSerializer().fields.values():
        copied = field_copy(field)

        assert type(copied) is type(field)
        assert copied is not field
        assert copied.__dict__ == copy.copy(field).__dict__


def test_messages_data_matches_many_serializer(alice):
    customer = customer_make(alice)
    now = timezone.now()
    read = outbound_make(
        alice,
        customer,
        status="read",
        metadata={"part": 1, "parts": 2},
        gateway_message_id="3EB0AA",
        quoted_id="3EB0AB",
        sent_at=now,
        delivered_at=now,
        read_at=now,
        edited=True,
        edit_history=[{"body": "Helo", "edited_at": now.isoformat()}],
        reactions={"5511900000001@s.whatsapp.net": "👍"},
    )
    failed = outbound_make(
        alice,
        customer,
        status="failed",
        error_code="invalid_recipient",
        error="Not on WhatsApp.",
        failed_at=now,
    )
    messages = list(Message.objects.filter(owner=alice).order_by("pk"))

    assert messages_data(messages) == MessageSerializer(messages, many=True).data
    assert [item["id"] for item in messages_data(messages)] == [
        str(read.code),
        str(failed.code),
    ]


def test_messages_data_keeps_no_state(alice):
    customer = customer_make(alice)
    first = outbound_make(alice, customer, body="First")
    second = outbound_make(alice, customer, body="Second", status="sent")

    messages_data([first])
    [output] = messages_data([second])

    assert output["body"] == "Second"
    assert output["status"] == "sent"
    assert output["id"] == str(second.code)


def _as_serializer_writes(messages) -> list[str]:
    return [json.dumps(MessageSerializer(message).data) for message in messages]


def _varied_messages(alice) -> list[Message]:
    customer = customer_make(alice)
    now = timezone.now()
    outbound_make(
        alice,
        customer,
        status="read",
        metadata={"part": 1, "parts": 2},
        gateway_message_id="3EB0AA",
        sent_at=now,
        delivered_at=now + timedelta(seconds=1),
        read_at=now + timedelta(seconds=2),
        reactions={"5511900000001@s.whatsapp.net": "👍"},
    )
    outbound_make(
        alice,
        customer,
        body="",
        source="",
        status="failed",
        error_code="invalid_recipient",
        error="Not on WhatsApp.",
        failed_at=datetime(2026, 3, 29, 1, 30, tzinfo=dt_timezone(timedelta(hours=5))),
        edit_history=[{"body": "Helo", "edited_at": now.isoformat()}],
    )
    return list(Message.objects.filter(owner=alice).order_by("pk"))


def test_output_matches_serializer_when_stored(alice):
    messages = _varied_messages(alice)

    written = [json.dumps(item) for item in messages_data(messages)]

    assert written == _as_serializer_writes(messages)


def test_output_uses_active_time_zone(alice):
    messages = _varied_messages(alice)

    with timezone.override("America/Sao_Paulo"):
        written = [json.dumps(item) for item in messages_data(messages)]
        expected = _as_serializer_writes(messages)

    assert written == expected
    assert "-03:00" in written[0]


def test_output_matches_serializer_when_unsaved(alice):
    customer = customer_make(alice)
    message = outbound_make(alice, customer)
    # Values as a view sets them before saving: an enum member, a naive
    # datetime, a time in another zone.
    message.status = Message.Status.SENT
    message.sent_at = datetime(2026, 5, 1, 12, 0)
    message.delivered_at = datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC)

    [written] = messages_data([message])

    assert json.dumps(written) == json.dumps(MessageSerializer(message).data)
    assert written["status"] == "sent"
