"""Serializers whose model fields are built once per class."""

from __future__ import annotations

from rest_framework import serializers

from messaging.models import Message
from messaging.serializers import MessageSerializer

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
