"""A user_id naming anyone but the caller is a 400 on every API endpoint."""

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import subscriber_create

pytestmark = pytest.mark.django_db

GET_PATHS = [
    "/api/settings/whatsapp/session",
    "/api/customers/",
    "/api/messages/",
]
POST_PATHS = [
    "/api/settings/whatsapp/session",
    "/api/settings/whatsapp/session/logout",
    "/api/customers/",
    "/api/messages/send",
    "/api/auth/token/rotate",
]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def caller():
    return subscriber_create("caller@example.com")


@pytest.fixture
def other():
    return subscriber_create("other@example.com")


@pytest.fixture
def api(caller):
    client = APIClient()
    client.force_authenticate(caller)
    return client


def assert_invalid_user_id(response, value):
    body = response.json()
    assert response.status_code == 400, body
    assert body["code"] == "invalid_user_id"
    assert f"user_id {value} is not the authenticated user" in body["message"]
    assert "user_id" in body["extra"]["fields"]


@pytest.mark.parametrize("path", GET_PATHS)
def test_query_user_id_of_another_user_is_400(api, other, path):
    response = api.get(path, {"user_id": other.pk})

    assert_invalid_user_id(response, other.pk)


@pytest.mark.parametrize("path", POST_PATHS)
def test_post_query_user_id_of_another_user_is_400(api, other, path):
    response = api.post(f"{path}?user_id={other.pk}", {}, format="json")

    assert_invalid_user_id(response, other.pk)


@pytest.mark.parametrize("path", POST_PATHS)
def test_body_user_id_of_another_user_is_400(api, other, path):
    response = api.post(path, {"user_id": other.pk}, format="json")

    assert_invalid_user_id(response, other.pk)


@pytest.mark.parametrize("path", POST_PATHS)
def test_form_body_user_id_of_another_user_is_400(api, other, path):
    response = api.post(path, {"user_id": str(other.pk)})

    assert_invalid_user_id(response, other.pk)


@pytest.mark.parametrize("path", GET_PATHS)
def test_query_user_id_of_the_caller_is_accepted(api, caller, path):
    response = api.get(path, {"user_id": caller.pk})

    assert response.status_code in (200, 404)
    assert response.json().get("code") != "invalid_user_id"


def test_body_user_id_of_the_caller_is_accepted(api, caller):
    response = api.post("/api/auth/token/rotate", {"user_id": caller.pk}, format="json")

    assert response.status_code == 201


def test_repeated_query_user_id_with_another_user_is_400(api, caller, other):
    response = api.get(f"/api/customers/?user_id={caller.pk}&user_id={other.pk}")

    assert_invalid_user_id(response, other.pk)


@pytest.mark.parametrize("value", ["me", "1.0", "", True, [1], {"id": 1}])
def test_non_integer_user_id_is_400(api, value):
    response = api.post("/api/customers/", {"user_id": value}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_user_id"
    assert "must be an integer" in response.json()["message"]


def test_user_id_is_checked_only_after_authentication(other):
    response = APIClient().get("/api/customers/", {"user_id": other.pk})

    assert response.status_code == 401


def test_unsupported_method_with_user_id_is_405(api, other):
    response = api.delete("/api/customers/", {"user_id": other.pk}, format="json")

    assert response.status_code == 405
