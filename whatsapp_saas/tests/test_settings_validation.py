"""Bad environment values stop the start with ImproperlyConfigured, nothing else."""

from __future__ import annotations

import json
import os

import pytest
from django.conf import settings

from tests.harness import python_run

# Reads the settings module in a fresh interpreter with the given environment
# and prints either the exception or a few resulting values.
READ_SETTINGS_SCRIPT = """
import json, runpy, sys
try:
    values = runpy.run_path(sys.argv[1])
except Exception as error:
    print(json.dumps({"error": type(error).__name__, "message": str(error)}))
else:
    names = [
        "DEBUG",
        "LOG_LEVEL",
        "WA_SEND_MAX_RETRIES",
        "WA_SEND_STUCK_MINUTES",
        "WA_GATEWAY_TIMEOUT",
        "EMAIL_BACKEND",
    ]
    print(json.dumps({"error": None, **{name: values[name] for name in names}}))
"""

# Variables a test may set; inherited copies are dropped so each case sees
# only its own value.
CHECKED_VARIABLES = (
    "DEBUG",
    "EMAIL_BACKEND",
    "SECRET_KEY",
    "WA_GATEWAY_SECRET",
    "DATABASE_URL",
    "REDIS_URL",
    "LOG_LEVEL",
    "WA_CALLBACK_MAX_BYTES",
    "WA_GATEWAY_TIMEOUT",
    "WA_SEND_RATE_PER_MINUTE",
    "WA_SEND_BURST",
    "WA_SEND_MAX_RETRIES",
    "WA_SEND_STUCK_MINUTES",
    "WA_SEND_DRAIN_SHARDS",
    "CELERY_TASK_SOFT_TIME_LIMIT",
    "CELERY_TASK_TIME_LIMIT",
    "CELERY_VISIBILITY_TIMEOUT",
    "WA_SESSION_MAX_IDLE_DAYS",
    "WA_RECONCILE_INTERVAL_SECONDS",
)


def settings_read(**variables) -> dict:
    environment = {
        key: value for key, value in os.environ.items() if key not in CHECKED_VARIABLES
    }
    environment.update(variables)
    completed = python_run(
        READ_SETTINGS_SCRIPT,
        str(settings.BASE_DIR / "whatsapp_saas" / "settings.py"),
        env=environment,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("WA_CALLBACK_MAX_BYTES", "0", "positive whole number"),
        ("WA_CALLBACK_MAX_BYTES", "1MB", "positive whole number"),
        ("WA_GATEWAY_TIMEOUT", "-1", "positive number"),
        ("WA_GATEWAY_TIMEOUT", "nan", "positive number"),
        ("WA_GATEWAY_TIMEOUT", "inf", "positive number"),
        ("WA_SEND_RATE_PER_MINUTE", "0", "positive number"),
        ("WA_SEND_BURST", "2.5", "positive whole number"),
        ("WA_SEND_MAX_RETRIES", "-1", "whole number of at least 0"),
        ("WA_SEND_STUCK_MINUTES", "five", "whole number of at least 0"),
        ("WA_SEND_DRAIN_SHARDS", "0", "positive whole number"),
        ("WA_SEND_DRAIN_SHARDS", "eight", "positive whole number"),
        ("CELERY_TASK_SOFT_TIME_LIMIT", "0", "positive whole number"),
        ("CELERY_TASK_TIME_LIMIT", "-30", "positive whole number"),
        ("CELERY_VISIBILITY_TIMEOUT", "x", "positive whole number"),
        ("WA_SESSION_MAX_IDLE_DAYS", "0", "positive whole number"),
        ("WA_RECONCILE_INTERVAL_SECONDS", "0", "positive number"),
    ],
)
def test_bad_number_is_named_in_error(name, value, expected):
    result = settings_read(**{name: value})

    assert result["error"] == "ImproperlyConfigured"
    assert name in result["message"]
    assert repr(value) in result["message"]
    assert expected in result["message"]


