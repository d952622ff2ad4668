"""API input and output shapes for customers and messages."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import cache

from django.core.exceptions import FieldDoesNotExist
from django.utils.translation import gettext_lazy as _
from rest_framework import ISO_8601, serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import api_settings

from whatsapp_saas.serializers import KnownFieldsMixin

from .failures import failure_reason
from .models import Customer, Message
from .phones import value_shown
from .services.sending import RECIPIENT_MISSING
from .text import EMPTY_MESSAGE, text_is_blank


class MessagingErrorSerializer(serializers.Serializer):
    """The API's error body: a sentence, a stable code and related values."""

    message = serializers.CharField()
    code = serializers.CharField()
    extra = serializers.DictField()


class CallerIdMixin(KnownFieldsMixin, serializers.Serializer):
    """A request body that acts for the authenticated user only.

    A `user_id` is optional and must be the authenticated user's own id,
    because the user always comes from the credentials. A body that names
    another user gets 400 and never acts for someone else. A field that the
    endpoint does not read also gets 400, with an `unknown_field` error
    under that field's name.
    """

    user_id = serializers.IntegerField(
        required=False,
        write_only=True,
        help_text=_("Optional; must equal the authenticated user's id."),
    )

    def validate_user_id(self, value):
        request = self.context.get("request")
        if request is None or value != request.user.pk:
            raise serializers.ValidationError(
                _("user_id %(value)s is not the authenticated user; omit it.")
                % {"value": value}
            )
        return value


class ModelFieldsOnceMixin:
    """Build a ModelSerializer's fields once per class instead of per instance.

    ModelSerializer inspects the model again for every serializer it makes,
    which cost more than the rest of a send request's serialising. The
    result never changes, so each instance gets a copy of the first. When
    every field is read-only, a shallow copy of each field is enough: binding
    sets the copy's own name and parent, and reading a value changes
    nothing a field holds. Fields that validate input get deep copies, as a
    plain Serializer gets of its declared fields.
    """

    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_fields_built")
        if built is None:
            built = super().get_fields()
            # Set before `_fields_built`, which another thread may see at
            # once and then read this too.
            cls._fields_read_only = all(field.read_only for field in built.values())
            cls._fields_built = built
        if cls._fields_read_only:
            return {name: field_copy(field) for name, field in built.items()}
        return copy.deepcopy(built)


def field_copy(field):
    """Return a shallow copy of a serializer field, as `copy.copy` makes.

    `copy.copy` goes through `__reduce_ex__` and took two thirds of the time
    a message's output fields cost; copying the attributes takes a tenth of
    that. DRF fields keep all their state in `__dict__`.
    """
    new = object.__new__(type(field))
    new.__dict__.update(field.__dict__)
    return new


