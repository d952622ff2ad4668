"""The production shape on one machine: PostgreSQL, Redis, gunicorn, a Celery
worker and the Node gateway with its `sim` engine, all on 127.0.0.1.

`Stack.start` makes a fresh database and an empty Redis database, migrates,
and starts the three processes on free ports; `Stack.stop` stops them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

from bench.processes import (
    ManagedProcess,
    ProcessGroup,
    group_pids,
    http_ok,
    pids_by_cmdline,
)
from tests.harness import free_ports

BASE_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
GATEWAY_SERVER = BASE_DIR / "gateway_node" / "src" / "server.js"
CALLBACK_PATH = "/api/settings/whatsapp/session/update"
SETTINGS_MODULE = "bench.bench_settings"


@dataclass
class StackConfig:
    """Process settings of a run; the report prints every value."""

    database_url: str
    redis_url: str
    gunicorn_workers: int = 4
    gunicorn_threads: int = 1
    celery_concurrency: int = 4
    max_sessions: int = 20000
    # Extra environment for Django processes (gunicorn and Celery).
    django_env: dict[str, str] = field(default_factory=dict)
    # Extra environment for the gateway.
    gateway_env: dict[str, str] = field(default_factory=dict)

    def gunicorn_argv(self, port: int, access_log: Path) -> list[str]:
        argv = [
            str(VENV_BIN / "gunicorn"),
            "whatsapp_saas.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(self.gunicorn_workers),
            "--access-logfile",
            str(access_log),
        ]
        if self.gunicorn_threads > 1:
            argv += [
                "--worker-class",
                "gthread",
                "--threads",
                str(self.gunicorn_threads),
            ]
        return argv

    def celery_argv(self) -> list[str]:
        return [
            str(VENV_BIN / "celery"),
            "-A",
            "whatsapp_saas",
            "worker",
            "--loglevel=INFO",
            "--pool=prefork",
            f"--concurrency={self.celery_concurrency}",
            "--hostname=bench@%h",
        ]

    def describe(self) -> dict[str, str]:
        threads = (
            f"gthread, {self.gunicorn_threads} threads each"
            if self.gunicorn_threads > 1
            else "sync"
        )
        return {
            "gunicorn": f"{self.gunicorn_workers} workers ({threads}), access log on",
            "celery": (
                f"1 worker, prefork pool, concurrency {self.celery_concurrency}, "
                "--loglevel=INFO, no beat"
            ),
            "gateway": "1 node process, WA_ENGINE=sim, WA_SIM_ACK_DELAYS_MS=0,0,0",
        }


def _admin_url(database_url: str) -> tuple[str, str]:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit(f"The database URL {database_url!r} names no database.")
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    return admin, name


def database_recreate(database_url: str) -> None:
    """Drop and create the database that `database_url` names."""
    admin_url, name = _admin_url(database_url)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        quoted = sql.Identifier(name)
        connection.execute(
            sql.SQL("drop database if exists {} with (force)").format(quoted)
        )
        connection.execute(sql.SQL("create database {}").format(quoted))


def database_drop(database_url: str) -> None:
    admin_url, name = _admin_url(database_url)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(name)
            )
        )


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    except OSError:
        return False


class Stack:
    """The running processes of one bench run and how to reach them."""

    def __init__(self, config: StackConfig, run_dir: Path):
        self.config = config
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.group = ProcessGroup()
        self.gateway_secret = secrets.token_hex(32)
        self.secret_key = secrets.token_hex(32)
        self.data_dir = Path(tempfile.mkdtemp(prefix="gateway-", dir=run_dir))
        self.web_port, self.gateway_port = free_ports(2)
        self.web: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.gateway: ManagedProcess | None = None

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def django_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
                "PYTHONPATH": str(BASE_DIR),
                "DEBUG": "False",
                "SECRET_KEY": self.secret_key,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DATABASE_URL": self.config.database_url,
                "REDIS_URL": self.config.redis_url,
                "WA_GATEWAY_URL": self.gateway_url,
                "WA_GATEWAY_SECRET": self.gateway_secret,
            }
        )
        env.pop("WA_GATEWAY_URLS", None)
        env.update(self.config.django_env)
        return env

    def gateway_env(self, *, port: int, data_dir: Path, callback_url: str) -> dict:
        env = dict(os.environ)
        env.update(
            {
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "NODE_ENV": "production",
                "LOG_LEVEL": "info",
                "WA_ENGINE": "sim",
                "WA_GATEWAY_SECRET": self.gateway_secret,
                "WA_CALLBACK_URL": callback_url,
                "WA_DATA_DIR": str(data_dir),
                "WA_SIM_ACK_DELAYS_MS": "0,0,0",
                "WA_MAX_SESSIONS": str(self.config.max_sessions),
            }
        )
        env.update(self.config.gateway_env)
        return env

    def prepare_database(self) -> None:
        """Make a fresh database and an empty Redis database, then migrate."""
        database_recreate(self.config.database_url)
        redis.Redis.from_url(self.config.redis_url).flushdb()
        self.run_django("migrate", "--noinput", log_name="migrate")

    def run_django(self, *args: str, log_name: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{log_name}.log"
        with log_path.open("ab") as log:
            status = subprocess.call(
                [sys.executable, "manage.py", *args],
                cwd=BASE_DIR,
                env=self.django_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if status != 0:
            raise SystemExit(
                f"manage.py {' '.join(args)} failed with status {status}; "
                f"see {log_path}."
            )

    def start(self) -> None:
        self.prepare_database()
        self.gateway = self.group.start(
            ManagedProcess(
                "gateway",
                ["node", str(GATEWAY_SERVER)],
                env=self.gateway_env(
                    port=self.gateway_port,
                    data_dir=self.data_dir,
                    callback_url=f"{self.web_url}{CALLBACK_PATH}",
                ),
                cwd=BASE_DIR / "gateway_node",
                log_dir=self.log_dir,
                ready=http_ok(f"{self.gateway_url}/healthz"),
            )
        )
        self.web = self.group.start(
            ManagedProcess(
                "gunicorn",
                self.config.gunicorn_argv(
                    self.web_port, self.log_dir / "gunicorn-access.log"
                ),
                env=self.django_env(),
                cwd=BASE_DIR,
                log_dir=self.log_dir,
                ready=http_ok(f"{self.web_url}/bench/noop"),
            )
        )
        worker_log = self.log_dir / "celery.log"
        self.worker = self.group.start(
            ManagedProcess(
                "celery",
                self.config.celery_argv(),
                env=self.django_env(),
                cwd=BASE_DIR,
                log_dir=self.log_dir,
                ready=lambda: (
                    worker_log.exists()
                    and " ready." in worker_log.read_text(errors="replace")
                ),
            )
        )

    def cpu_groups(self) -> dict[str, list[int]]:
        """Return the process ids of each part, for `CpuMeter`."""
        _admin, database = _admin_url(self.config.database_url)
        # Backends of this database only: the server has other clients.
        postgres = [
            pid for pid in pids_by_cmdline(f" {database} ") if _is_postgres(pid)
        ]
        return {
            "gunicorn": group_pids(self.web.pid),
            "celery": group_pids(self.worker.pid),
            "gateway": group_pids(self.gateway.pid),
            "postgres": postgres,
            "redis": pids_by_cmdline("redis-server"),
            "bench client": [os.getpid()],
        }

    def callback_requests(self) -> int:
        """Return how many callback requests gunicorn has logged so far."""
        access_log = self.log_dir / "gunicorn-access.log"
        if not access_log.exists():
            return 0
        with access_log.open("rb") as log:
            return sum(1 for line in log if CALLBACK_PATH.encode() in line)

    def stop(self) -> None:
        self.group.stop_all()
        shutil.rmtree(self.data_dir, ignore_errors=True)
