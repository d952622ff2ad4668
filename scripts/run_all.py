"""Run the development processes in the foreground and stop them together.

First checks PORT and GATEWAY_PORT, applies migrations, creates the demo
subscriber and, when DEBUG is off, collects static files. Then starts
Django's runserver, the Node gateway with its `sim` engine and, when
REDIS_URL is set, a Celery worker and beat. Each line a child prints is shown
with the child's name in front. One Ctrl-C (SIGINT) or SIGTERM stops every
child. When one child exits by itself, the runner prints which one, stops
the others and exits with a non-zero status.

Each child runs in its own process group, so stopping a child also stops the
processes it started (runserver's reloader child, for example). The script
uses only the standard library, so it needs nothing but Python.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

# Seconds a child gets between SIGTERM and SIGKILL. Celery's warm shutdown
# waits for the running task, whose hard limit (CELERY_TASK_TIME_LIMIT) is
# longer, but in development a quick stop matters more than that task.
DEFAULT_STOP_TIMEOUT = 10.0

# Seconds to wait for the web server and the gateway to respond before the
# banner is printed anyway with a warning.
READY_TIMEOUT = 90.0

# Files the processes write at run time (beat's schedule); ignored by git.
RUN_DIR = BASE_DIR / ".run"

GATEWAY_DATA_ROOT = BASE_DIR / "gateway_node" / "data"

DEMO_EMAIL = "demo@example.com"

# The values django-environ's env.bool() reads as true.
TRUE_STRINGS = ("true", "on", "ok", "y", "yes", "1")

COLOURS = ["36", "35", "33", "32", "34", "31"]

PR_SET_PDEATHSIG = 1


@dataclass
class ProcessSpec:
    """One child process: its name, command line, environment and health URL."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None


@dataclass
class RunningProcess:
    spec: ProcessSpec
    popen: subprocess.Popen
    reader: threading.Thread | None = None