class CustomerSerializer(ModelFieldsOnceMixin, serializers.ModelSerializer):
    """A customer of the subscriber, with the time of the latest message."""

    id = serializers.UUIDField(source="code", read_only=True)
    last_message_at = serializers.DateTimeField(read_only=True, allow_null=True)
    unread_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Customer
        fields = [
            "id",
            "name",
            "push_name",
            "phone",
            "wa_jid",
            "lid",
            "phone_unresolved",
            "last_message_at",
            "unread_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


NOT_A_STRING = _("Must be a JSON string (in quotes), not %(type)s.")


def _string_require(field, data) -> None:
    if not isinstance(data, str):
        # Not field.fail(): DRF fills its messages with str.format, and this
        # one is translated with %-style placeholders.
        raise serializers.ValidationError(
            field.error_messages["not_a_string"] % {"type": type(data).__name__},
            code="not_a_string",
        )


class StrictCharField(serializers.CharField):
    """A CharField that takes only JSON strings, never numbers or booleans."""

    default_error_messages = {"not_a_string": NOT_A_STRING}

    def to_internal_value(self, data):
        _string_require(self, data)
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUIDField that takes only JSON strings.

    DRF's UUIDField also reads an integer as a UUID's 128-bit value, so
    `true` became the id 00000000-0000-0000-0000-000000000001.
    """

    default_error_messages = {
        "not_a_string": NOT_A_STRING,
        "invalid": _(
            "{value} is not a valid id. Ids are UUIDs, such as "
            "123e4567-e89b-12d3-a456-426614174000."
        ),
    }

    def to_internal_value(self, data):
        _string_require(self, data)
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            self.fail("invalid", value=value_shown(data))


class CustomerCreateSerializer(CallerIdMixin):
    name = StrictCharField(required=False, allow_blank=True, max_length=200)
    phone = StrictCharField(
        max_length=64,
        help_text=_(
            "With the country code (+5511912345678), or in the format of the "
            "user's default country."
        ),
    )


class CustomerUpdateSerializer(CallerIdMixin):
    name = StrictCharField(required=False, allow_blank=True, max_length=200)
    phone = StrictCharField(required=False, max_length=64)


# Keys of Message.metadata that only the send path uses: `send_to` is the
# recipient a send chose, kept so that a retry sends to the same one.
INTERNAL_METADATA_KEYS = frozenset({"send_to"})


class MessageMetadataField(serializers.JSONField):
    """A message's metadata without the keys only the send path uses."""

    def to_representation(self, value):
        if isinstance(value, dict) and not INTERNAL_METADATA_KEYS.isdisjoint(value):
            value = {
                key: item
                for key, item in value.items()
                if key not in INTERNAL_METADATA_KEYS
            }
        return super().to_representation(value)


class FailureReasonField(serializers.CharField):
    """The reason a message failed: for a known `error_code` in the
    request's language, else the sentence stored with the message."""

    def to_representation(self, value):
        return failure_reason(value)


class MessageSerializer(ModelFieldsOnceMixin, serializers.ModelSerializer):
    """One WhatsApp message to or from a customer, with its delivery status."""

    id = serializers.UUIDField(source="code", read_only=True)
    customer_id = serializers.UUIDField(source="customer.code", read_only=True)
    metadata = MessageMetadataField(read_only=True)
    error = FailureReasonField(
        source="*",
        read_only=True,
        help_text=(
            "Why the message failed; empty unless it did. For an `error_code` "
            "with a fixed sentence it is in the request's language, else as "
            "stored."
        ),
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "customer_id",
            "direction",
            "source",
            "kind",
            "body",
            "metadata",
            "status",
            "error_code",
            "error",
            "gateway_message_id",
            "quoted_id",
            "timestamp",
            "timestamp_estimated",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
            "edited",
            "edited_content_unavailable",
            "edit_history",
            "revoked_at",
            "reactions",
            "unread",
            "created_at",
        ]
        read_only_fields = fields


@cache
def _message_serializer() -> MessageSerializer:
    return MessageSerializer()


# The ways `messages_data` writes a model value, by field type.
_AS_IS = "as is"
_AS_STR = "str"
_AS_BOOL = "bool"
_AS_CHOICE = "choice"
_AS_DATETIME = "datetime"


def _output_kind(field) -> str | None:
    """Return the way to write a value of `field` as its own
    `to_representation` does, or None to call that method instead."""
    kind = type(field)
    if kind is serializers.ChoiceField:
        return _AS_CHOICE
    if kind is serializers.CharField:
        return _AS_STR
    if kind is serializers.BooleanField:
        return _AS_BOOL
    if kind is serializers.JSONField and not field.binary:
        return _AS_IS
    if kind is serializers.UUIDField and field.uuid_format == "hex_verbose":
        return _AS_STR
    if kind is serializers.DateTimeField and not hasattr(field, "timezone"):
        output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
        if isinstance(output_format, str) and output_format.lower() == ISO_8601:
            return _AS_DATETIME
    return None


@cache
def _message_plan() -> list[tuple]:
    """Return, per output field of a message, (name, attname, kind, field).

    A field read from one concrete model column gets its column's attname
    and an `_output_kind`. Any other field has None for both and goes
    through DRF's own get_attribute and to_representation.
    """
    plan = []
    for field in _message_serializer()._readable_fields:
        kind = _output_kind(field)
        attname = None
        if kind is not None and len(field.source_attrs) == 1:
            try:
                column = Message._meta.get_field(field.source_attrs[0])
            except FieldDoesNotExist:
                column = None
            if column is not None and column.concrete and not column.is_relation:
                attname = column.attname
        plan.append((field.field_name, attname, kind if attname else None, field))
    return plan


def messages_data(messages) -> list[dict]:
    """Return what `MessageSerializer(messages, many=True).data` contains.

    One serializer, built once per process, describes the fields. A field
    read from one model column is written here the way its DRF field
    writes it, in about a third of the time that each field's
    get_attribute and to_representation took. Other fields still go
    through them. Tests compare both ways on stored and unsaved messages.
    """
    plan = _message_plan()
    output_zone = None
    data = []
    for message in messages:
        item = {}
        for name, attname, kind, field in plan:
            if kind is None:
                try:
                    attribute = field.get_attribute(message)
                except SkipField:
                    continue
                if isinstance(attribute, PKOnlyObject):
                    empty = attribute.pk is None
                else:
                    empty = attribute is None
                item[name] = None if empty else field.to_representation(attribute)
                continue
            value = getattr(message, attname)
            if value is None or kind is _AS_IS:
                item[name] = value
            elif kind is _AS_STR:
                item[name] = value if type(value) is str else str(value)
            elif kind is _AS_CHOICE:
                item[name] = field.to_representation(value)
            elif kind is _AS_BOOL and type(value) is bool:
                item[name] = value
            elif kind is _AS_DATETIME and (
                type(value) is datetime and value.utcoffset() is not None
            ):
                if output_zone is None:
                    output_zone = field.default_timezone()
                item[name] = _iso_datetime(value, output_zone, field)
            else:
                item[name] = field.to_representation(value)
        data.append(item)
    return data


def _iso_datetime(value, zone, field) -> str:
    """Write an aware datetime as DRF's DateTimeField does in ISO 8601."""
    if zone is None:
        return field.to_representation(value)
    try:
        text = value.astimezone(zone).isoformat()
    except OverflowError:
        return field.to_representation(value)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _later_errors_add(data: Mapping, detail: dict) -> None:
    """Add to a send body's field errors those that later checks would raise.

    `validate` and the send service run only once every field is valid, so
    a body with a field error would not name a missing recipient or a blank
    text until the client sent it again.
    """
    if all(data.get(name) is None for name in ("customer_id", "to")):
        error = ErrorDetail(str(RECIPIENT_MISSING), code="required")
        detail.setdefault("customer_id", [error])

    content = data.get("content")
    if isinstance(content, str) and text_is_blank(content):
        detail.setdefault("content", [ErrorDetail(str(EMPTY_MESSAGE), code="blank")])


class MessageSendSerializer(CallerIdMixin):
    unknown_field_hints = {
        "idempotency_key": _(
            "Send the key in the Idempotency-Key header; the body does not carry it."
        ),
    }

    # null is taken as leaving the field out, as many clients send an
    # optional field they have no value for.
    customer_id = StrictUUIDField(
        required=False,
        allow_null=True,
        help_text=_("The customer's id; give this or `to`."),
    )
    to = StrictCharField(
        required=False,
        allow_null=True,
        max_length=64,
        help_text=_(
            "A phone number or a person's WhatsApp JID; the customer is "
            "created when new. Give this or `customer_id`."
        ),
    )
    content = StrictCharField(
        # The send service rejects empty and whitespace-only text alike,
        # with the `empty_message` error.
        allow_blank=True,
        trim_whitespace=False,
        help_text=_("The text; longer than 4096 characters it is sent in parts."),
    )

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as error:
            if isinstance(data, Mapping) and isinstance(error.detail, dict):
                _later_errors_add(data, error.detail)
            raise

    def validate(self, attrs):
        for name in ("customer_id", "to"):
            if name in attrs and attrs[name] is None:
                del attrs[name]
        if ("customer_id" in attrs) == ("to" in attrs):
            # Under a field's name, so that the client sees which one to fix.
            raise serializers.ValidationError({"customer_id": str(RECIPIENT_MISSING)})
        return attrs


# A lone UTF-16 surrogate, which DRF's CharField rejects.
_SURROGATE = re.compile("[\ud800-\udfff]")


def send_body_plain(data) -> dict | None:
    """Return the validated send body for its usual shape, or None.

    The usual body is a JSON object with a `customer_id` string and a
    `content` string, and nothing else. For a valid one this returns what
    MessageSendSerializer's `validated_data` would be, without building the
    serializer's fields, which took about a twentieth of a send request's
    CPU. Any other body gives None and goes through the serializer, which
    reports every error.
    """
    if type(data) is not dict or data.keys() != {"customer_id", "content"}:
        return None
    code, content = data["customer_id"], data["content"]
    if type(code) is not str or type(content) is not str:
        return None
    if "\x00" in content or (not content.isascii() and _SURROGATE.search(content)):
        return None
    try:
        customer_id = uuid.UUID(hex=code)
    except (TypeError, ValueError):
        return None
    return {"customer_id": customer_id, "content": content}


class MessageSendResultSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True)


