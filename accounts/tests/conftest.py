import pytest

from accounts.tests.factories import subscriber_create


@pytest.fixture
def owner(db):
    return subscriber_create("owner@example.com")


@pytest.fixture
def outsider(db):
    return subscriber_create("outsider@example.com")


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
