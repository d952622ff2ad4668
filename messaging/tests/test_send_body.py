"""The send body's quick check agrees with MessageSendSerializer."""

from __future__ import annotations

import uuid

import pytest
from django.http import QueryDict

from messaging.serializers import MessageSendSerializer, send_body_plain

CODE = "6f1c2f4e-8d1b-4c39-9d6e-2b7f3c1a5e90"

USUAL_BODIES = [
    {"customer_id": CODE, "content": "Olá, tudo bem?"},
    {"customer_id": CODE.upper(), "content": "Hello"},
    {"customer_id": CODE.replace("-", ""), "content": "no hyphens"},
    {"customer_id": "{" + CODE + "}", "content": "braces"},
    {"customer_id": "urn:uuid:" + CODE, "content": "urn"},
    {"customer_id": CODE, "content": ""},
    {"customer_id": CODE, "content": "   "},
    {"customer_id": CODE, "content": "  padded  "},
    {"customer_id": CODE, "content": "emoji 👋🏽 and ção"},
    {"customer_id": CODE, "content": "x" * 70_000},
]

OTHER_BODIES = [
    {"customer_id": CODE, "content": "with NUL \x00"},
    {"customer_id": CODE, "content": "lone \ud83d surrogate"},
    {"customer_id": CODE, "content": 123},
    {"customer_id": CODE, "content": None},
    {"customer_id": CODE, "content": True},
    {"customer_id": CODE, "content": ["a"]},
    {"customer_id": "not-a-uuid", "content": "Hi"},
    {"customer_id": "", "content": "Hi"},
    {"customer_id": 12345, "content": "Hi"},
    {"customer_id": CODE},
    {"content": "Hi"},
    {"customer_id": CODE, "content": "Hi", "to": "+5511900000001"},
    {"customer_id": CODE, "content": "Hi", "user_id": 1},
    {"to": "+5511900000001", "content": "Hi"},
    {},
    [],
    "text",
    None,
]


def _serializer_result(body):
    serializer = MessageSendSerializer(data=body, context={"request": None})
    return serializer.validated_data if serializer.is_valid() else None


@pytest.mark.parametrize("body", USUAL_BODIES)
def test_usual_body_matches_serializer(body):
    quick = send_body_plain(body)

    assert quick is not None
    assert quick == _serializer_result(body)
    assert isinstance(quick["customer_id"], uuid.UUID)


@pytest.mark.parametrize("body", OTHER_BODIES)
def test_other_body_needs_serializer(body):
    assert send_body_plain(body) is None


def test_form_body_needs_serializer():
    body = QueryDict(mutable=True)
    body.update({"customer_id": CODE, "content": "Hi"})

    assert send_body_plain(body) is None
