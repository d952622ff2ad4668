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


def repeated_field_error(name: str, *, nested: bool = False):
    """Return the 400 ApplicationError for a body that repeats the key `name`.

    `nested` is True when the key is in an object inside the body, not one
    of the body's own fields.
    """
    # Imported here: DRF imports this module while whatsapp_saas.exceptions
    # is still importing rest_framework.views.
    from .exceptions import ApplicationError

    if nested:
        message = _(
            "The key %(name)s is given more than once in an object inside the "
            "body; give it once."
        )
    else:
        message = _("%(name)s is given more than once in the body; give it once.")
    return ApplicationError(
        message % {"name": name},
        code="repeated_field",
        extra={"field": name, "nested": nested},
    )


class _RepeatedKeys:
    """The object_pairs_hook of one parse: builds each object, notes repeats."""

    def __init__(self):
        # (object, key) pairs; the object is kept so that `is` can find it.
        self.found: list[tuple[dict, str]] = []

    def __call__(self, pairs: list[tuple[str, object]]) -> dict:
        data = dict(pairs)
        if len(data) != len(pairs):
            seen = set()
            for name, _value in pairs:
                if name in seen:
                    self.found.append((data, name))
                    break
                seen.add(name)
        return data

    def check(self, parsed) -> None:
        """Raise for a repeat, naming one of the body's own fields first."""
        for data, name in self.found:
            if data is parsed:
                raise repeated_field_error(name)
        if self.found:
            raise repeated_field_error(self.found[0][1], nested=True)


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
        repeats = _RepeatedKeys()
        try:
            decoded_stream = codecs.getreader(encoding)(stream)
            parsed = json.load(
                decoded_stream,
                parse_constant=parse_constant,
                object_pairs_hook=repeats,
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
        repeats.check(parsed)
        return parsed


class FormParser(parsers.FormParser):
    """DRF's form parser, which also rejects a field given more than once,
    and a JSON body sent with the form content type."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = _form_without_repeats(super().parse(stream, media_type, parser_context))
        _json_as_form_reject(data)
        return data


def _json_as_form_reject(data) -> None:
    # `curl -d '{...}'` sends JSON as a form, whose first field is then
    # named by the JSON text up to its first & or =. No field of this API
    # starts with a brace or a bracket.
    first = next(iter(data), "")
    if first.lstrip()[:1] in ("{", "["):
        raise ParseError(
            _(
                "The body looks like JSON, but its Content-Type is "
                "application/x-www-form-urlencoded; send it with "
                "'Content-Type: application/json'."
            )
        )


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, which also rejects a field given more than once,
    as text or file parts alike."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _form_without_repeats(parsed.data)
        _form_without_repeats(parsed.files)
        # A file part may also share its name with a text part.
        for name in parsed.files:
            if name in parsed.data:
                raise repeated_field_error(name)
        return parsed
