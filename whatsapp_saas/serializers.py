"""Serializer parts shared by the API's request bodies."""

from __future__ import annotations

from collections.abc import Mapping

from django.http import QueryDict
from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

# The CSRF token field of an HTML form, which the browsable API posts as
# form data along with the serializer's fields.
FORM_FIELDS = frozenset({"csrfmiddlewaretoken"})


class KnownFieldsMixin:
    """Reject a request body's fields that the serializer does not read.

    DRF drops a field it does not know, so a misspelt optional field, such
    as `nmae` for a customer's name, would be ignored and the request would
    succeed without it. Each unknown field gets an error under its own
    name, next to the other fields' errors, naming the fields the endpoint
    accepts. `unknown_field_hints` maps a field name to the sentence to give
    instead, for a field that clients put in the body by mistake.
    """

    unknown_field_hints: dict[str, str] = {}

    def to_internal_value(self, data):
        unknown = self._unknown_fields(data)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            if unknown and isinstance(error.detail, dict):
                for name, errors in unknown.items():
                    error.detail.setdefault(name, errors)
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value

    def _unknown_fields(self, data) -> dict[str, list[ErrorDetail]]:
        if not isinstance(data, Mapping):
            return {}
        accepted = [name for name, field in self.fields.items() if not field.read_only]
        ignored = FORM_FIELDS if isinstance(data, QueryDict) else frozenset()
        unknown = [
            name for name in data if name not in accepted and name not in ignored
        ]
        if not unknown:
            return {}

        message = _(
            "Unknown field; this endpoint accepts %(accepted)s. Check the "
            "spelling, or leave it out."
        ) % {"accepted": ", ".join(accepted)}
        return {
            str(name): [
                ErrorDetail(
                    str(self.unknown_field_hints.get(name, message)),
                    code="unknown_field",
                )
            ]
            for name in unknown
        }
