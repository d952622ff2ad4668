"""The runtime requirements alone are enough for every production process.

`make test` installs requirements-dev.txt, and the test tools bring
packages of their own. A package that production needs but that only they
install would go unnoticed until a deployment, as `packaging` did for
kombu's Redis transport. This test installs requirements.txt into a new
virtual environment and loads what the Procfile's processes load.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# What gunicorn, the Celery worker and beat, and manage.py import first.
STARTUP_CHECK = """
import django
django.setup()
import celery.bin.celery
import gunicorn.app.wsgiapp
import kombu.transport.redis
import whatsapp_saas.celery
import whatsapp_saas.wsgi
from django.core.management import call_command
call_command("check")
"""


def test_runtime_requirements_start_every_process(tmp_path):
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-r", "requirements.txt"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "VIRTUAL_ENV"))
    }
    env["DJANGO_SETTINGS_MODULE"] = "whatsapp_saas.settings"
    started = subprocess.run(
        [python, "-c", STARTUP_CHECK],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert started.returncode == 0, started.stderr[-2000:]
