"""A whole deployment in child processes that tests can stop, kill and restart.

Each fault test gets its own stack, all on 127.0.0.1 and free ports:

- Django under gunicorn (not the live server thread, so it can be stopped),
- the Node gateway with the sim engine, calling back to that gunicorn,
- a Celery worker,
- a redis-server of its own in a temporary folder, as the broker and cache,

all on the test database that pytest-django created. The machine's shared
Redis is never stopped: tests that take Redis away stop the stack's own.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests
from celery import Celery
from django.db import connections
from rest_framework.authtoken.models import Token

from accounts.models import User
from accounts.services import user_signup
from messaging.models import Message
from sessions_wa.models import WhatsAppSession

from ..harness import (
    CALLBACK_PATH,
    GATEWAY_SERVER,
    CeleryWorkerProcess,
    GatewayProcess,
    ManagedProcess,
    WebSession,
    free_ports,
    poll_until,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Acks of sent messages after these delays in ms: sent, delivered, read.
SIM_ACK_DELAYS_MS = "20,40,60"
SCANNING_PHONE = "+5511900000009"
CUSTOMER_PHONE = "+5511900000001"

# Names of the environment variables each child gets explicitly.
SERVICE_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "WA_GATEWAY_URL",
    "WA_GATEWAY_URLS",
    "WA_GATEWAY_SECRET",
    "WA_ENGINE",
    "HOST",
    "PORT",
)

SENDS_METRIC_RE = re.compile(r"^wa_gateway_sends_total(?:\{[^}]*\})? (\S+)$", re.M)


def _skip_unless_ci(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but this test {reason}", pytrace=False)
    pytest.skip(reason)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    env["DJANGO_SETTINGS_MODULE"] = "whatsapp_saas.settings"
    return env


def _database_url() -> str:
    """Return a DATABASE_URL naming the test database pytest-django made."""
    database = connections["default"].settings_dict
    user = quote(database.get("USER") or "")
    password = quote(database.get("PASSWORD") or "")
    credentials = ""
    if user:
        credentials = f"{user}:{password}@" if password else f"{user}@"
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or "5432"
    return f"postgres://{credentials}{host}:{port}/{quote(database['NAME'])}"


class RedisServerProcess(ManagedProcess):
    """A redis-server that keeps nothing on disk; ready when PING succeeds."""

    name = "redis"

    def __init__(self, *, port: int, workdir: Path, **kwargs):
        argv = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ]
        super().__init__(argv=argv, env=dict(os.environ), cwd=workdir, **kwargs)
        self.url = f"redis://127.0.0.1:{port}/0"

    def is_ready(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
        except redis.RedisError:
            return False


class DjangoServerProcess(ManagedProcess):
    """Django under gunicorn; ready when the login page returns 200."""

    name = "django (gunicorn)"

    def __init__(self, *, port: int, **kwargs):
        super().__init__(**kwargs)
        self.url = f"http://127.0.0.1:{port}"

    def is_ready(self) -> bool:
        try:
            response = requests.get(f"{self.url}/accounts/login/", timeout=1)
        except requests.RequestException:
            return False
        return response.status_code == 200


@dataclass
class Subscriber:
    user: User
    email: str
    password: str
    token: str
    customer_code: str = ""


@dataclass
class FaultStack:
    """The processes of one test and helpers that act as a subscriber would."""

    redis: RedisServerProcess
    django: DjangoServerProcess
    gateway: GatewayProcess
    worker: CeleryWorkerProcess
    processes: list[ManagedProcess] = field(default_factory=list)

    def api(self, subscriber: Subscriber, method: str, path: str, **kwargs):
        headers = {"Authorization": f"Token {subscriber.token}"}
        kwargs.setdefault("timeout", 30)
        return requests.request(
            method, self.django.url + path, headers=headers, **kwargs
        )

    def send(self, subscriber: Subscriber, content: str) -> requests.Response:
        return self.api(
            subscriber,
            "POST",
            "/api/messages/send",
            json={"customer_id": subscriber.customer_code, "content": content},
        )

    def sends_total(self) -> float:
        """Return the gateway's count of messages handed to WhatsApp."""
        response = requests.get(f"{self.gateway.url}/metrics", timeout=5)
        response.raise_for_status()
        match = SENDS_METRIC_RE.search(response.text)
        return float(match.group(1)) if match else 0.0

    def subscriber_connected(self) -> Subscriber:
        """Sign up a subscriber, link WhatsApp through the pages, add a customer."""
        email = f"fault-{uuid.uuid4().hex[:10]}@example.com"
        password = secrets.token_urlsafe(16)
        user = user_signup(email=email, password=password, default_country="BR")
        token = Token.objects.create(user=user).key
        subscriber = Subscriber(user=user, email=email, password=password, token=token)

        web = WebSession(self.django.url)
        web.login(email, password)
        web.click("/settings/", "Get my QR code")
        poll_until(
            lambda: (
                WhatsAppSession.objects.filter(
                    user=user, state=WhatsAppSession.State.QR_PENDING
                )
                .exclude(qr="")
                .exists()
            ),
            timeout=30,
            message=f"a QR code for user {user.pk}",
        )
        web.click("/settings/", "Simulate scan", {"phone": SCANNING_PHONE})
        session_state_wait(user, WhatsAppSession.State.CONNECTED, timeout=30)

        response = self.api(
            subscriber,
            "POST",
            "/api/customers/",
            json={"name": "Customer A", "phone": CUSTOMER_PHONE},
        )
        assert response.status_code == 201, response.text
        subscriber.customer_code = response.json()["id"]
        return subscriber

    def requeue_stuck(self) -> None:
        """Queue the periodic task that requeues stuck sends, as beat would."""
        app = Celery(broker=self.redis.url)
        try:
            app.send_task("messaging.message_requeue_stuck")
        finally:
            app.close()

    def logs(self) -> str:
        return "\n\n".join(
            f"--- {process.name} log (tail) ---\n{process.log_tail(80)}"
            for process in self.processes
        )