def _ask_kernel_to_stop_child_with_parent() -> None:
    # Runs in the child between fork and exec. If the runner itself is
    # killed with SIGKILL it cannot forward anything, so ask Linux to send
    # SIGTERM to the child when its parent dies.
    # NOTE: only the direct child gets that signal; runserver's reloader
    # child is left running when the runner is killed with SIGKILL.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def process_group_alive(pgid: int) -> bool:
    """Return whether any process of the group is still running (not a zombie)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces, so the
        # fields are counted after the last closing parenthesis.
        fields = stat[stat.rfind(")") + 2 :].split()
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state not in ("Z", "X"):
            return True
    return False


class Supervisor:
    """Start several children, print their output and stop them together."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        *,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        banner: str | None = None,
        ready_timeout: float = READY_TIMEOUT,
        cwd: Path = BASE_DIR,
        base_env: dict[str, str] | None = None,
        out=None,
    ):
        self.specs = specs
        self.stop_timeout = stop_timeout
        self.banner = banner
        self.ready_timeout = ready_timeout
        self.cwd = cwd
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.out = out or sys.stdout
        self.running: list[RunningProcess] = []
        self.stop_signal: int | None = None
        self.stopping = False
        self.output_lock = threading.Lock()
        self.colour = hasattr(self.out, "isatty") and self.out.isatty()
        names = [spec.name for spec in specs] + ["run_all"]
        self.name_width = max(len(name) for name in names)

    def report(self, message: str) -> None:
        """Print a line of the runner's own, prefixed like the children's."""
        self._write("run_all", message)

    def _write(self, name: str, line: str) -> None:
        prefix = f"{name:<{self.name_width}} |"
        if self.colour:
            colour = self._colour_for(name)
            prefix = f"\033[{colour}m{prefix}\033[0m"
        with self.output_lock:
            self.out.write(f"{prefix} {line}\n")
            self.out.flush()

    def _colour_for(self, name: str) -> str:
        names = [spec.name for spec in self.specs]
        if name not in names:
            return "1"
        return COLOURS[names.index(name) % len(COLOURS)]

    def _pump(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            self._write(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        stream.close()

    def _handle_signal(self, signum, frame) -> None:
        if self.stopping or self.stop_signal is not None:
            # A second Ctrl-C while children are still stopping: do not wait
            # for the grace period any longer.
            self.report("Second stop request: killing the remaining processes.")
            self._signal_all(signal.SIGKILL)
            return
        self.stop_signal = signum

    def _signal_all(self, signum: int) -> None:
        for process in self.running:
            self._signal_group(process.popen.pid, signum)

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def start(self) -> None:
        preexec = (
            _ask_kernel_to_stop_child_with_parent if sys.platform == "linux" else None
        )
        for spec in self.specs:
            env = {**self.base_env, **spec.env}
            popen = subprocess.Popen(
                spec.argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
            )
            self.running.append(RunningProcess(spec=spec, popen=popen))
            self.report(f"Started {spec.name} (pid {popen.pid}): {' '.join(spec.argv)}")

        for process in self.running:
            process.reader = threading.Thread(
                target=self._pump,
                args=(process.spec.name, process.popen.stdout),
                daemon=True,
            )
            process.reader.start()

    def _wait_until_ready(self) -> None:
        urls = [spec.ready_url for spec in self.specs if spec.ready_url]
        deadline = time.monotonic() + self.ready_timeout
        pending = list(urls)
        while pending and time.monotonic() < deadline and not self.stopping:
            pending = [url for url in pending if not _responds(url)]
            if pending:
                time.sleep(0.5)
        if self.stopping:
            return
        if pending:
            self.report(
                f"No response from {', '.join(pending)} after "
                f"{self.ready_timeout:.0f} s; check the output above."
            )
        if self.banner:
            for line in self.banner.splitlines():
                self.report(line)

    def run(self) -> int:
        """Run until a stop signal or a child exits; return the exit status."""
        previous = {
            signum: signal.signal(signum, self._handle_signal)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.start()
            threading.Thread(target=self._wait_until_ready, daemon=True).start()
            status = self._watch()
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return status

    def _watch(self) -> int:
        while True:
            if self.stop_signal is not None:
                name = signal.Signals(self.stop_signal).name
                self.report(f"Received {name}; stopping all processes.")
                return 0
            for process in self.running:
                code = process.popen.poll()
                if code is not None:
                    self.report(
                        f"{process.spec.name} exited with status {code}; "
                        "stopping the other processes."
                    )
                    return code if code > 0 else 1
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the children one at a time, in the reverse order of their start.

        Each process group gets SIGTERM, then SIGKILL if it is still running
        `stop_timeout` seconds later. The reverse order stops beat and the
        worker before the gateway, so a task in progress can finish its
        gateway call, and the gateway before Django, so its last callbacks
        are delivered.
        """
        self.stopping = True
        for process in reversed(self.running):
            self._stop_one(process)

        for process in self.running:
            try:
                process.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.report(
                    f"{process.spec.name} (pid {process.popen.pid}) did not exit."
                )
            if process.reader is not None:
                process.reader.join(timeout=2)
        self.report("All processes stopped.")

    def _stop_one(self, process: RunningProcess) -> None:
        pgid = process.popen.pid
        self._signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            process.popen.poll()
            if not process_group_alive(pgid):
                return
            time.sleep(0.05)
        self.report(
            f"{process.spec.name} still running {self.stop_timeout:.0f} s after "
            "SIGTERM; sending SIGKILL."
        )
        self._signal_group(pgid, signal.SIGKILL)


def _responds(url: str) -> bool:
    # Any HTTP response, even an error status, means the server is listening.
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def read_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines of a .env file, skipping blanks and comments."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def gateway_data_dir(env: dict[str, str]) -> str:
    """Return the gateway's WA_DATA_DIR: WA_DATA_DIR if set, else one per database.

    The gateway keeps each WhatsApp login under the Django user id. Another
    database numbers its users from 1 again, so a shared folder would hand
    the logins of one database's users to the other database's users with
    the same ids. A folder per DATABASE_URL keeps them apart.
    """
    if env.get("WA_DATA_DIR"):
        return env["WA_DATA_DIR"]

    url = urlsplit(env.get("DATABASE_URL") or "sqlite:///db.sqlite3")
    path = url.path
    if url.scheme.startswith("sqlite"):
        # Without the file's suffix the folder does not look like a
        # database file itself: db.sqlite3 -> sqlite-db.
        path = re.sub(r"\.(sqlite3?|db)$", "", path)
    parts = [url.scheme, url.hostname or "", str(url.port or ""), path]
    name = "-".join(part.strip("/") for part in parts if part.strip("/"))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return str(GATEWAY_DATA_ROOT / name)


def move_old_sqlite_data_dir(data_dir: str, report) -> None:
    """Rename the folder earlier versions used for the SQLite database's logins.

    They named it after the file, `sqlite-db.sqlite3`; the WhatsApp logins in
    it move to the new name instead of being left behind.
    """
    new = Path(data_dir)
    old = new.with_name(new.name + ".sqlite3")
    if new.parent != GATEWAY_DATA_ROOT or not old.is_dir() or new.exists():
        return
    old.rename(new)
    report(f"Renamed the gateway data folder {old} to {new}.")


def build_project_processes(env: dict[str, str]) -> list[ProcessSpec]:
    """Return the processes of the embedded product for this environment.

    `env` is the merged environment (the .env file overridden by the shell).
    PORT is Django's port here; the gateway reads its own port from PORT too,
    so the gateway gets GATEWAY_PORT under that name.
    """
    python = sys.executable
    web_port = env.get("PORT", "8000")
    gateway_host = env.get("GATEWAY_HOST", "127.0.0.1")
    gateway_port = env.get("GATEWAY_PORT", "3000")
    web_url = f"http://127.0.0.1:{web_port}"
    gateway_url = env.get("WA_GATEWAY_URL", f"http://{gateway_host}:{gateway_port}")

    django_env = {"PYTHONUNBUFFERED": "1", "WA_GATEWAY_URL": gateway_url}
    gateway_env = {
        "HOST": gateway_host,
        "PORT": gateway_port,
        "WA_ENGINE": env.get("WA_ENGINE", "sim"),
        "WA_DATA_DIR": gateway_data_dir(env),
        "WA_CALLBACK_URL": env.get(
            "WA_CALLBACK_URL", f"{web_url}/api/settings/whatsapp/session/update"
        ),
    }

    specs = [
        ProcessSpec(
            name="web",
            argv=[python, "manage.py", "runserver", f"127.0.0.1:{web_port}"],
            # runserver serves each request on a new thread, so a kept
            # connection is never reused, and under concurrent requests the
            # idle ones used up PostgreSQL's connections.
            env={**django_env, "DATABASE_CONN_MAX_AGE": "0"},
            ready_url=f"{web_url}/accounts/login/",
        ),
        ProcessSpec(
            name="gateway",
            argv=["node", "gateway_node/src/server.js"],
            env=gateway_env,
            ready_url=f"http://{gateway_host}:{gateway_port}/healthz",
        ),
    ]
    if env.get("REDIS_URL"):
        schedule = RUN_DIR / "celerybeat-schedule"
        specs.append(
            ProcessSpec(
                name="worker",
                argv=[python, "-m", "celery", "-A", "whatsapp_saas", "worker"]
                + ["--loglevel=INFO", "--concurrency=2"],
                env=django_env,
            )
        )
        specs.append(
            ProcessSpec(
                name="beat",
                argv=[python, "-m", "celery", "-A", "whatsapp_saas", "beat"]
                + ["--loglevel=INFO", f"--schedule={schedule}"],
                env=django_env,
            )
        )
    return specs


def port_errors(env: dict[str, str]) -> list[str]:
    """Return one message for each of PORT and GATEWAY_PORT that is not a port."""
    errors = []
    for name in ("PORT", "GATEWAY_PORT"):
        value = env.get(name)
        if value is None or value == "":
            continue
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 65535):
            errors.append(
                f"{name} must be a port number from 1 to 65535, got {value!r}."
            )
    return errors


def debug_enabled(env: dict[str, str]) -> bool:
    """Return Django's DEBUG for this environment (on unless DEBUG says off)."""
    value = env.get("DEBUG")
    if value is None or value == "":
        return True
    return value.strip().lower() in TRUE_STRINGS


def setup_commands(env: dict[str, str]) -> list[list[str]]:
    """Return the manage.py commands to run before the processes start.

    With DEBUG off, Django serves static files through the manifest that
    collectstatic writes, so every page fails without it.
    """
    python = sys.executable
    commands = [
        [python, "manage.py", "migrate", "--noinput"],
        [python, "manage.py", "ensure_demo_subscriber", "--email", DEMO_EMAIL],
    ]
    if not debug_enabled(env):
        commands.append([python, "manage.py", "collectstatic", "--noinput"])
    return commands


def run_setup(
    commands: list[list[str]], *, env: dict[str, str], report, cwd: Path = BASE_DIR
) -> tuple[int, str]:
    """Run `commands` in order, showing their output; stop at the first failure.

    Returns the failing command's exit status (0 when all succeeded) and the
    output of all of them.
    """
    output = []
    for argv in commands:
        step = " ".join(argv[1:])
        report(f"Running {step}")
        # Each line is shown as it comes, so a long migrate shows progress.
        with subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process:
            for line in process.stdout:
                output.append(line)
                report(line.rstrip("\n"))
            status = process.wait()
        if status != 0:
            report(f"{step} failed with status {status}.")
            return status, "".join(output)
    return 0, "".join(output)


def demo_created(setup_output: str) -> bool:
    """Return whether ensure_demo_subscriber created the account (and printed it)."""
    return f"Created the demo subscriber {DEMO_EMAIL}" in setup_output


def project_banner(env: dict[str, str], *, demo_was_created: bool) -> str:
    web_port = env.get("PORT", "8000")
    tasks = (
        "Celery worker and beat use REDIS_URL."
        if env.get("REDIS_URL")
        else "REDIS_URL is not set, so tasks run eagerly inside the web process."
    )
    if demo_was_created:
        login = [f"The demo login ({DEMO_EMAIL} and its password) is printed above."]
    else:
        login = [
            f"Log in as {DEMO_EMAIL}. To set a new password, run",
            f"  .venv/bin/python manage.py changepassword {DEMO_EMAIL}",
        ]
    return "\n".join(
        [
            "",
            f"Open http://127.0.0.1:{web_port}/settings/",
            *login,
            tasks,
            "Press Ctrl-C once to stop everything.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT,
        help="seconds between SIGTERM and SIGKILL when stopping (default %(default)s)",
    )
    args = parser.parse_args(argv)

    # The shell's values win over the .env file, as in Django's settings. The
    # children get both, so the gateway uses the same secret as Django.
    env = {**read_env_file(BASE_DIR / ".env"), **os.environ}
    errors = port_errors(env)
    if errors:
        for error in errors:
            print(f"run_all: {error}", file=sys.stderr)
        return 2

    RUN_DIR.mkdir(exist_ok=True)
    specs = build_project_processes(env)
    supervisor = Supervisor(specs, stop_timeout=args.stop_timeout, base_env=env)
    move_old_sqlite_data_dir(gateway_data_dir(env), supervisor.report)

    try:
        status, output = run_setup(
            setup_commands(env), env=env, report=supervisor.report
        )
    except KeyboardInterrupt:
        # Ctrl-C reaches the running manage.py command too, which stops. As
        # when the processes run, a stop the user asked for is not a failure.
        print("run_all: stopped during setup; nothing was started.", file=sys.stderr)
        return 0
    if status:
        return status

    supervisor.banner = project_banner(env, demo_was_created=demo_created(output))
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
