"""API representations of a subscriber's WhatsApp session."""

from __future__ import annotations

from rest_framework import serializers

from whatsapp_saas.serializers import KnownFieldsMixin

from . import reasons
from .models import WhatsAppSession


class SessionSerializer(serializers.ModelSerializer):
    last_error_message = serializers.SerializerMethodField(
        help_text="The last error as a sentence in the request's language."
    )

    class Meta:
        model = WhatsAppSession
        fields = [
            "session_key",
            "state",
            "connected",
            "qr",
            "qr_expires_at",
            "jid",
            "phone",
            "lid",
            "push_name",
            "connected_since",
            "gateway_unreachable_since",
            "last_error",
            "last_error_code",
            "last_error_message",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_last_error_message(self, session) -> str:
        return reasons.reason_message(session.last_error_code) or session.last_error


class SessionRequestSerializer(KnownFieldsMixin, serializers.Serializer):
    """Optional body of the session endpoints.

    The user always comes from the authentication; a `user_id` naming anyone
    else is rejected so a client bug cannot act on another account.
    """

    user_id = serializers.IntegerField(
        required=False,
        help_text="Optional; when present it must be the authenticated user's id.",
        error_messages={
            "invalid": "user_id must be an integer; leave it out, the session "
            "always belongs to the user who is logged in."
        },
    )

    def validate_user_id(self, value):
        user = self.context["request"].user
        if value != user.pk:
            raise serializers.ValidationError(
                f"user_id {value} is not the authenticated user; leave user_id "
                "out, the session always belongs to the user who is logged in."
            )
        return value
