"""Fixtures for end-to-end tests over real processes on 127.0.0.1.

The live server is pytest-django's `live_server`, a thread of the pytest
process. The gateway and the Celery worker are child processes on free ports
that share one random signing secret with it. The gateway and the worker
are started once per test session and stopped at its end; a test that needs
a fresh one calls `.restart()`.

Fixtures:

- `live_server` (session): pytest-django's, with database connections
  closed after each request.
- `e2e_secret` (session): the signing secret shared by all three.
- `gateway_process` (session): a started `tests.harness.GatewayProcess` with
  the `sim` engine, calling back to the live server. While it runs, the
  settings of the live server point at it (WA_GATEWAY_URL,
  WA_GATEWAY_SECRETS).
- `celery_worker_process` (session): a started
  `tests.harness.CeleryWorkerProcess` on the test database and REDIS_URL,
  calling the gateway above.
- `e2e_subscriber` (function): a subscriber on a trial with a known
  password, as `Subscriber(user, email, password)`.
- `subscriber_web` (function): a `tests.harness.WebSession` logged in as
  `e2e_subscriber` through the login page.

When a test that uses the gateway or the worker fails, the tail of each one's
log is added to the report.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import uuid
from typing import NamedTuple
from urllib.parse import quote

import pytest
from django.db import connections
from django.test.utils import override_settings

from accounts.models import User
from accounts.services import user_signup

from .harness import (
    CALLBACK_PATH,
    GATEWAY_SERVER,
    CeleryWorkerProcess,
    GatewayProcess,
    WebSession,
    free_port,
)

# pytest-django's live server listens on localhost unless configured
# otherwise, and every process of these tests stays on 127.0.0.1.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

# Acks of sent messages arrive after these delays in ms (sent, delivered,
# read); short so tests that follow a message to "read" stay fast.
SIM_ACK_DELAYS_MS = "20,40,60"

LOGGED_FIXTURES = ("gateway_process", "celery_worker_process")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class Subscriber(NamedTuple):
    user: User
    email: str
    password: str


def _skip_unless_ci(reason: str) -> None:
    # Under CI a missing service is a failure, as for the service markers.
    if IN_CI:
        pytest.fail(f"CI=true but this test {reason}", pytrace=False)
    pytest.skip(reason)


def _without_service_settings(env: dict[str, str]) -> dict[str, str]:
    # The children get every setting explicitly; values from the developer's
    # shell (another gateway, several gateway URLs) must not leak in.
    env = dict(env)
    for name in ("WA_GATEWAY_URLS", "WA_GATEWAY_URL", "PORT", "HOST", "WA_ENGINE"):
        env.pop(name, None)
    return env


def _test_database_url() -> str:
    """Return a DATABASE_URL naming the test database pytest-django created."""
    database = connections["default"].settings_dict
    user = quote(database.get("USER") or "")
    password = database.get("PASSWORD") or ""
    credentials = user + (f":{quote(password)}" if password else "")
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or "5432"
    at = f"{credentials}@" if credentials else ""
    return f"postgres://{at}{host}:{port}/{quote(database['NAME'])}"


@pytest.fixture(scope="session")
def live_server(live_server):
    """pytest-django's live server, closing database connections per request.

    The server handles each kept-alive HTTP connection in a thread that keeps
    its own database connection until the HTTP connection closes. With
    persistent connections (DATABASE_CONN_MAX_AGE) a browser or `requests`
    session left open would keep the test database busy, and pytest-django
    could not drop it at the end.
    """
    database = connections.settings["default"]
    previous = database["CONN_MAX_AGE"]
    database["CONN_MAX_AGE"] = 0
    yield live_server
    database["CONN_MAX_AGE"] = previous


@pytest.fixture(scope="session")
def e2e_secret() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="session")
def gateway_process(live_server, e2e_secret, tmp_path_factory):
    """Start the gateway with the sim engine; stop it after the session."""
    if not shutil.which("node"):
        _skip_unless_ci("needs node on PATH to start the gateway")

    workdir = tmp_path_factory.mktemp("gateway")
    port = free_port()
    env = {
        **_without_service_settings(os.environ),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WA_ENGINE": "sim",
        "WA_DATA_DIR": str(workdir / "data"),
        "WA_CALLBACK_URL": f"{live_server.url}{CALLBACK_PATH}",
        "WA_GATEWAY_SECRET": e2e_secret,
        "WA_SIM_ACK_DELAYS_MS": SIM_ACK_DELAYS_MS,
        "LOG_LEVEL": "debug",
    }
    process = GatewayProcess(
        port=port,
        secret=e2e_secret,
        data_dir=workdir / "data",
        argv=["node", str(GATEWAY_SERVER)],
        env=env,
        log_path=workdir / "gateway.log",
    )
    process.start()

    overrides = override_settings(
        WA_GATEWAY_URL=process.url,
        WA_GATEWAY_URLS=[],
        WA_GATEWAY_SECRETS=[e2e_secret],
    )
    overrides.enable()
    try:
        yield process
    finally:
        overrides.disable()
        process.stop()


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup, gateway_process, e2e_secret, tmp_path_factory
):
    """Start a Celery worker on the test database; stop it after the session."""
    from django.conf import settings

    from whatsapp_saas.celery import app

    if not settings.REDIS_URL:
        _skip_unless_ci("needs REDIS_URL for the Celery broker")

    # Tasks queued by earlier tests that ran without a worker would run now
    # against rows those tests have already removed.
    app.control.purge()

    workdir = tmp_path_factory.mktemp("celery")
    hostname = f"e2e-{uuid.uuid4().hex[:8]}@127.0.0.1"
    env = {
        **_without_service_settings(os.environ),
        "DJANGO_SETTINGS_MODULE": "whatsapp_saas.settings",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "WA_GATEWAY_URL": gateway_process.url,
        "WA_GATEWAY_SECRET": e2e_secret,
        "PYTHONUNBUFFERED": "1",
    }
    argv = [sys.executable, "-m", "celery", "-A", "whatsapp_saas", "worker"]
    argv += [
        "--pool=solo",
        "--loglevel=INFO",
        f"--hostname={hostname}",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
    ]
    process = CeleryWorkerProcess(
        hostname=hostname, argv=argv, env=env, log_path=workdir / "worker.log"
    )
    process.start()
    try:
        yield process
    finally:
        # The worker must let go of its database connections before
        # pytest-django drops the test database.
        process.stop()


@pytest.fixture
def e2e_subscriber(transactional_db) -> Subscriber:
    email = f"subscriber-{uuid.uuid4().hex[:10]}@example.com"
    password = secrets.token_urlsafe(16)
    user = user_signup(email=email, password=password, default_country="BR")
    return Subscriber(user=user, email=user.email, password=password)


@pytest.fixture
def subscriber_web(live_server, e2e_subscriber):
    web = WebSession(live_server.url)
    web.login(e2e_subscriber.email, e2e_subscriber.password)
    yield web
    web.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        fixtures = getattr(item, "funcargs", {})
        for name in LOGGED_FIXTURES:
            process = fixtures.get(name)
            if process is not None:
                report.sections.append((f"{name} log (tail)", process.log_tail()))
    return report
