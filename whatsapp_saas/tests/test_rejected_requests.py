"""Requests Django rejects before a view runs get the API's JSON 400."""

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

pytestmark = pytest.mark.django_db

MANY_PARAMS = "&".join(f"f{index}=1" for index in range(1001))


def test_too_many_query_parameters_on_api(api):
    response = api.get(f"/api/messages/?{MANY_PARAMS}")

    assert response.status_code == 400
    assert response.json()["code"] == "too_many_fields"
    assert response.json()["extra"] == {"max": 1000}


def test_too_many_fields_logged_as_security(api, caplog):
    with caplog.at_level(logging.ERROR, logger="django.security"):
        api.get(f"/api/messages/?{MANY_PARAMS}")

    assert [record.name for record in caplog.records] == [
        "django.security.TooManyFieldsSent"
    ]


def test_too_many_query_parameters_with_debug_on(api, settings):
    # With DEBUG on, DRF re-raised the error through a renderer that its
    # content negotiation never chose, and the client got a 500.
    settings.DEBUG = True

    response = api.get(f"/api/messages/?{MANY_PARAMS}")

    assert response.status_code == 400
    assert response.json()["code"] == "too_many_fields"


def test_too_many_form_fields_on_send(api):
    response = api.post(
        "/api/messages/send",
        MANY_PARAMS,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "too_many_fields"


def test_too_many_files_on_send(api):
    body = {
        f"file{index}": SimpleUploadedFile(f"{index}.txt", b"a") for index in range(101)
    }

    response = api.post("/api/messages/send", body, format="multipart")

    assert response.status_code == 400
    assert response.json()["code"] == "too_many_files"


def test_disallowed_host_on_api_gets_json(client):
    response = client.get("/api/messages/", HTTP_HOST="evil.invalid")

    assert response.status_code == 400
    assert response.json()["code"] == "disallowed_host"


def test_disallowed_host_on_page_gets_page(client):
    response = client.get("/customers/", HTTP_HOST="evil.invalid")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def _chunked_customer_post(api, **headers):
    return api.post(
        "/api/customers/",
        {"phone": "+5511900000001"},
        format="json",
        HTTP_TRANSFER_ENCODING="chunked",
        **headers,
    )


def test_chunked_api_body_gets_411(api):
    response = _chunked_customer_post(api)

    assert response.status_code == 411
    assert response.json()["code"] == "length_required"
    assert "Content-Length" in response.json()["message"]


def test_chunked_api_body_changes_nothing(api):
    created = api.post("/api/customers/", {"phone": "+5511900000001"}, format="json")
    url = f"/api/customers/{created.json()['id']}/"

    api.patch(url, {"name": "Renamed"}, format="json", HTTP_TRANSFER_ENCODING="chunked")

    assert api.get(url).json()["name"] == ""


def test_chunked_page_body_gets_411_text(client):
    response = client.post(
        "/accounts/login/", {"username": "a"}, HTTP_TRANSFER_ENCODING="chunked"
    )

    assert response.status_code == 411
    assert response["Content-Type"].startswith("text/plain")


def test_chunked_body_error_in_chinese(api):
    response = _chunked_customer_post(api, HTTP_ACCEPT_LANGUAGE="zh-hans")
    translation.activate("en")

    assert "分块" in response.json()["message"]
