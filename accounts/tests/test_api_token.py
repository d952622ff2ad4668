from datetime import UTC, datetime
from functools import partial

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.services import api_token_rotate
from whatsapp_saas.exceptions import ApplicationError
from whatsapp_saas.testing import run_together

pytestmark = pytest.mark.django_db

ROTATE_API_URL = reverse("accounts_api:token_rotate")
ROTATE_PAGE_URL = reverse("accounts:api_token_rotate")


def test_settings_page_creates_token_and_shows_it_once(client, owner):
    client.force_login(owner)

    response = client.post(ROTATE_PAGE_URL)

    token = Token.objects.get(user=owner)
    assert token.key in response.content.decode()
    assert token.key not in client.get(reverse("sessions_wa:settings")).content.decode()


def test_settings_page_token_date_ends_without_double_period(client, owner):
    token = Token.objects.create(user=owner)
    Token.objects.filter(pk=token.pk).update(
        created=datetime(2026, 12, 4, 16, 31, tzinfo=UTC)
    )
    client.force_login(owner)

    page = client.get(reverse("sessions_wa:settings"), HTTP_ACCEPT_LANGUAGE="en")

    text = page.content.decode()
    assert "created on" in text
    assert "p.m.." not in text


def test_settings_page_token_response_is_not_cached(client, owner):
    client.force_login(owner)

    response = client.post(ROTATE_PAGE_URL)

    assert "no-store" in response["Cache-Control"]


def test_settings_page_rotation_replaces_old_token(client, owner):
    old = Token.objects.create(user=owner)
    client.force_login(owner)

    client.post(ROTATE_PAGE_URL)

    assert not Token.objects.filter(key=old.key).exists()
    assert Token.objects.filter(user=owner).count() == 1


def test_token_page_rejects_get(client, owner):
    client.force_login(owner)

    assert client.get(ROTATE_PAGE_URL).status_code == 405


def test_api_rotation_returns_new_working_token(owner):
    old = Token.objects.create(user=owner)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {old.key}")

    response = api.post(ROTATE_API_URL)

    assert response.status_code == 201
    new_key = response.json()["token"]
    assert new_key != old.key
    api.credentials(HTTP_AUTHORIZATION=f"Token {new_key}")
    assert api.post(ROTATE_API_URL).status_code == 201


def test_api_rotation_revokes_old_token(owner):
    old = Token.objects.create(user=owner)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {old.key}")
    api.post(ROTATE_API_URL)

    response = api.post(ROTATE_API_URL)

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def _token_client(owner) -> tuple[APIClient, Token]:
    token = Token.objects.create(user=owner)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api, token


def test_api_rotation_rejects_unknown_field(owner):
    api, old = _token_client(owner)

    response = api.post(ROTATE_API_URL, {"x": 1}, format="json")

    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["x"][0].startswith("Unknown field")
    assert Token.objects.get(user=owner).key == old.key


def test_api_rotation_rejects_unknown_query_parameter(owner):
    api, old = _token_client(owner)

    response = api.post(f"{ROTATE_API_URL}?foo=1")

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_query_parameter"
    assert Token.objects.get(user=owner).key == old.key


def test_api_rotation_takes_own_user_id(owner):
    api, _old = _token_client(owner)

    response = api.post(ROTATE_API_URL, {"user_id": owner.pk}, format="json")

    assert response.status_code == 201


def test_api_rotation_takes_null_user_id(owner):
    api, _old = _token_client(owner)

    response = api.post(ROTATE_API_URL, {"user_id": None}, format="json")

    assert response.status_code == 201


def test_api_rotation_requires_authentication():
    response = APIClient().post(ROTATE_API_URL)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_bearer_scheme_gets_401_naming_token_scheme(owner):
    token = Token.objects.create(user=owner)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")

    response = api.post(ROTATE_API_URL)

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert "Authorization: Token <token>" in response.json()["message"]


@pytest.mark.parametrize(
    ("header", "words"),
    [("Token", "no token after 'Token'"), ("Token abc def", "contains a space")],
)
def test_malformed_token_header_names_fix(header, words):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header)

    response = api.post(ROTATE_API_URL)

    assert response.status_code == 401
    assert words in response.json()["message"]
    assert "Authorization: Token <token>" in response.json()["message"]


def test_malformed_token_header_message_translated():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token")

    response = api.post(ROTATE_API_URL, HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert "没有令牌" in response.json()["message"]


def test_api_rotation_leaves_other_users_token(owner, outsider):
    outsider_token = Token.objects.create(user=outsider)
    api = APIClient()
    api.force_authenticate(owner)

    api.post(ROTATE_API_URL)

    assert Token.objects.filter(key=outsider_token.key).exists()


@pytest.mark.parametrize("key", ["abc\x00def", "a" * 41])
def test_impossible_token_gets_401(owner, key):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    response = api.post(ROTATE_API_URL)

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_token_with_non_ascii_bytes_names_fix():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token abc\xe9def")

    response = api.post(ROTATE_API_URL)

    assert response.status_code == 401
    assert "characters that no token has" in response.json()["message"]


def test_basic_scheme_is_named_in_401():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")

    response = api.post(ROTATE_API_URL)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "uses the Basic scheme" in response.json()["message"]


def test_token_of_deactivated_account_names_it(owner):
    token = Token.objects.create(user=owner)
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    response = api.post(ROTATE_API_URL)

    assert response.status_code == 401
    assert "account of this API token is deactivated" in response.json()["message"]


def test_unmatched_accept_header_names_json(owner):
    api = APIClient()
    api.force_authenticate(owner)

    response = api.get("/api/customers/", HTTP_ACCEPT="application/xml")

    assert response.status_code == 406
    assert response.json()["message"] == (
        "The Accept header 'application/xml' names no format this endpoint "
        "returns; accept application/json, or leave the header out."
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_rotations_leave_one_token(owner):
    results = run_together([partial(api_token_rotate, user=owner)] * 6)

    assert all(isinstance(token, Token) for token in results), results
    keys = [token.key for token in results]
    assert list(Token.objects.filter(user=owner).values_list("key", flat=True)) in [
        [key] for key in keys
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_api_rotations_with_one_token_rotate_once(owner):
    old_key = Token.objects.create(user=owner).key

    def rotate():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {old_key}")
        return client.post(ROTATE_API_URL)

    responses = run_together([rotate] * 6)

    rotated = [r for r in responses if r.status_code == 201]
    assert len(rotated) == 1
    # A request that authenticates after the rotation commits gets 401; one
    # that authenticated before it waits for the lock and gets 409.
    assert all(r.status_code in (401, 409) for r in responses if r not in rotated)
    assert Token.objects.get(user=owner).key == rotated[0].json()["token"]


def test_rotation_with_replaced_token_changes_nothing(owner):
    old = Token.objects.create(user=owner)
    current = api_token_rotate(user=owner)

    with pytest.raises(ApplicationError) as raised:
        api_token_rotate(user=owner, replacing=old.key)

    assert raised.value.code == "token_already_rotated"
    assert Token.objects.get(user=owner).key == current.key
