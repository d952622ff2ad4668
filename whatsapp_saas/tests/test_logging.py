"""Records that the logging settings print, checked in a new interpreter."""

from __future__ import annotations

import os

from tests.harness import python_run

LOG_ONE_RECORD_SCRIPT = """
import logging
import django
django.setup()
logging.getLogger("django.request").warning("Not Found: /api/nothing-here")
"""


def _stderr_of_one_record(script: str = LOG_ONE_RECORD_SCRIPT, **variables) -> str:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "whatsapp_saas.settings",
        "SECRET_KEY": "logging-test-secret-key-of-no-use-elsewhere",
        **variables,
    }
    return python_run(script, env=environment).stderr


def test_record_printed_once_with_debug():
    stderr = _stderr_of_one_record(DEBUG="True", LOG_LEVEL="INFO")

    assert stderr.count("Not Found: /api/nothing-here") == 1


def test_record_follows_log_level():
    stderr = _stderr_of_one_record(DEBUG="True", LOG_LEVEL="ERROR")

    assert "Not Found" not in stderr


def test_debug_records_hidden_at_debug():
    script = LOG_ONE_RECORD_SCRIPT.replace(".warning(", ".debug(")

    stderr = _stderr_of_one_record(script, LOG_LEVEL="DEBUG")

    assert "Not Found" not in stderr
