"""The customers and messages API, including other subscribers' ids."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import Subscription
from messaging.models import Customer, Message

from .helpers import (
    customer_make,
    outbound_make,
    session_connect,
    thread_language_kept,
)

CUSTOMERS = "/api/customers/"
SEND = "/api/messages/send"
MESSAGES = "/api/messages/"


@pytest.fixture
def charlie_api(charlie):
    client = APIClient()
    client.force_authenticate(charlie)
    return client


@pytest.fixture
def customer(alice):
    return customer_make(alice, name="Customer A")


def _detail(customer):
    return f"{CUSTOMERS}{customer.code}/"


# Customers


def test_customer_list_is_paginated(api, alice):
    for index in range(3):
        customer_make(alice, phone=f"+551190000000{index}", name=f"C{index}")

    body = api.get(CUSTOMERS).json()

    assert body["count"] == 3
    assert len(body["results"]) == 3
    assert set(body["results"][0]) >= {"id", "name", "phone", "unread_count"}


def test_customer_list_search(api, alice, customer):
    customer_make(alice, phone="+5521987654321", name="Other")

    body = api.get(CUSTOMERS, {"search": "custom"}).json()

    assert [item["id"] for item in body["results"]] == [str(customer.code)]


def test_customer_list_hides_other_subscribers(charlie_api, customer):
    assert charlie_api.get(CUSTOMERS).json()["count"] == 0


def test_customer_create_returns_201(api, alice):
    response = api.post(
        CUSTOMERS, {"name": "Ana", "phone": "11 90000-0001"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["phone"] == "+5511900000001"
    assert response.json()["id"] == str(Customer.objects.get(owner=alice).code)


def test_customer_create_invalid_phone_is_400_naming_field(api):
    response = api.post(CUSTOMERS, {"phone": "+55 11 9OOOO-0001"}, format="json")

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "invalid_phone"
    assert body["extra"]["field"] == "phone"
    assert "9OOOO" in body["message"]


def test_customer_create_duplicate_is_409(api, customer):
    response = api.post(CUSTOMERS, {"phone": "551100000001"}, format="json")

    assert response.status_code == 409
    assert response.json()["extra"]["customer_id"] == str(customer.code)


def test_customer_create_with_other_user_id_is_400(api, charlie):
    response = api.post(
        CUSTOMERS, {"phone": "+5511900000001", "user_id": charlie.pk}, format="json"
    )

    assert response.status_code == 400
    assert "user_id" in response.json()["extra"]["fields"]
    assert not Customer.objects.exists()


def test_customer_create_with_own_user_id_is_accepted(api, alice):
    response = api.post(
        CUSTOMERS, {"phone": "+5511900000001", "user_id": alice.pk}, format="json"
    )

    assert response.status_code == 201


def test_customer_list_other_user_id_400(api, charlie):
    response = api.get(CUSTOMERS, {"user_id": charlie.pk})

    assert response.status_code == 400


def test_customer_retrieve_by_code(api, customer):
    response = api.get(_detail(customer))

    assert response.status_code == 200
    assert response.json()["name"] == "Customer A"


def test_customer_patch_changes_name(api, customer):
    response = api.patch(_detail(customer), {"name": "Ana"}, format="json")

    customer.refresh_from_db()
    assert response.status_code == 200
    assert customer.name == "Ana"
    assert customer.phone == "+5511900000001"


def test_customer_put_replaces_name_and_number(api, customer):
    response = api.put(_detail(customer), {"phone": "+5511900000002"}, format="json")

    customer.refresh_from_db()
    assert response.status_code == 200
    assert customer.name == ""
    assert customer.phone == "+5511900000002"


def test_customer_delete_returns_204(api, customer):
    response = api.delete(_detail(customer))

    assert response.status_code == 204
    assert not Customer.objects.filter(pk=customer.pk).exists()


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("get", None),
        ("patch", {"name": "x"}),
        ("put", {"phone": "+5511900000003"}),
        ("delete", None),
    ],
)
def test_customer_of_another_subscriber_is_404(charlie_api, customer, method, data):
    response = getattr(charlie_api, method)(_detail(customer), data, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert str(customer.code) in response.json()["message"]
    assert "Customer A" not in response.content.decode()
    customer.refresh_from_db()
    assert customer.name == "Customer A"


def test_customer_malformed_code_is_404(api):
    assert api.get(f"{CUSTOMERS}not-a-uuid/").status_code == 404


def test_api_needs_authentication(db):
    response = APIClient().get(CUSTOMERS)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "'Authorization: Token <token>'" in response.json()["message"]


def test_other_body_type_lists_accepted(api):
    response = api.post(SEND, "hello", content_type="text/plain")

    assert response.status_code == 415
    body = response.json()
    assert body["code"] == "unsupported_media_type"
    assert "'text/plain'" in body["message"]
    assert "application/json" in body["extra"]["accepted"]


def test_invalid_json_body_is_explained(api):
    response = api.post(SEND, "{not json", content_type="application/json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "parse_error"
    assert body["message"].startswith("The body is not valid JSON (Expecting")
    assert "Send one JSON object" in body["message"]


def test_unknown_token_explains_next_step(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")

    response = client.get(CUSTOMERS)

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert "Create a new one on the Settings page" in response.json()["message"]


# Sending


def test_send_to_customer_returns_202_with_message(api, customer):
    response = api.post(
        SEND, {"customer_id": str(customer.code), "content": "Olá"}, format="json"
    )

    body = response.json()
    assert response.status_code == 202
    assert body["messages"][0]["status"] == "queued"
    assert body["messages"][0]["customer_id"] == str(customer.code)
    assert body["messages"][0]["body"] == "Olá"


def test_send_to_number_creates_customer(api, alice):
    response = api.post(SEND, {"to": "+5511900000001", "content": "Olá"}, format="json")

    assert response.status_code == 202
    assert Customer.objects.get(owner=alice).phone == "+5511900000001"


def test_send_long_text_returns_every_part(api, customer):
    response = api.post(
        SEND, {"customer_id": str(customer.code), "content": "a" * 5000}, format="json"
    )

    assert [len(m["body"]) for m in response.json()["messages"]] == [4096, 904]


@pytest.mark.parametrize("content", ["", "   "])
def test_send_empty_text_is_empty_message(api, customer, content):
    response = api.post(
        "/api/messages/send",
        {"customer_id": str(customer.code), "content": content},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "empty_message"
    assert response.json()["extra"]["field"] == "content"


def test_send_with_both_recipients_is_400(api, customer):
    response = api.post(
        SEND,
        {"customer_id": str(customer.code), "to": "+5511900000001", "content": "x"},
        format="json",
    )

    assert response.status_code == 400
    assert "customer_id" in response.json()["extra"]["fields"]


def test_send_without_recipient_names_customer_id(api):
    response = api.post(SEND, {"content": "x"}, format="json")

    assert response.status_code == 400
    assert "customer_id" in response.json()["extra"]["fields"]


def test_empty_body_names_every_missing_field(api):
    response = api.post(SEND, {}, format="json")

    fields = response.json()["extra"]["fields"]
    assert response.status_code == 400
    assert set(fields) == {"content", "customer_id"}
    assert fields["customer_id"] == [
        "Give either customer_id or to, not both and not neither."
    ]


def test_bad_recipient_is_not_reported_missing(api):
    response = api.post(SEND, {"customer_id": "nope"}, format="json")

    fields = response.json()["extra"]["fields"]
    assert set(fields) == {"content", "customer_id"}
    assert fields["customer_id"] == [
        "'nope' is not a valid id. Ids are UUIDs, such as "
        "123e4567-e89b-12d3-a456-426614174000."
    ]


def test_bad_customer_filter_names_value(api):
    response = api.get(MESSAGES, {"customer_id": "zz"})

    fields = response.json()["extra"]["fields"]
    assert fields["customer_id"][0].startswith("'zz' is not a valid id.")


def test_empty_text_invalid_number_names_both(api):
    response = api.post(SEND, {"to": "abc", "content": ""}, format="json")

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "invalid"
    assert body["extra"]["fields"]["content"] == [
        "The message is empty; type the text to send."
    ]
    assert "'abc' is not a valid phone number" in body["extra"]["fields"]["to"][0]


def test_blank_text_blank_number_names_both(api):
    response = api.post(SEND, {"to": "", "content": " "}, format="json")

    fields = response.json()["extra"]["fields"]
    assert response.status_code == 400
    assert set(fields) == {"to", "content"}
    assert fields["content"] == ["The message is empty; type the text to send."]


def test_blank_text_alone_is_empty_message(api):
    response = api.post(SEND, {"to": "+5511900000001", "content": " "}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "empty_message"


def test_null_customer_id_is_left_out(api, alice):
    session_connect(alice)

    response = api.post(
        SEND,
        {"to": "+5511900000001", "customer_id": None, "content": "Hi"},
        format="json",
    )

    assert response.status_code == 202


def test_null_to_is_left_out(api, alice, customer):
    session_connect(alice)

    response = api.post(
        SEND,
        {"customer_id": str(customer.code), "to": None, "content": "Hi"},
        format="json",
    )

    assert response.status_code == 202


def test_null_recipients_name_customer_id(api):
    response = api.post(
        SEND, {"customer_id": None, "to": None, "content": "Hi"}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()["extra"]["fields"]) == {"customer_id"}


def test_send_with_other_user_id_is_400(api, customer, charlie):
    response = api.post(
        SEND,
        {"customer_id": str(customer.code), "content": "x", "user_id": charlie.pk},
        format="json",
    )

    assert response.status_code == 400
    assert not Message.objects.exists()


def test_send_to_another_subscribers_customer_is_404(charlie_api, customer):
    response = charlie_api.post(
        SEND, {"customer_id": str(customer.code), "content": "x"}, format="json"
    )

    assert response.status_code == 404
    assert "Customer A" not in response.content.decode()
    assert not Message.objects.exists()


def test_send_when_not_connected_is_409(api, alice, customer):
    session_connect(alice, state="logged_out")

    response = api.post(
        SEND, {"customer_id": str(customer.code), "content": "x"}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "session_not_connected"


def test_send_with_inactive_subscription_is_403(api, alice, customer):
    Subscription.objects.filter(user=alice).update(status="canceled")
    alice.subscription.refresh_from_db()

    response = api.post(
        SEND, {"customer_id": str(customer.code), "content": "x"}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["code"] == "subscription_inactive"


def test_send_past_quota_is_429_with_reset_time(api, alice, customer):
    Subscription.objects.filter(user=alice).update(daily_message_quota=0)
    alice.subscription.refresh_from_db()

    response = api.post(
        SEND, {"customer_id": str(customer.code), "content": "x"}, format="json"
    )

    body = response.json()
    assert response.status_code == 429
    assert body["code"] == "daily_quota_exceeded"
    assert body["extra"]["limit"] == 0
    assert "resets_at" in body["extra"]


# Message list


@pytest.fixture
def history(alice, customer):
    now = timezone.now()
    inbound = Message.objects.create(
        owner=alice,
        customer=customer,
        direction="inbound",
        source="contact",
        kind="text",
        body="in",
        status="received",
        timestamp=now - timedelta(hours=2),
    )
    sent = outbound_make(alice, customer, status="sent", body="out")
    failed = outbound_make(alice, customer, status="failed", body="bad")
    return {"inbound": inbound, "sent": sent, "failed": failed, "now": now}


def _ids(response):
    return [item["id"] for item in response.json()["results"]]


def test_message_list_newest_first(api, history):
    ids = _ids(api.get(MESSAGES))

    assert ids[-1] == str(history["inbound"].code)
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"direction": "inbound"}, ["inbound"]),
        ({"status": "failed"}, ["failed"]),
        ({"direction": "outbound", "status": "sent"}, ["sent"]),
    ],
)
def test_message_list_filters(api, history, params, expected):
    assert _ids(api.get(MESSAGES, params)) == [str(history[k].code) for k in expected]


def test_message_list_filters_by_time(api, history):
    since = (history["now"] - timedelta(hours=3)).isoformat()
    until = (history["now"] - timedelta(hours=1)).isoformat()

    ids = _ids(api.get(MESSAGES, {"since": since, "until": until}))

    assert ids == [str(history["inbound"].code)]


def test_message_list_filters_by_customer(api, alice, history, customer):
    other = customer_make(alice, phone="+5521987654321", name="Other")
    outbound_make(alice, other, status="sent")

    ids = _ids(api.get(MESSAGES, {"customer": str(customer.code)}))

    assert len(ids) == 3


def test_message_list_filters_by_customer_id(api, alice, history, customer):
    other = customer_make(alice, phone="+5521987654321", name="Other")
    outbound_make(alice, other, status="sent")

    ids = _ids(api.get(MESSAGES, {"customer_id": str(customer.code)}))

    assert len(ids) == 3


def test_message_list_rejects_two_customers(api, alice, customer):
    other = customer_make(alice, phone="+5521987654321", name="Other")

    response = api.get(
        MESSAGES, {"customer": str(customer.code), "customer_id": str(other.code)}
    )

    assert response.status_code == 400
    assert set(response.json()["extra"]["fields"]) == {"customer_id"}


def test_message_list_rejects_bad_filter_values(api):
    response = api.get(MESSAGES, {"status": "lost", "since": "yesterday"})

    assert response.status_code == 400
    assert set(response.json()["extra"]["fields"]) == {"status", "since"}


def test_time_filter_error_names_value(api):
    response = api.get(MESSAGES, {"since": "2026-13-45"})

    assert response.status_code == 400
    [message] = response.json()["extra"]["fields"]["since"]
    assert "'2026-13-45' is not a date and time" in message
    assert "%2B" not in message.split("such as")[0]


def test_time_filter_error_explains_unencoded_plus(api):
    # What a client that did not encode "+00:00" sends.
    response = api.get(f"{MESSAGES}?since=2026-12-05T16:33:30+00:00")

    assert response.status_code == 400
    [message] = response.json()["extra"]["fields"]["since"]
    assert "'2026-12-05T16:33:30 00:00'" in message
    assert "write it as %2B" in message


def test_time_filter_accepts_encoded_offset(api, history):
    response = api.get(f"{MESSAGES}?since=2000-01-01T00:00:00%2B01:00")

    assert response.status_code == 200
    assert response.json()["count"] == 3


def test_message_list_hides_other_subscribers(charlie_api, history, customer):
    response = charlie_api.get(MESSAGES)

    assert response.json()["count"] == 0


def test_other_subscribers_customer_filter_not_found(charlie_api, history, customer):
    response = charlie_api.get(MESSAGES, {"customer_id": str(customer.code)})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert response.json()["message"] == f"No customer has the id {customer.code}."


def test_unknown_customer_filter_matches_other_subscribers(api, charlie_api, customer):
    unknown = api.get(MESSAGES, {"customer": str(uuid.uuid4())})
    other = charlie_api.get(MESSAGES, {"customer": str(customer.code)})

    assert unknown.status_code == other.status_code == 404
    assert unknown.json()["extra"] == other.json()["extra"] == {"field": "customer_id"}


# One message


def test_message_detail_returns_list_item(api, history):
    sent = history["sent"]
    listed = api.get(MESSAGES).json()["results"]
    [item] = [row for row in listed if row["id"] == str(sent.code)]

    response = api.get(f"{MESSAGES}{sent.code}/")

    assert response.status_code == 200
    assert response.json() == item


def test_foreign_message_detail_is_404(charlie_api, history):
    code = history["sent"].code

    response = charlie_api.get(f"{MESSAGES}{code}/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert response.json()["message"] == (
        f"No message has the id {code}; list your messages at /api/messages/."
    )


def test_unknown_message_like_foreign_one(api, charlie_api, history):
    unknown = api.get(f"{MESSAGES}{uuid.uuid4()}/")
    other = charlie_api.get(f"{MESSAGES}{history['sent'].code}/")

    assert unknown.status_code == other.status_code == 404
    assert unknown.json()["extra"] == other.json()["extra"] == {"field": "id"}


def test_message_detail_takes_id_without_hyphens(api, history):
    code = history["sent"].code

    response = api.get(f"{MESSAGES}{code.hex.upper()}/")

    assert response.json()["id"] == str(code)


def test_customer_detail_takes_id_without_hyphens(api, customer):
    response = api.get(f"{CUSTOMERS}{customer.code.hex}/")

    assert response.json()["id"] == str(customer.code)


def test_message_detail_malformed_id_is_404(api):
    response = api.get(f"{MESSAGES}{'-' * 36}/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_message_detail_needs_authentication(history):
    response = APIClient().get(f"{MESSAGES}{history['sent'].code}/")

    assert response.status_code == 401


def test_message_detail_rejects_query_parameter(api, history):
    response = api.get(f"{MESSAGES}{history['sent'].code}/", {"status": "sent"})

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_query_parameter"


# Pages


def test_page_past_end_names_last_page(api, history):
    response = api.get(MESSAGES, {"page": "3"})

    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert body["extra"] == {"page": 3, "pages": 1}
    assert "Page 3 does not exist: the last page is 1" in body["message"]
    assert "page 1 to 1" in body["message"]


@pytest.mark.parametrize("value", ["abc", "1.5", "0", "-1"])
def test_non_whole_page_is_400(api, history, value):
    response = api.get(MESSAGES, {"page": value})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_page"
    assert body["extra"] == {"field": "page", "value": value}
    assert repr(value) in body["message"]


def test_huge_page_number_is_named_exactly(api, history):
    response = api.get(MESSAGES, {"page": "99999999999999999999999"})

    assert response.status_code == 404
    assert response.json()["extra"]["page"] == 99999999999999999999999


def test_last_page_is_accepted(api, history):
    response = api.get(CUSTOMERS, {"page": "last"})

    assert response.status_code == 200
    assert response.json()["count"] == 1


# Schema


def test_schema_for_messaging_endpoints_has_no_warnings():
    patterns = [path("api/", include("messaging.api_urls"))]
    GENERATOR_STATS.reset()

    schema = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)

    assert GENERATOR_STATS._warn_cache == {}
    assert GENERATOR_STATS._error_cache == {}
    assert set(schema["paths"]) == {
        "/api/customers/",
        "/api/customers/{code}/",
        "/api/messages/",
        "/api/messages/{code}/",
        "/api/messages/send",
    }


def test_schema_documents_send_errors():
    patterns = [path("api/", include("messaging.api_urls"))]

    schema = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)

    responses = schema["paths"]["/api/messages/send"]["post"]["responses"]
    assert set(responses) == {"202", "400", "401", "403", "404", "409", "422", "429"}


def test_schema_documents_send_idempotency_key_header():
    patterns = [path("api/", include("messaging.api_urls"))]

    schema = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)

    parameters = schema["paths"]["/api/messages/send"]["post"]["parameters"]
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= parameters[0].items()


def test_schema_page_parameter_takes_last():
    patterns = [path("api/", include("messaging.api_urls"))]

    schema = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)

    parameters = schema["paths"]["/api/messages/"]["get"]["parameters"]
    page = next(parameter for parameter in parameters if parameter["name"] == "page")
    assert {"type": "string", "enum": ["last"]} in page["schema"]["oneOf"]


def test_schema_endpoint_serves_messaging_paths(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert "/api/messages/send" in response.content.decode()


def test_schema_describes_serializers_not_their_mixin(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")

    components = response.json()["components"]["schemas"]
    assert "ModelSerializer" not in components["Message"].get("description", "")
    assert "ModelSerializer" not in components["Customer"].get("description", "")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_send_by_token_costs_two_database_statements(alice, customer):

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice)}")

    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/api/messages/send",
            {"customer_id": str(customer.code), "content": "Olá"},
            format="json",
        )

    assert response.status_code == 202
    # The token with plan and session, then the customer, the quota count
    # and the insert in one statement.
    assert len(queries.captured_queries) == 2


def test_send_content_number_names_its_type(api, customer):
    response = api.post(
        "/api/messages/send",
        {"customer_id": str(customer.code), "content": 123},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["content"] == [
        "Must be a JSON string (in quotes), not int."
    ]


@pytest.mark.parametrize(("value", "type_name"), [(True, "bool"), (1, "int")])
def test_send_customer_id_must_be_a_string(api, customer, value, type_name):
    response = api.post(
        "/api/messages/send",
        {"customer_id": value, "content": "Hi"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["customer_id"] == [
        f"Must be a JSON string (in quotes), not {type_name}."
    ]
    assert not Message.objects.exists()


def test_send_to_as_json_number_is_rejected(api):
    response = api.post(
        "/api/messages/send", {"to": 5511988880001, "content": "Oi"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["to"] == [
        "Must be a JSON string (in quotes), not int."
    ]


def test_send_unknown_field_is_400(api, customer):
    body = {"customer_id": str(customer.code), "content": "Hi", "priority": "high"}

    response = api.post(SEND, body, format="json")

    fields = response.json()["extra"]["fields"]
    assert response.status_code == 400
    assert list(fields) == ["priority"]
    assert "accepts user_id, customer_id, to, content" in fields["priority"][0]
    assert not Message.objects.exists()


def test_send_unknown_field_with_other_errors(api):
    response = api.post(SEND, {"to": "+5511900000001", "text": "Hi"}, format="json")

    fields = response.json()["extra"]["fields"]
    assert response.status_code == 400
    assert set(fields) == {"content", "text"}


def test_send_body_idempotency_key_hint(api, customer):
    body = {"customer_id": str(customer.code), "content": "Hi", "idempotency_key": "k1"}

    response = api.post(SEND, body, format="json")

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["idempotency_key"] == [
        "Send the key in the Idempotency-Key header; the body does not carry it."
    ]


def test_send_unknown_field_error_is_translated(api, customer):
    body = {"customer_id": str(customer.code), "content": "Hi", "priority": 1}
    with thread_language_kept():
        response = api.post(SEND, body, format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.json()["extra"]["fields"]["priority"][0].startswith("未知字段")


def test_customer_create_misspelt_field_is_400(api):
    response = api.post(
        CUSTOMERS, {"phone": "+5511900000001", "nmae": "Ana"}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["extra"]["fields"]) == ["nmae"]
    assert not Customer.objects.exists()


def test_customer_patch_unknown_field_is_400(api, customer):
    response = api.patch(
        _detail(customer), {"name": "Ana", "email": "a@example.com"}, format="json"
    )

    customer.refresh_from_db()
    assert response.status_code == 400
    assert list(response.json()["extra"]["fields"]) == ["email"]
    assert customer.name == "Customer A"


def test_missing_csrf_names_header(alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(CUSTOMERS, {"phone": "+5511900000001"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "CSRF check failed (CSRF cookie not set)." in response.json()["message"]
    assert "X-CSRFToken header" in response.json()["message"]


def test_foreign_origin_csrf_names_origin(alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/customers/")
    token = client.cookies["csrftoken"].value

    response = client.post(
        CUSTOMERS,
        {"phone": "+5511900000001"},
        format="json",
        HTTP_X_CSRFTOKEN=token,
        HTTP_ORIGIN="http://other.example",
        secure=True,
    )

    assert response.status_code == 403
    assert "Origin checking failed" in response.json()["message"]
    assert "from this site's own pages" in response.json()["message"]


def test_customer_form_accepts_csrf_field(api):
    response = api.post(
        CUSTOMERS,
        {"phone": "+5511900000001", "csrfmiddlewaretoken": "token-from-the-form"},
    )

    assert response.status_code == 201


def test_customer_json_csrf_field_is_unknown(api):
    response = api.post(
        CUSTOMERS,
        {"phone": "+5511900000001", "csrfmiddlewaretoken": "x"},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["extra"]["fields"]) == ["csrfmiddlewaretoken"]


def test_customer_create_numeric_phone_is_400(api):
    response = api.post(CUSTOMERS, {"phone": 5511911110002}, format="json")

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["phone"] == [
        "Must be a JSON string (in quotes), not int."
    ]
    assert not Customer.objects.exists()


def test_customer_create_numeric_name_is_400(api):
    response = api.post(
        CUSTOMERS, {"phone": "+5511911110002", "name": 123}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["name"] == [
        "Must be a JSON string (in quotes), not int."
    ]
    assert not Customer.objects.exists()


def test_customer_put_numeric_phone_is_400(api, customer):
    response = api.put(
        _detail(customer), {"name": "Ana", "phone": 5511911110002}, format="json"
    )

    customer.refresh_from_db()
    assert response.status_code == 400
    assert list(response.json()["extra"]["fields"]) == ["phone"]
    assert customer.name == "Customer A"


def test_customer_patch_boolean_name_is_400(api, customer):
    response = api.patch(_detail(customer), {"name": True}, format="json")

    customer.refresh_from_db()
    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["name"] == [
        "Must be a JSON string (in quotes), not bool."
    ]
    assert customer.name == "Customer A"


def test_customer_form_patch_changes_name(api, customer):
    response = api.patch(_detail(customer), {"name": "Ana"}, format="multipart")

    customer.refresh_from_db()
    assert response.status_code == 200
    assert customer.name == "Ana"


def test_bad_status_lists_choices(api):
    response = api.get(MESSAGES, {"status": "READ"})

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["status"] == [
        '"READ" is not a valid status; use one of queued, sending, sent, '
        "delivered, read, failed, received."
    ]


def test_bad_direction_lists_choices(api):
    response = api.get(MESSAGES, {"direction": "in"})

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["direction"] == [
        '"in" is not a valid direction; use one of inbound, outbound.'
    ]


def test_schema_bodies_name_no_python_class(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")

    components = response.json()["components"]["schemas"]
    for name in ("CustomerCreateRequest", "MessageSendRequest"):
        description = components[name]["description"]
        assert "Mixin" not in description, name
        assert "serializer" not in description.lower(), name


def test_bad_status_error_is_translated(api):
    with thread_language_kept():
        response = api.get(MESSAGES, {"status": "READ"}, HTTP_ACCEPT_LANGUAGE="zh-hans")

    [message] = response.json()["extra"]["fields"]["status"]
    assert message.startswith("“READ”不是有效的 status")


def _send_in_chinese(api, to: str):
    with thread_language_kept():
        return api.post(
            SEND,
            {"to": to, "content": "Hi"},
            format="json",
            HTTP_ACCEPT_LANGUAGE="zh-hans",
        )


def test_invalid_jid_error_is_translated(api):
    response = _send_in_chinese(api, "12@@s.whatsapp.net")

    body = response.json()
    assert body["code"] == "invalid_recipient"
    assert body["message"] == (
        "'12@@s.whatsapp.net' 不是有效的 WhatsApp JID：其中必须恰好包含一个 @。"
    )
    assert body["extra"] == {"field": "to", "value": "12@@s.whatsapp.net"}


def test_group_jid_error_translated(api):
    response = _send_in_chinese(api, "120363@g.us")

    assert response.json()["message"] == (
        "120363@g.us 是WhatsApp 群组地址；消息只能发送到个人号码。"
    )


def test_email_recipient_outside_whatsapp(api):
    response = api.post(SEND, {"to": "bob@example.com", "content": "Hi"}, format="json")

    assert response.json()["message"] == (
        "bob@example.com is an address outside WhatsApp; messages go to one "
        "person's number."
    )


def test_invalid_phone_error_is_translated(api):
    with thread_language_kept():
        response = api.post(
            CUSTOMERS, {"phone": "12"}, format="json", HTTP_ACCEPT_LANGUAGE="zh-hans"
        )

    message = response.json()["message"]
    assert message.startswith("'12' 不是有效的电话号码：它既不是 BR 的有效号码")