class QueryDateTimeField(serializers.DateTimeField):
    """A date and time from a query string, whose error names the value.

    A "+" in a query string means a space, so an offset such as +01:00
    that the client did not encode arrives as " 01:00". The error explains
    this when the value has a space.
    """

    def to_internal_value(self, value):
        try:
            return super().to_internal_value(value)
        except serializers.ValidationError as error:
            if "invalid" not in error.get_codes():
                raise
            message = _(
                "%(value)s is not a date and time; use ISO 8601, such as "
                "2026-12-05T16:30:00Z or 2026-12-05T16:30:00%%2B01:00."
            ) % {"value": repr(value)}
            if isinstance(value, str) and " " in value.strip():
                message += " " + _(
                    "A + in a query string arrives as a space; write it as %(encoded)s."
                ) % {"encoded": "%2B"}
            raise serializers.ValidationError(message, code="invalid") from None


class QueryChoiceField(serializers.ChoiceField):
    """A choice from a query string, whose error lists the accepted values."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as error:
            if "invalid_choice" not in error.get_codes():
                raise
            message = _(
                '"%(value)s" is not a valid %(name)s; use one of %(choices)s.'
            ) % {
                "value": data,
                "name": self.field_name,
                "choices": ", ".join(self.choice_strings_to_values),
            }
            raise serializers.ValidationError(message, code="invalid_choice") from None


class MessageFilterSerializer(serializers.Serializer):
    customer_id = StrictUUIDField(
        required=False, help_text=_("A customer's id, as messages name it.")
    )
    customer = StrictUUIDField(
        required=False, help_text=_("The same as customer_id, its older name.")
    )
    direction = QueryChoiceField(choices=Message.Direction.choices, required=False)
    status = QueryChoiceField(choices=Message.Status.choices, required=False)
    since = QueryDateTimeField(
        required=False, help_text=_("Messages at or after this time (ISO 8601).")
    )
    until = QueryDateTimeField(
        required=False, help_text=_("Messages before this time (ISO 8601).")
    )

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:
            raise serializers.ValidationError(_("since must be earlier than until."))
        older_name = attrs.pop("customer", None)
        if older_name is None:
            return attrs
        customer_id = attrs.setdefault("customer_id", older_name)
        if customer_id != older_name:
            raise serializers.ValidationError(
                {"customer_id": _("customer and customer_id name different customers.")}
            )
        return attrs
