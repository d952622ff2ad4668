"""scripts/run_all.py: children start together and stop together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .harness import BASE_DIR, poll_until

sys.path.insert(0, str(BASE_DIR / "scripts"))

import run_all  # noqa: E402

# A child that prints its pid and the pid of a grandchild it starts, then
# waits. The grandchild shares its process group, as runserver's reloader
# child does.
PARENT_WITH_GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print("pid", __import__("os").getpid(), flush=True)
print("pid", grandchild.pid, flush=True)
time.sleep(300)
"""

IGNORES_SIGTERM = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("pid", os.getpid(), flush=True)
time.sleep(300)
"""

EXITS_WITH_3 = """
import os, time
print("pid", os.getpid(), flush=True)
time.sleep(0.5)
print("giving up", flush=True)
raise SystemExit(3)
"""

# A child that reports SIGTERM by printing its name after a short delay.
REPORTS_SIGTERM = """
import os, signal, sys, time
def stop(signum, frame):
    time.sleep(0.2)
    print("stopped", sys.argv[1], flush=True)
    raise SystemExit(0)
signal.signal(signal.SIGTERM, stop)
print("pid", os.getpid(), flush=True)
time.sleep(300)
"""

DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from run_all import ProcessSpec, Supervisor
specs = [ProcessSpec(name=name, argv=argv) for name, argv in json.loads(sys.argv[2])]
supervisor = Supervisor(specs, stop_timeout=float(sys.argv[3]), banner="all up")
sys.exit(supervisor.run())
"""


