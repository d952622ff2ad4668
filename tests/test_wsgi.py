"""The WSGI module imports at start what requests would import later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Modules that Django, the send service and Celery import on a worker's
# first request, first send and first queued task.
LATER_MODULES = (
    "messaging.apis",
    "messaging.services.send_queue",
    "messaging.tasks",
    "redis",
    "kombu.transport.redis",
)

WSGI_IMPORT = """
import sys
import whatsapp_saas.wsgi
print(" ".join(name for name in sys.argv[1:] if name not in sys.modules))
"""


def test_wsgi_import_loads_send_modules():
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # Nothing listens on port 1, so any connection would fail the import.
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:1/unused"
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    env["DJANGO_SETTINGS_MODULE"] = "whatsapp_saas.settings"

    result = subprocess.run(
        [sys.executable, "-c", WSGI_IMPORT, *LATER_MODULES],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""
