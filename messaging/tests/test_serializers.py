"""Serializers whose model fields are built once per class."""

from __future__ import annotations

import copy

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