def process_running(pid: int) -> bool:
    """Return whether `pid` exists and is not a zombie."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        text = stat.read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return text[text.rfind(")") + 2] not in ("Z", "X")


class RunnerUnderTest:
    """The runner in a subprocess, with its output collected line by line."""

    def __init__(self, children: dict[str, str], stop_timeout: float = 5.0):
        specs = [
            [name, [sys.executable, "-c", code, name]]
            for name, code in children.items()
        ]
        self.popen = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DRIVER,
                str(BASE_DIR / "scripts"),
                json.dumps(specs),
                str(stop_timeout),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def child_pids(self, expected: int) -> list[int]:
        def pids():
            found = [
                int(line.rsplit(" ", 1)[1]) for line in self.lines if "| pid " in line
            ]
            return found if len(found) >= expected else None

        return poll_until(pids, timeout=10, message=f"{expected} child pids")

    def wait(self, timeout: float = 15.0) -> int:
        status = self.popen.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return status

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def start_runner():
    runners = []

    def start(children, stop_timeout=5.0):
        runner = RunnerUnderTest(children, stop_timeout=stop_timeout)
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_stops_children_and_grandchildren(start_runner, signum):
    runner = start_runner(
        {"first": PARENT_WITH_GRANDCHILD, "second": PARENT_WITH_GRANDCHILD}
    )
    pids = runner.child_pids(4)

    runner.popen.send_signal(signum)
    status = runner.wait()

    assert status == 0, runner.output()
    for pid in pids:
        assert not process_running(pid), f"pid {pid} survived:\n{runner.output()}"


def test_child_exit_stops_the_rest(start_runner):
    runner = start_runner({"steady": PARENT_WITH_GRANDCHILD, "flaky": EXITS_WITH_3})
    pids = runner.child_pids(3)

    status = runner.wait()

    assert status == 3
    assert "flaky exited with status 3" in runner.output()
    for pid in pids:
        assert not process_running(pid), f"pid {pid} survived:\n{runner.output()}"


def test_child_ignoring_sigterm_is_killed_after_timeout(start_runner):
    runner = start_runner({"stubborn": IGNORES_SIGTERM}, stop_timeout=1.0)
    [pid] = runner.child_pids(1)

    runner.popen.send_signal(signal.SIGTERM)
    status = runner.wait(timeout=10)

    assert status == 0
    assert "sending SIGKILL" in runner.output()
    assert not process_running(pid)


def test_children_stop_in_reverse_start_order(start_runner):
    runner = start_runner(
        {"web": REPORTS_SIGTERM, "gateway": REPORTS_SIGTERM, "worker": REPORTS_SIGTERM}
    )
    runner.child_pids(3)

    runner.popen.send_signal(signal.SIGTERM)
    assert runner.wait() == 0

    stopped = [line.split()[-1] for line in runner.lines if "| stopped " in line]
    assert stopped == ["worker", "gateway", "web"]


def test_output_lines_carry_the_child_name(start_runner):
    runner = start_runner({"flaky": EXITS_WITH_3})

    runner.wait()

    assert any(line.startswith("flaky   | giving up") for line in runner.lines), (
        runner.output()
    )


def test_banner_printed_once_children_run(start_runner):
    runner = start_runner({"steady": PARENT_WITH_GRANDCHILD})
    runner.child_pids(2)

    poll_until(
        lambda: any(line.endswith("| all up") for line in runner.lines),
        timeout=5,
        message="the banner",
    )
    runner.popen.send_signal(signal.SIGTERM)
    assert runner.wait() == 0


def test_env_file_values_are_read_without_quotes(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\n"
        "\n"
        "REDIS_URL=redis://127.0.0.1:6379/0\n"
        "export SECRET_KEY='a b c'\n"
        'WA_ENGINE="sim"\n'
        "not a setting\n"
    )

    values = run_all.read_env_file(env_file)

    assert values == {
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SECRET_KEY": "a b c",
        "WA_ENGINE": "sim",
    }


def test_project_without_redis_runs_web_and_gateway():
    specs = run_all.build_project_processes({})

    assert [spec.name for spec in specs] == ["web", "gateway"]


def test_project_with_redis_adds_worker_and_beat():
    specs = run_all.build_project_processes({"REDIS_URL": "redis://127.0.0.1:6379/0"})

    assert [spec.name for spec in specs] == ["web", "gateway", "worker", "beat"]


def test_port_moves_django_and_the_callback_url():
    specs = {
        spec.name: spec for spec in run_all.build_project_processes({"PORT": "8123"})
    }

    assert specs["web"].argv[-1] == "127.0.0.1:8123"
    assert specs["gateway"].env["PORT"] == "3000"
    assert specs["gateway"].env["WA_CALLBACK_URL"] == (
        "http://127.0.0.1:8123/api/settings/whatsapp/session/update"
    )


def test_gateway_port_moves_gateway_and_django_gateway_url():
    specs = {
        spec.name: spec
        for spec in run_all.build_project_processes({"GATEWAY_PORT": "3999"})
    }

    assert specs["gateway"].env["PORT"] == "3999"
    assert specs["web"].env["WA_GATEWAY_URL"] == "http://127.0.0.1:3999"


def test_web_keeps_no_database_connections():
    specs = {
        spec.name: spec
        for spec in run_all.build_project_processes(
            {"REDIS_URL": "redis://127.0.0.1:6379/0", "DATABASE_CONN_MAX_AGE": "60"}
        )
    }

    assert specs["web"].env["DATABASE_CONN_MAX_AGE"] == "0"
    assert "DATABASE_CONN_MAX_AGE" not in specs["worker"].env


def test_gateway_defaults_to_sim_engine():
    specs = {spec.name: spec for spec in run_all.build_project_processes({})}

    assert specs["gateway"].env["WA_ENGINE"] == "sim"


def test_gateway_data_dir_follows_database_url():
    postgres = run_all.gateway_data_dir(
        {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/wa_dev"}
    )
    other = run_all.gateway_data_dir(
        {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/wa_other"}
    )

    assert postgres.endswith("/gateway_node/data/postgres-127.0.0.1-5432-wa_dev")
    assert other.endswith("/gateway_node/data/postgres-127.0.0.1-5432-wa_other")


def test_gateway_data_dir_without_database_url_is_sqlite():
    data_dir = run_all.gateway_data_dir({})

    assert data_dir.endswith("/gateway_node/data/sqlite-db")


def test_gateway_data_dir_keeps_sqlite_files_apart():
    first = run_all.gateway_data_dir({"DATABASE_URL": "sqlite:////srv/a/db.sqlite3"})
    second = run_all.gateway_data_dir({"DATABASE_URL": "sqlite:////srv/b/db.sqlite3"})

    assert first.endswith("/gateway_node/data/sqlite-srv_a_db")
    assert second.endswith("/gateway_node/data/sqlite-srv_b_db")


def test_old_sqlite_data_dir_is_renamed(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "GATEWAY_DATA_ROOT", tmp_path)
    old = tmp_path / "sqlite-db.sqlite3"
    (old / "auth" / "1").mkdir(parents=True)
    reports = []

    run_all.move_old_sqlite_data_dir(str(tmp_path / "sqlite-db"), reports.append)

    assert (tmp_path / "sqlite-db" / "auth" / "1").is_dir()
    assert not old.exists()
    assert len(reports) == 1


@pytest.mark.parametrize("name", ["PORT", "GATEWAY_PORT"])
@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "80.5", "\u0663"])
def test_invalid_port_is_named(name, value):
    errors = run_all.port_errors({name: value})

    assert errors == [f"{name} must be a port number from 1 to 65535, got {value!r}."]


def test_valid_ports_pass():
    assert run_all.port_errors({"PORT": "8000", "GATEWAY_PORT": "65535"}) == []


def test_invalid_port_stops_before_setup(monkeypatch, capsys):
    monkeypatch.setenv("PORT", "abc")
    monkeypatch.setattr(run_all, "read_env_file", lambda path: {})
    monkeypatch.setattr(
        run_all, "run_setup", lambda *args, **kwargs: pytest.fail("setup ran")
    )

    status = run_all.main([])

    assert status == 2
    assert capsys.readouterr().err == (
        "run_all: PORT must be a port number from 1 to 65535, got 'abc'.\n"
    )


def test_ctrl_c_during_setup_exits_quietly(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_all, "read_env_file", lambda path: {})
    monkeypatch.setattr(run_all, "move_old_sqlite_data_dir", lambda *args: None)
    monkeypatch.setattr(run_all, "run_setup", interrupted)

    status = run_all.main([])

    assert status == 0
    assert capsys.readouterr().err == (
        "run_all: stopped during setup; nothing was started.\n"
    )


@pytest.mark.parametrize("debug", ["False", "off", "0", "no"])
def test_setup_collects_static_without_debug(debug):
    commands = run_all.setup_commands({"DEBUG": debug})

    assert commands[-1][1:] == ["manage.py", "collectstatic", "--noinput"]


@pytest.mark.parametrize("env", [{}, {"DEBUG": "True"}, {"DEBUG": "1"}])
def test_setup_skips_collectstatic_with_debug(env):
    commands = run_all.setup_commands(env)

    assert all("collectstatic" not in argv for argv in commands)


def test_setup_stops_at_first_failure(tmp_path):
    reports = []
    commands = [
        [sys.executable, "-c", "print('first'); raise SystemExit(4)"],
        [sys.executable, "-c", "print('second')"],
    ]

    status, output = run_all.run_setup(
        commands, env=dict(os.environ), report=reports.append, cwd=tmp_path
    )

    assert status == 4
    assert output == "first\n"
    assert "first" in reports


def test_setup_reports_lines_while_running(tmp_path):
    seen = tmp_path / "seen"
    # Prints "second" only once the report of "first" created the file.
    script = (
        "import pathlib, time\n"
        "print('first', flush=True)\n"
        "for _ in range(100):\n"
        f"    if pathlib.Path({str(seen)!r}).exists():\n"
        "        print('second')\n"
        "        break\n"
        "    time.sleep(0.05)\n"
    )

    def report(line):
        if line == "first":
            seen.touch()

    status, output = run_all.run_setup(
        [[sys.executable, "-c", script]],
        env=dict(os.environ),
        report=report,
        cwd=tmp_path,
    )

    assert status == 0
    assert output == "first\nsecond\n"


def test_demo_created_reads_command_output():
    created = "Created the demo subscriber demo@example.com.\nPassword (shown..."
    existing = "The demo subscriber demo@example.com already exists; ..."

    assert run_all.demo_created(created) is True
    assert run_all.demo_created(existing) is False


def test_banner_points_to_new_demo_login():
    banner = run_all.project_banner({}, demo_was_created=True)

    assert "printed above" in banner
    assert "changepassword" not in banner


def test_banner_explains_password_reset_later():
    banner = run_all.project_banner({}, demo_was_created=False)

    assert "printed above" not in banner
    assert "manage.py changepassword demo@example.com" in banner


def test_gateway_data_dir_setting_wins():
    data_dir = run_all.gateway_data_dir(
        {"WA_DATA_DIR": "/srv/wa", "DATABASE_URL": "postgres://h/db"}
    )

    assert data_dir == "/srv/wa"


@pytest.mark.django_db
def test_demo_created_matches_real_command():
    from io import StringIO

    from django.core.management import call_command

    first, second = StringIO(), StringIO()
    call_command("ensure_demo_subscriber", "--email", run_all.DEMO_EMAIL, stdout=first)
    call_command("ensure_demo_subscriber", "--email", run_all.DEMO_EMAIL, stdout=second)

    assert run_all.demo_created(first.getvalue()) is True
    assert run_all.demo_created(second.getvalue()) is False
