"""Personas and helpers for the messaging tests.

Alice (`alice`) is a subscriber in Brazil whose WhatsApp is connected as
+5511900000009; Charlie (`charlie`) is another subscriber, the outsider
whose requests for Alice's objects must read as not found.
"""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.tests.factories import PASSWORD, subscriber_create
from messaging.ratelimit import send_bucket_reset
from whatsapp_saas.celery import app as celery_app

from .helpers import fake_gateway_start, session_connect


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def generous_send_pacing(settings):
    """Pacing never delays a test unless the test sets its own limits."""
    settings.WA_SEND_RATE_PER_MINUTE = 600_000
    settings.WA_SEND_BURST = 10_000


@pytest.fixture
def alice(db):
    user = subscriber_create("alice@example.com", default_country="BR")
    session_connect(user)
    send_bucket_reset(user.pk)
    return user


@pytest.fixture
def charlie(db):
    user = subscriber_create("charlie@example.com", default_country="AR")
    session_connect(user, phone="+5491100000099")
    send_bucket_reset(user.pk)
    return user


@pytest.fixture
def alice_client(alice):
    client = Client()
    assert client.login(email=alice.email, password=PASSWORD)
    return client


@pytest.fixture
def charlie_client(charlie):
    client = Client()
    assert client.login(email=charlie.email, password=PASSWORD)
    return client


@pytest.fixture
def api(alice):
    """An API client authenticated as alice."""
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def celery_eager():
    """Run tasks queued with apply_async in-process, also when REDIS_URL is set."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def fake_gateway(settings):
    """A fake gateway on a free port of 127.0.0.1 that the client calls."""
    gateway, server = fake_gateway_start()
    settings.WA_GATEWAY_URL = f"http://127.0.0.1:{server.server_port}"
    settings.WA_GATEWAY_URLS = []
    yield gateway
    server.shutdown()
    server.server_close()