def worker_settled(worker: CeleryWorkerProcess) -> bool:
    """Whether every task the worker received since its start has finished."""
    lines = worker.log_since_start().splitlines()
    received = sum(1 for line in lines if "] received" in line)
    finished = sum(
        1
        for line in lines
        if "] succeeded in" in line or "] retry:" in line or "] raised" in line
    )
    return received > 0 and received == finished


def session_state_wait(user: User, state: str, *, timeout: float) -> WhatsAppSession:
    return poll_until(
        lambda: WhatsAppSession.objects.filter(user=user, state=state).first(),
        timeout=timeout,
        interval=0.2,
        message=f"the WhatsApp session of user {user.pk} to be {state}",
    )


def messages_wait(user: User, bodies: list[str], status: str, *, timeout: float):
    """Wait until each body has exactly one outbound message, all in `status`."""

    def done():
        rows = list(
            Message.objects.filter(
                owner=user, direction=Message.Direction.OUTBOUND, body__in=bodies
            ).values_list("body", "status")
        )
        finished = len(rows) == len(bodies) and all(s == status for _b, s in rows)
        return rows if finished else None

    return poll_until(
        done,
        timeout=timeout,
        interval=0.3,
        message=f"{len(bodies)} outbound messages to be {status}",
    )


@pytest.fixture
def fault_stack(transactional_db, tmp_path):
    """Start redis, gunicorn, the gateway and a worker; stop them all after."""
    for program in ("node", "redis-server"):
        if not shutil.which(program):
            _skip_unless_ci(f"needs {program} on PATH")

    started: list[ManagedProcess] = []
    secret = secrets.token_hex(32)
    database_url = _database_url()

    redis_port, django_port, gateway_port = free_ports(3)
    redis_server = RedisServerProcess(
        port=redis_port, workdir=tmp_path, log_path=tmp_path / "redis.log"
    )
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    django_url = f"http://127.0.0.1:{django_port}"

    common = {
        **_base_env(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "WA_GATEWAY_URL": gateway_url,
        "WA_GATEWAY_SECRET": secret,
        # Stuck sends are requeued as soon as a test triggers the periodic
        # task, instead of after five minutes.
        "WA_SEND_STUCK_MINUTES": "0",
        "SECRET_KEY": secrets.token_hex(32),
    }
    django = DjangoServerProcess(
        port=django_port,
        argv=[
            sys.executable,
            "-m",
            "gunicorn",
            "whatsapp_saas.wsgi:application",
            f"--bind=127.0.0.1:{django_port}",
            "--workers=1",
            "--threads=8",
            "--worker-class=gthread",
            "--timeout=60",
            "--graceful-timeout=5",
        ],
        env=common,
        log_path=tmp_path / "django.log",
    )
    gateway = GatewayProcess(
        port=gateway_port,
        secret=secret,
        data_dir=tmp_path / "gateway-data",
        argv=["node", str(GATEWAY_SERVER)],
        env={
            **_base_env(),
            "HOST": "127.0.0.1",
            "PORT": str(gateway_port),
            "WA_ENGINE": "sim",
            "WA_DATA_DIR": str(tmp_path / "gateway-data"),
            "WA_CALLBACK_URL": f"{django_url}{CALLBACK_PATH}",
            "WA_GATEWAY_SECRET": secret,
            "WA_SIM_ACK_DELAYS_MS": SIM_ACK_DELAYS_MS,
            # Callback retries start at 200 ms and stay under 2 s, so an
            # outage of Django ends in the tests within a second or two.
            "WA_CALLBACK_BACKOFF_MS": "200,2000",
        },
        log_path=tmp_path / "gateway.log",
    )
    hostname = f"fault-{uuid.uuid4().hex[:8]}@127.0.0.1"
    worker = CeleryWorkerProcess(
        hostname=hostname,
        argv=[
            sys.executable,
            "-m",
            "celery",
            "-A",
            "whatsapp_saas",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            f"--hostname={hostname}",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ],
        env=common,
        log_path=tmp_path / "worker.log",
    )
    stack = FaultStack(
        redis=redis_server,
        django=django,
        gateway=gateway,
        worker=worker,
        processes=[redis_server, django, gateway, worker],
    )
    try:
        for process in stack.processes:
            process.start()
            started.append(process)
        yield stack
    finally:
        # The worker and gunicorn let go of the test database before
        # pytest-django flushes it.
        for process in reversed(started):
            process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        stack = getattr(item, "funcargs", {}).get("fault_stack")
        if stack is not None:
            report.sections.append(("fault stack logs", stack.logs()))
    return report


def wait_seconds(seconds: float) -> None:
    """Let time pass on purpose, e.g. to keep a service down for a while."""
    time.sleep(seconds)
