"""Request bodies that the API's parsers reject before any view reads them."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from messaging.models import Customer, Message

from .helpers import customer_make

SEND = "/api/messages/send"
CUSTOMERS = "/api/customers/"


@pytest.fixture
def customer(alice):
    return customer_make(alice)


def _post_json(api, path: str, text: str):
    return api.post(path, text, content_type="application/json")


def test_repeated_json_key_is_rejected(api, customer):
    body = (
        f'{{"customer_id": "{customer.code}", "content": "first", "content": "second"}}'
    )

    response = _post_json(api, SEND, body)

    assert response.status_code == 400
    assert response.json()["code"] == "repeated_field"
    assert response.json()["extra"] == {"field": "content", "nested": False}
    assert response.json()["message"] == (
        "content is given more than once in the body; give it once."
    )


def test_repeated_json_key_sends_nothing(api, customer):
    body = f'{{"customer_id": "{customer.code}", "content": "a", "content": "b"}}'

    _post_json(api, SEND, body)

    assert not Message.objects.exists()


def test_nested_repeated_key_rejected(api):
    body = '{"name": "Ana", "phone": "+5511900000001", "x": {"a": 1, "a": 2}}'

    response = _post_json(api, CUSTOMERS, body)

    assert response.status_code == 400
    assert response.json()["extra"] == {"field": "a", "nested": True}
    assert response.json()["message"] == (
        "The key a is given more than once in an object inside the body; give it once."
    )


def test_top_level_repeat_named_first(api):
    body = '{"name": "Ana", "x": {"a": 1, "a": 2}, "name": "Bia"}'

    response = _post_json(api, CUSTOMERS, body)

    assert response.json()["extra"] == {"field": "name", "nested": False}


def test_repeated_form_field_is_rejected(api):
    body = urlencode([("name", "Ana"), ("phone", "+5511900000001"), ("name", "Bia")])

    response = api.post(
        CUSTOMERS, body, content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "repeated_field"
    assert not Customer.objects.exists()


def test_repeated_multipart_field_is_rejected(api):
    response = api.post(CUSTOMERS, {"name": ["Ana", "Bia"], "phone": "+5511900000001"})

    assert response.status_code == 400
    assert response.json()["extra"] == {"field": "name", "nested": False}


def test_file_part_repeating_field_rejected(api):
    upload = SimpleUploadedFile("name.txt", b"Bia")
    fields = {"name": ["Ana", upload], "phone": "+5511900000001"}

    response = api.post(
        CUSTOMERS,
        encode_multipart(BOUNDARY, fields),
        content_type=MULTIPART_CONTENT,
    )

    assert response.status_code == 400
    assert response.json()["extra"] == {"field": "name", "nested": False}


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_400(api, depth):
    response = _post_json(api, SEND, "[" * depth + "]" * depth)

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert "nested too deeply" in response.json()["message"]


def test_usual_json_body_still_sends(api, customer):
    body = f'{{"customer_id": "{customer.code}", "content": "Hi"}}'

    response = _post_json(api, SEND, body)

    assert response.status_code == 202


@pytest.mark.parametrize(
    "text",
    [
        '{"to": "+5511912345678", "content": "x"}',
        '{"to": "+5511912345678", "content": "a&b=c"}',
        ' [{"content": "x"}]',
    ],
)
def test_json_sent_as_form_names_content_type(api, text):
    response = api.post(SEND, text, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert (
        "send it with 'Content-Type: application/json'" in (response.json()["message"])
    )
    assert not Message.objects.exists()


def test_form_send_still_works(api, customer):
    body = urlencode({"customer_id": str(customer.code), "content": "{x}"})

    response = api.post(SEND, body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 202
