"""Schemathesis against the project's own OpenAPI schema at /api/schema/.

Each operation in the schema gets generated requests, sent in-process to
the WSGI application with a connected subscriber's API token. Requests the
schema allows must get a response below 500 with a status code, content
type and body the schema documents for them. Requests the schema forbids
(wrong types, missing fields, malformed path ids) must never get a 5xx.
The number of examples per operation is small so the whole module runs in
about a minute.

The signed gateway callback is a plain Django view, so it is not in the
schema; its fuzzing lives in the signature properties. Requests run inside
the test's transaction, so writes (a rotated token, a deleted customer, a
logged-out session) last only until the operation's test ends, and no task
is queued because the transaction never commits.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.tests.factories import subscriber_create
from messaging.models import Customer, Message
from messaging.phones import match_key
from sessions_wa.models import WhatsAppSession
from whatsapp_saas.wsgi import application

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 25

valid_requests = schemathesis.openapi.from_wsgi("/api/schema/", application)
valid_requests.config.generation.update(modes=[GenerationMode.POSITIVE])
invalid_requests = schemathesis.openapi.from_wsgi("/api/schema/", application)
invalid_requests.config.generation.update(modes=[GenerationMode.NEGATIVE])
# Operations with no parameters and no body have no invalid requests.
invalid_requests = invalid_requests.exclude(
    name=["GET /api/settings/whatsapp/session", "POST /api/auth/token/rotate"]
)

CONFORMANCE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
fuzz_settings = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture
def keep_test_connection():
    """Keep the test's database connection open across WSGI requests.

    Django closes connections when a request starts and finishes. The test
    transaction lives on that connection, so the signal handlers are
    detached, as Django's own test client does.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_subscriber(db, keep_test_connection):
    """A subscriber on a trial with WhatsApp connected and one conversation."""
    user = subscriber_create("schema-fuzz@example.com")
    WhatsAppSession.objects.create(
        user=user,
        session_key=WhatsAppSession.key_for_user_id(user.pk),
        state=WhatsAppSession.State.CONNECTED,
        connected=True,
        jid="5511900000009@s.whatsapp.net",
        phone="+5511900000009",
    )
    customer = Customer.objects.create(
        owner=user,
        name="Customer A",
        phone="+5511900000001",
        match_key=match_key("+5511900000001"),
        wa_jid="5511900000001@s.whatsapp.net",
    )
    Message.objects.create(
        owner=user,
        customer=customer,
        direction=Message.Direction.INBOUND,
        source=Message.Source.CONTACT,
        body="Oi",
        status=Message.Status.RECEIVED,
        gateway_message_id="3EB0FUZZ0001",
        chat_jid=customer.wa_jid,
        timestamp=customer.created_at,
    )
    Token.objects.get_or_create(user=user)
    return user


def _token_header(user) -> dict[str, str]:
    # Read the token for every call: the rotate operation replaces it.
    key = Token.objects.filter(user=user).values_list("key", flat=True).first()
    if key is None:
        key = Token.objects.create(user=user).key
    return {"Authorization": f"Token {key}"}


@valid_requests.parametrize()
@fuzz_settings
def test_valid_request_gets_documented_answer(case, api_subscriber):
    case.call_and_validate(
        headers=_token_header(api_subscriber), checks=CONFORMANCE_CHECKS
    )


@invalid_requests.parametrize()
@fuzz_settings
def test_invalid_request_gets_no_server_error(case, api_subscriber):
    case.call_and_validate(
        headers=_token_header(api_subscriber), checks=[not_a_server_error]
    )
