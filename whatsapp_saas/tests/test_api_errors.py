"""API paths answer errors as JSON in the API's error shape, pages as HTML."""

import json

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import Client
from django.utils import translation

from accounts.tests.factories import subscriber_create
from messaging.services import customer_create
from whatsapp_saas.exceptions import api_exception_handler

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.parametrize("path", ["/api/no-such-endpoint/", "/api/v9/messages/1/"])
def test_unknown_api_path_is_json_404(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["extra"] == {}
    assert path in body["message"]


def test_unknown_api_path_is_json_under_debug(client, settings):
    settings.DEBUG = True

    response = client.get("/api/no-such-endpoint/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"


def test_missing_slash_names_the_endpoint(client):
    response = client.post("/api/customers", {}, content_type="application/json")

    assert response.status_code == 404
    assert response.json()["message"] == (
        "There is no API endpoint at /api/customers; use /api/customers/ instead."
    )


def test_extra_slash_names_the_endpoint(client):
    response = client.get("/api/messages/send/")

    assert response.json()["message"] == (
        "There is no API endpoint at /api/messages/send/; use /api/messages/send "
        "instead."
    )


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_unknown_api_path_skips_the_csrf_check(method):
    client = Client(enforce_csrf_checks=True)

    response = getattr(client, method)("/api/nope", {}, content_type="application/json")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_unknown_api_path_message_is_translated(client):
    response = client.get("/api/nope", HTTP_ACCEPT_LANGUAGE="zh-hans")
    translation.activate("en")

    assert response.json()["message"].startswith("不存在 API 接口 /api/nope")


def test_unknown_page_outside_api_stays_html(client):
    response = client.get("/apiary/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"Page not found" in response.content


def test_api_body_over_upload_limit_is_json_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client.force_login(subscriber_create("big@example.com"))
    body = json.dumps({"phone": "+5511900000001", "text": "x" * 2000})

    response = client.post("/api/messages/send", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["extra"] == {"max_bytes": 1000}
    assert "1000 bytes" in response.json()["message"]


def test_api_body_under_upload_limit_reaches_the_view(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = client.post(
        "/api/messages/send", {"text": "x"}, content_type="application/json"
    )

    assert response.status_code == 401


def test_page_body_over_upload_limit_is_not_answered_as_api(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = client.post(
        "/accounts/login/", "x" * 2000, content_type="application/octet-stream"
    )

    assert response.status_code != 413


def test_body_found_too_large_while_read_is_json_413(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = api_exception_handler(RequestDataTooBig("too big"), {})

    assert response.status_code == 413
    assert response.data["code"] == "payload_too_large"


def test_wrong_method_names_the_allowed_ones(client):
    user = subscriber_create("methods@example.com")
    client.force_login(user)

    response = client.get("/api/messages/send")

    body = response.json()
    assert response.status_code == 405
    assert body["message"] == "GET is not allowed here; use POST."
    assert body["extra"] == {"allowed": ["POST"]}


def test_unknown_format_names_the_available_ones(client):
    user = subscriber_create("formats@example.com")
    client.force_login(user)

    response = client.get("/api/customers/", {"format": "xml"})

    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "invalid_query_parameter"
    assert body["message"] == (
        "The format 'xml' is not available; use json or api, or leave format out."
    )
    assert body["extra"] == {"parameter": "format", "accepted": ["json", "api"]}


def _customer_detail_url(user) -> str:
    customer = customer_create(owner=user, phone="+5511900000001")
    return f"/api/customers/{customer.code}/"


def test_wrong_method_lists_several_allowed(client):
    user = subscriber_create("several@example.com")
    client.force_login(user)

    url = _customer_detail_url(user)

    response = client.post(url, {}, content_type="application/json")

    assert response.status_code == 405
    assert response.json()["message"] == (
        "POST is not allowed here; use GET, PUT, PATCH, DELETE or HEAD."
    )


def test_allowed_methods_joined_in_chinese(client):
    user = subscriber_create("chinese@example.com")
    client.force_login(user)

    response = client.post(
        _customer_detail_url(user),
        {},
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )
    translation.activate("en")

    message = response.json()["message"]
    assert "GET，PUT，PATCH，DELETE 或 HEAD" in message
    assert " or " not in message
