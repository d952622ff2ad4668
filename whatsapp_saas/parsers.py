"""The API's request body parsers: DRF's, without dropping a repeated field.

`json.load` keeps the last of two equal keys in an object, and a form's
serializer reads the last of two equal names, so a body such as
`{"content": "a", "content": "b"}` would send "b" without a word. These
parsers reject such a body with 400 `repeated_field`, as a query parameter
given twice gets `repeated_query_parameter`.
"""

from __future__ import annotations

import codecs

from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json


def repeated_field_error(name: str):
    """Return the 400 ApplicationError for a body that repeats the field `name`."""
    # Imported here: DRF imports this module while whatsapp_saas.exceptions
    # is still importing rest_framework.views.
    from .exceptions import ApplicationError

    return ApplicationError(
        _("%(name)s is given more than once in the body; give it once.")
        % {"name": name},
        code="repeated_field",
        extra={"field": name},
    )


def _object_without_repeats(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen = set()
        for name, _value in pairs:
            if name in seen:
                raise repeated_field_error(name)
            seen.add(name)
    return data


def _form_without_repeats(data):
    for name, values in data.lists():
        if len(values) > 1:
            raise repeated_field_error(name)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, which also rejects a key repeated in one object.

    A body nested deeper than Python's parser can follow gets 400
    `parse_error`, where DRF's parser let the RecursionError become a 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        from .exceptions import JSON_PARSE_ERROR

        encoding = parsers.get_encoding(parser_context or {})
        parse_constant = json.strict_constant if self.strict else None
        try:
            decoded_stream = codecs.getreader(encoding)(stream)
            return json.load(
                decoded_stream,
                parse_constant=parse_constant,
                object_pairs_hook=_object_without_repeats,
            )
        except ValueError as error:
            raise ParseError(f"{JSON_PARSE_ERROR}{error}") from error
        except RecursionError:
            raise ParseError(
                _(
                    "The body's JSON is nested too deeply to read. Send one JSON "
                    "object with the fields this endpoint reads; /api/docs/ "
                    "lists them."
                )
            ) from None


class FormParser(parsers.FormParser):
    """DRF's form parser, which also rejects a field given more than once."""

    def parse(self, stream, media_type=None, parser_context=None):
        return _form_without_repeats(super().parse(stream, media_type, parser_context))


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, which also rejects a field given more than once."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _form_without_repeats(parsed.data)
        return parsed
