"""`?format=` and the schema's and docs' query parameters get clear 400s."""

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import subscriber_create

pytestmark = pytest.mark.django_db


def test_format_with_nul_is_rejected(api):
    response = api.get("/api/messages/", {"format": "\x00"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_query_parameter"
    assert response.json()["extra"]["parameter"] == "format"
    assert "'\\x00'" in response.json()["message"]


def test_known_format_is_served(api):
    response = api.get("/api/customers/", {"format": "json"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_unknown_format_before_authentication():
    response = APIClient().get("/api/customers/", {"format": "xml"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_query_parameter"


def test_unmatched_accept_gets_406(api):
    response = api.get("/api/customers/", HTTP_ACCEPT="application/xml")

    assert response.status_code == 406


def test_schema_serves_yaml_by_format(client):
    response = client.get("/api/schema/", {"format": "yaml"})

    assert response.status_code == 200
    assert response.content.startswith(b"openapi:")


def test_schema_takes_lang(client):
    response = client.get("/api/schema/", {"lang": "zh-hans", "format": "json"})

    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_schema_unknown_parameter_in_json(client):
    response = client.get("/api/schema/", {"formt": "json"})

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_query_parameter"
    assert response.json()["extra"]["parameters"] == ["formt"]


def test_schema_rejects_unknown_format(client):
    response = client.get("/api/schema/", {"format": "xml"})

    assert response.status_code == 400
    assert response.json()["extra"]["accepted"] == ["yaml", "json"]


def test_schema_rejects_unknown_language(client):
    response = client.get("/api/schema/", {"lang": "xx"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_query_parameter"
    assert response.json()["extra"] == {
        "parameter": "lang",
        "accepted": ["en", "zh-hans"],
    }


def test_schema_has_no_version_parameter(client):
    response = client.get("/api/schema/", {"version": "9"})

    assert response.status_code == 400
    assert response.json()["extra"]["parameters"] == ["version"]


def test_empty_format_is_rejected(api):
    response = api.get("/api/messages/", {"format": ""})

    assert response.status_code == 400
    assert response.json()["code"] == "empty_query_parameter"
    assert response.json()["extra"] == {"parameter": "format"}


def test_docs_options_lists_methods_in_json(client):
    response = client.options("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "GET" in response["Allow"]


def test_docs_bare_script_parameter(client):
    response = client.get("/api/docs/?script")

    assert response.status_code == 200
    assert b"SwaggerUIBundle" in response.content


def test_docs_unknown_parameter_in_json(client):
    response = client.get("/api/docs/", {"theme": "dark"})

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_query_parameter"
    assert response.json()["extra"]["parameters"] == ["theme"]


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_check_user_id(client, path):
    caller = subscriber_create("reader@example.com")
    client.force_login(caller)

    response = client.get(path, {"user_id": caller.pk + 1})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_user_id"
