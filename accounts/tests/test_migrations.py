"""Data steps of the accounts migrations, run on the real schema history."""

from __future__ import annotations

import pytest

from tests.migrations import migrate_to, migrate_to_latest

BEFORE_LOWER_CASE = [("accounts", "0001_initial")]
WITH_LOWER_CASE = [("accounts", "0002_email_lower_case")]


@pytest.fixture
def users_before_lower_case(transactional_db):
    """Yield the User manager of the schema before emails were lowered.

    Afterwards the users are deleted, so that a clash cannot stop the
    migrations that bring the schema back to the latest.
    """
    users = migrate_to(BEFORE_LOWER_CASE).get_model("accounts", "User").objects
    try:
        yield users
    finally:
        users.all().delete()
        migrate_to_latest()


def test_emails_with_capitals_are_lowered(users_before_lower_case):
    mixed = users_before_lower_case.create(
        email="Ana.Souza@Example.COM", password="unusable"
    )
    lower = users_before_lower_case.create(email="bia@example.com", password="unusable")

    apps = migrate_to(WITH_LOWER_CASE)
    users = apps.get_model("accounts", "User").objects

    assert users.get(pk=mixed.pk).email == "ana.souza@example.com"
    assert users.get(pk=lower.pk).email == "bia@example.com"


def test_case_clash_stops_migration(users_before_lower_case):
    users = users_before_lower_case
    first = users.create(email="ana@example.com", password="unusable")
    second = users.create(email="Ana@Example.com", password="unusable")

    with pytest.raises(RuntimeError) as raised:
        migrate_to(WITH_LOWER_CASE)

    message = str(raised.value)
    assert f"user {first.pk} (ana@example.com)" in message
    assert f"user {second.pk} (Ana@Example.com)" in message
    assert "run migrate again" in message
    assert users.get(pk=second.pk).email == "Ana@Example.com"


BEFORE_LOG_MASK = [
    ("accounts", "0002_email_lower_case"),
    ("admin", "0003_logentry_add_action_flag_choices"),
    ("authtoken", "0004_alter_tokenproxy_options"),
]
WITH_LOG_MASK = [("accounts", "0003_admin_log_token_keys_masked")]
KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.django_db(transaction=True)
def test_token_log_entries_are_masked():
    apps = migrate_to(BEFORE_LOG_MASK)
    content_types = apps.get_model("contenttypes", "ContentType").objects
    token_type, _created = content_types.get_or_create(
        app_label="authtoken", model="tokenproxy"
    )
    user_type, _created = content_types.get_or_create(
        app_label="accounts", model="user"
    )
    user = apps.get_model("accounts", "User").objects.create(
        email="operator@example.com", password="unusable"
    )
    entries = apps.get_model("admin", "LogEntry").objects
    token_entry = entries.create(
        user=user,
        content_type=token_type,
        object_id=KEY,
        object_repr=KEY,
        action_flag=3,
    )
    user_entry = entries.create(
        user=user,
        content_type=user_type,
        object_id=str(user.pk),
        object_repr="operator@example.com",
        action_flag=2,
    )

    try:
        apps = migrate_to(WITH_LOG_MASK)
        entries = apps.get_model("admin", "LogEntry").objects

        token_entry = entries.get(pk=token_entry.pk)
        assert (token_entry.object_id, token_entry.object_repr) == (
            "012345…",
            "012345…",
        )
        assert entries.get(pk=user_entry.pk).object_repr == "operator@example.com"
    finally:
        entries.all().delete()
        apps.get_model("accounts", "User").objects.all().delete()
        migrate_to_latest()
