"""API endpoints reject query parameters they do not read, and repeats."""

from __future__ import annotations

import pytest

from messaging.models import Customer

from .helpers import customer_make, outbound_make, thread_language_kept

pytestmark = pytest.mark.django_db

CUSTOMERS = "/api/customers/"
MESSAGES = "/api/messages/"


def test_misspelt_message_filter_is_rejected(api, alice):
    outbound_make(alice, customer_make(alice), status="read")

    response = api.get(MESSAGES, {"statsu": "read"})

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "unknown_query_parameter"
    assert body["extra"]["parameters"] == ["statsu"]
    assert "status" in body["extra"]["accepted"]
    assert "'statsu'" in body["message"]


def test_repeated_message_filter_is_rejected(api):
    response = api.get(f"{MESSAGES}?status=sent&status=read")

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "repeated_query_parameter"
    assert body["extra"] == {"parameter": "status", "values": ["sent", "read"]}
    assert body["message"] == "status is given 2 times ('sent', 'read'); give it once."


def test_message_list_takes_every_filter(api, alice):
    customer = customer_make(alice)
    outbound_make(alice, customer, status="read")

    response = api.get(
        MESSAGES,
        {
            "customer_id": str(customer.code),
            "direction": "outbound",
            "status": "read",
            "since": "2020-01-01T00:00:00Z",
            "until": "2100-01-01T00:00:00Z",
            "page": "1",
            "format": "json",
            "user_id": str(alice.pk),
        },
    )

    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_misspelt_customer_search_is_rejected(api):
    response = api.get(CUSTOMERS, {"serach": "Ana"})

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "unknown_query_parameter"
    assert body["extra"] == {
        "parameters": ["serach"],
        "accepted": ["search", "page", "user_id", "format", "_"],
    }


def test_repeated_format_is_rejected(api):
    # The last value picks the renderer, so the error comes back as JSON.
    response = api.get(f"{CUSTOMERS}?format=api&format=json")

    assert response.status_code == 400
    assert response.json()["extra"] == {
        "parameter": "format",
        "values": ["api", "json"],
    }


def test_cache_busting_parameter_is_accepted(api):
    response = api.get(CUSTOMERS, {"_": "1733420000000"})

    assert response.status_code == 200


def test_customer_list_takes_search_and_page(api, alice):
    customer_make(alice, name="Ana")

    response = api.get(CUSTOMERS, {"search": "Ana", "page": "1"})

    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_delete_with_unknown_parameter_keeps_customer(api, alice):
    customer = customer_make(alice)

    response = api.delete(f"{CUSTOMERS}{customer.code}/?dry_run=1")

    assert response.status_code == 400
    assert response.json()["extra"]["parameters"] == ["dry_run"]
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_customer_detail_rejects_list_parameter(api, alice):
    customer = customer_make(alice)

    response = api.get(f"{CUSTOMERS}{customer.code}/", {"search": "Ana"})

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_query_parameter"


def test_send_rejects_unknown_parameter(api, alice):
    customer = customer_make(alice)
    body = {"customer_id": str(customer.code), "content": "Hi"}

    response = api.post("/api/messages/send?foo=1", body, format="json")

    assert response.status_code == 400
    assert not customer.messages.exists()


def test_session_logout_rejects_unknown_parameter(api, alice):
    response = api.post("/api/settings/whatsapp/session/logout?foo=1")

    assert response.status_code == 400
    alice.whatsapp_session.refresh_from_db()
    assert alice.whatsapp_session.state == "connected"


def test_send_takes_everywhere_parameters(api, alice):
    customer = customer_make(alice)
    body = {"customer_id": str(customer.code), "content": "Hi"}

    response = api.post(
        f"/api/messages/send?user_id={alice.pk}&format=json&_=1", body, format="json"
    )

    assert response.status_code == 202


def test_browsable_list_with_search_renders(alice_client):
    response = alice_client.get(CUSTOMERS, {"format": "api", "search": "a"})

    assert response.status_code == 200


def test_browsable_misspelt_filter_is_400(alice_client):
    response = alice_client.get(MESSAGES, {"format": "api", "statsu": "1"})

    assert response.status_code == 400


def test_options_on_list_takes_its_parameters(api):
    response = api.options(f"{CUSTOMERS}?search=a")

    assert response.status_code == 200


def _get_in_chinese(api, params: dict):
    with thread_language_kept():
        return api.get(MESSAGES, params, HTTP_ACCEPT_LANGUAGE="zh-hans")


def test_unknown_parameter_error_is_translated(api):
    response = _get_in_chinese(api, {"statsu": "read"})

    assert response.json()["message"].startswith("未知的查询参数 'statsu'")


def test_nul_parameter_error_is_translated(api):
    response = _get_in_chinese(api, {"status": "\x00"})

    assert response.json()["message"].startswith("status 含有 NUL 字符（\\x00）")


def test_invalid_filter_message_is_translated(api):
    response = _get_in_chinese(api, {"status": "nope"})

    assert response.json()["message"] == "请求中有无效字段；各字段的问题见 extra。"


@pytest.mark.parametrize(
    "name", ["customer_id", "customer", "direction", "status", "since", "until"]
)
def test_empty_message_filter_is_rejected(api, alice, name):
    outbound_make(alice, customer_make(alice), status="read")

    response = api.get(MESSAGES, {name: ""})

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "empty_query_parameter"
    assert body["extra"] == {"parameter": name}
    assert body["message"] == f"{name} is empty; give it a value, or leave it out."


def test_blank_message_filter_is_rejected(api):
    response = api.get(MESSAGES, {"customer_id": "  "})

    assert response.status_code == 400
    assert response.json()["code"] == "empty_query_parameter"


def test_empty_page_is_rejected(api):
    response = api.get(CUSTOMERS, {"page": ""})

    assert response.status_code == 400
    assert response.json()["extra"] == {"parameter": "page"}


def test_empty_customer_search_lists_all(api, alice):
    customer_make(alice)

    response = api.get(CUSTOMERS, {"search": ""})

    assert response.status_code == 200
    assert response.json()["count"] == 1
