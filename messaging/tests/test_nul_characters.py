"""NUL characters in user input never reach the database.

PostgreSQL rejects NUL in text and in query parameters, and SQLite stores it
silently, so the customers page's search drops it, while forms, serializers,
CSV rows and the API's query parameters reject it on both databases.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from messaging.models import Customer, Message
from messaging.services import customer_import_csv

from .helpers import customer_make, session_connect


def test_page_search_drops_nul(alice_client, alice):
    customer_make(alice, name="Ana")

    response = alice_client.get("/customers/", {"q": "An\x00a"})

    assert response.status_code == 200
    assert "Ana" in response.content.decode()


def test_page_search_of_only_nul_lists_everyone(alice_client, alice):
    customer_make(alice, name="Ana")

    response = alice_client.get("/customers/", {"q": "\x00"})

    assert response.status_code == 200
    assert "Ana" in response.content.decode()


def test_api_search_with_nul_is_rejected(api, alice):
    customer_make(alice, name="Ana")

    response = api.get("/api/customers/", {"search": "An\x00a"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_query_parameter"
    assert response.json()["extra"] == {"parameter": "search"}
    assert "search contains a NUL character" in response.json()["message"]


@pytest.mark.parametrize("name", ["status", "direction", "_"])
def test_api_message_filter_with_nul_is_rejected(api, name):
    response = api.get("/api/messages/", {name: "\x00"})

    assert response.status_code == 400
    assert response.json()["extra"] == {"parameter": name}


def test_csv_cell_with_nul_rejects_its_row(alice):
    report = customer_import_csv(
        owner=alice, file=b"name,phone\nAn\x00a,+5511900000001\n"
    )

    assert report.committed is False
    assert report.rows[0].status == "rejected"
    assert "NUL" in report.rows[0].reason
    assert not Customer.objects.filter(owner=alice).exists()


def test_csv_phone_with_nul_rejects_its_row(alice):
    report = customer_import_csv(
        owner=alice, file=b"name,phone\nAna,+55119000\x0000001\n"
    )

    assert report.rows[0].status == "rejected"
    assert "NUL" in report.rows[0].reason


def test_customer_form_rejects_nul_in_name(alice_client, alice):
    response = alice_client.post(
        "/customers/add/", {"name": "An\x00a", "phone": "+5511900000001"}
    )

    assert response.status_code == 400
    assert "Null characters are not allowed" in response.content.decode()
    assert not Customer.objects.filter(owner=alice).exists()


def test_customer_form_rejects_nul_in_phone(alice_client, alice):
    response = alice_client.post(
        "/customers/add/", {"name": "Ana", "phone": "+55119000\x0000001"}
    )

    assert "Null characters are not allowed" in response.content.decode()
    assert not Customer.objects.filter(owner=alice).exists()


@pytest.mark.parametrize("field", ["name", "phone"])
def test_customer_api_rejects_nul(api, alice, field):
    payload = {"name": "Ana", "phone": "+5511900000001"}
    payload[field] += "\x00"

    response = api.post("/api/customers/", payload, format="json")

    assert response.status_code == 400
    assert field in str(response.json())
    assert not Customer.objects.filter(owner=alice).exists()


def test_customer_api_update_rejects_nul_in_name(api, alice):
    customer = customer_make(alice, name="Ana")

    response = api.patch(
        f"/api/customers/{customer.code}/", {"name": "A\x00"}, format="json"
    )

    assert response.status_code == 400
    customer.refresh_from_db()
    assert customer.name == "Ana"


def test_send_api_rejects_nul_in_content(api, alice):
    session_connect(alice)
    customer = customer_make(alice)

    response = api.post(
        "/api/messages/send",
        {"customer_id": str(customer.code), "content": "Hi\x00"},
        format="json",
    )

    assert response.status_code == 400
    assert "content" in str(response.json())


@pytest.mark.postgres
def test_page_nul_search_on_postgresql(alice_client):
    response = alice_client.get("/customers/", {"q": "\x00"})

    assert response.status_code == 200


@pytest.mark.postgres
def test_api_nul_search_400_on_postgresql(alice_client):
    response = alice_client.get("/api/customers/", {"search": "\x00"})

    assert response.status_code == 400


@pytest.mark.postgres
def test_csv_upload_with_nul_is_reported_on_postgresql(alice_client, alice):
    upload = SimpleUploadedFile("c.csv", b"name,phone\nAn\x00a,+5511900000001\n")

    response = alice_client.post("/customers/import/", {"file": upload})

    assert response.status_code == 200
    assert "NUL" in response.content.decode()
    assert not Customer.objects.filter(owner=alice).exists()


def test_page_send_with_nul_names_it(alice_client, alice):
    customer = customer_make(alice, name="Ana")
    session_connect(alice)

    response = alice_client.post(
        f"/customers/{customer.code}/send/", {"content": "a\x00b"}
    )

    assert "Null characters are not allowed" in response.content.decode()
    assert "The message is empty" not in response.content.decode()
    assert not Message.objects.filter(owner=alice).exists()