def test_zero_retries_is_accepted():
    result = settings_read(WA_SEND_MAX_RETRIES="0")

    assert result["error"] is None
    assert result["WA_SEND_MAX_RETRIES"] == 0


def test_zero_stuck_minutes_is_accepted():
    result = settings_read(WA_SEND_STUCK_MINUTES="0")

    assert result["error"] is None
    assert result["WA_SEND_STUCK_MINUTES"] == 0


def test_fractional_gateway_timeout_is_accepted():
    assert settings_read(WA_GATEWAY_TIMEOUT="2.5")["WA_GATEWAY_TIMEOUT"] == 2.5


@pytest.mark.parametrize("value", ["maybe", "2", "tru"])
def test_unrecognised_debug_word_is_rejected(value):
    result = settings_read(DEBUG=value)

    assert result["error"] == "ImproperlyConfigured"
    assert f"DEBUG={value!r}" in result["message"]
    assert "true or false" in result["message"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("OFF", False), ("no", False), ("0", False), ("Yes", True), ("on", True)],
)
def test_debug_boolean_words_are_read_in_any_case(value, expected):
    result = settings_read(
        DEBUG=value, SECRET_KEY="a-real-secret", WA_GATEWAY_SECRET="shared"
    )

    assert result["error"] is None
    assert result["DEBUG"] is expected


@pytest.mark.parametrize("value", ["garbage", "://", "ftp://host/name"])
def test_database_url_unknown_scheme_rejected(value):
    result = settings_read(DATABASE_URL=value)

    assert result["error"] == "ImproperlyConfigured"
    assert "DATABASE_URL" in result["message"]
    assert "postgres://" in result["message"]


def test_database_url_with_bad_port_is_rejected():
    result = settings_read(DATABASE_URL="postgres://user@host:port/name")

    assert result["error"] == "ImproperlyConfigured"
    assert "DATABASE_URL" in result["message"]


def test_database_url_error_does_not_show_the_password():
    result = settings_read(DATABASE_URL="mystery://user:s3cret-pass@host/name")

    assert "s3cret-pass" not in result["message"]
    assert "'mystery'" in result["message"]


def test_unknown_log_level_is_rejected():
    result = settings_read(LOG_LEVEL="loud")

    assert result["error"] == "ImproperlyConfigured"
    assert "LOG_LEVEL='loud'" in result["message"]
    assert "WARNING" in result["message"]


def test_log_level_is_normalised_to_upper_case():
    assert settings_read(LOG_LEVEL=" warning ")["LOG_LEVEL"] == "WARNING"


@pytest.mark.parametrize("value", ["http://127.0.0.1:6379/0", "127.0.0.1:6379"])
def test_redis_url_without_redis_scheme_is_rejected(value):
    result = settings_read(REDIS_URL=value)

    assert result["error"] == "ImproperlyConfigured"
    assert "REDIS_URL" in result["message"]
    assert "redis://" in result["message"]


def test_redis_url_error_does_not_show_the_password():
    result = settings_read(REDIS_URL="http://:s3cret-pass@127.0.0.1:6379/0")

    assert "s3cret-pass" not in result["message"]


@pytest.mark.parametrize(
    "value", ["redis://127.0.0.1:6379/3", "rediss://h:6380/0", "unix:///tmp/r.sock"]
)
def test_redis_url_schemes_are_accepted(value):
    assert settings_read(REDIS_URL=value)["error"] is None


def test_debug_on_prints_mail():
    result = settings_read(DEBUG="True")

    assert result["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


def test_debug_off_drops_mail():
    result = settings_read(
        DEBUG="False", SECRET_KEY="test-key", WA_GATEWAY_SECRET="test-secret"
    )

    assert result["error"] is None
    assert result["EMAIL_BACKEND"] == "accounts.mail.UnsentEmailBackend"


def test_debug_off_keeps_set_backend():
    result = settings_read(
        DEBUG="False",
        SECRET_KEY="test-key",
        WA_GATEWAY_SECRET="test-secret",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
    )

    assert result["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
