"""Fixtures shared by the project-wide API tests."""

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import subscriber_create


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api(db):
    """An API client authenticated as a new subscriber."""
    client = APIClient()
    client.force_authenticate(subscriber_create("caller@example.com"))
    return client
