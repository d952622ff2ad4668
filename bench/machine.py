"""Description of the bench machine, its software versions and the date."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psycopg
import redis

PACKAGES = ["Django", "djangorestframework", "celery", "gunicorn", "psycopg", "redis"]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _node_version() -> str:
    try:
        return subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        return "not found"


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages from /proc/loadavg."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_describe(*, database_url: str, redis_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as connection:
        postgres = connection.execute("show server_version").fetchone()[0]
    redis_version = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    versions = {name: metadata.version(name) for name in PACKAGES}
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu_model": _cpu_model(),
        "memory": f"{_memory_gib():.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": _node_version(),
        "postgresql": postgres,
        "redis_server": redis_version,
        **versions,
    }
