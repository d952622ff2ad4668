"""The API token is read with its user, plan and session in one statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from accounts.models import Subscription, User
from accounts.selectors import api_token_get_with_user
from sessions_wa.models import WhatsAppSession

pytestmark = pytest.mark.django_db


def _field_values(instance) -> dict:
    return {
        field.attname: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
    }


def test_token_rows_match_the_orm(owner):
    token = Token.objects.create(user=owner)
    WhatsAppSession.objects.create(user=owner, state="connected", session_key="k1")
    expected = Token.objects.select_related(
        "user", "user__subscription", "user__whatsapp_session"
    ).get(key=token.key)

    found = api_token_get_with_user(key=token.key)

    assert _field_values(found) == _field_values(expected)
    assert _field_values(found.user) == _field_values(expected.user)
    assert _field_values(found.user.subscription) == _field_values(
        expected.user.subscription
    )
    assert _field_values(found.user.whatsapp_session) == _field_values(
        expected.user.whatsapp_session
    )


def test_loaded_relations_cost_no_query(owner):
    token = Token.objects.create(user=owner)
    WhatsAppSession.objects.create(user=owner, state="connected", session_key="k2")
    found = api_token_get_with_user(key=token.key)

    with CaptureQueriesContext(connection) as queries:
        user = found.user
        assert user.subscription.user is user
        assert user.whatsapp_session.user is user

    assert queries.captured_queries == []


def test_missing_relations_raise_without_query(db):
    user = User.objects.create_user(email="bare@example.com", password="x" * 12)
    token = Token.objects.create(user=user)
    found = api_token_get_with_user(key=token.key)

    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(Subscription.DoesNotExist):
            _plan = found.user.subscription
        with pytest.raises(WhatsAppSession.DoesNotExist):
            _session = found.user.whatsapp_session

    assert queries.captured_queries == []


def test_unknown_key_gives_none(owner):
    Token.objects.create(user=owner)

    assert api_token_get_with_user(key="0" * 40) is None


def test_each_key_reads_own_user(owner, outsider):
    owner_token = Token.objects.create(user=owner)
    outsider_token = Token.objects.create(user=outsider)

    assert api_token_get_with_user(key=owner_token.key).user.pk == owner.pk
    assert api_token_get_with_user(key=outsider_token.key).user.pk == outsider.pk


@pytest.mark.parametrize("key", ["abc\x00def", "a" * 41])
def test_impossible_key_gives_none(owner, key):
    Token.objects.create(user=owner)

    with CaptureQueriesContext(connection) as queries:
        assert api_token_get_with_user(key=key) is None

    assert queries.captured_queries == []


@pytest.mark.postgres
def test_token_read_prepared_once(owner, outsider):
    keys = [Token.objects.create(user=user).key for user in (owner, outsider)]

    found = [api_token_get_with_user(key=key).user.pk for key in keys * 2]

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%%FROM "authtoken_token" "t"%%'],
        )
        prepared = cursor.fetchone()[0]
    assert found == [owner.pk, outsider.pk] * 2
    assert prepared == 1
