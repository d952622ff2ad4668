"""Start the product's processes for a benchmark and stop them all at the end.

Each child runs in its own session (process group) with its output in a log
file. `ProcessGroup.stop_all` sends SIGTERM to every group, then SIGKILL to
whatever is left, so gunicorn's and Celery's own children go too. Linux also
sends SIGTERM to each direct child when the bench process dies, so an
interrupted run leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

PR_SET_PDEATHSIG = 1

LOG_TAIL_LINES = 60


class ProcessStartError(Exception):
    """A child exited or was not ready in time."""


def _stop_with_parent() -> None:
    # Runs in the child between fork and exec: when the bench process dies,
    # even by SIGKILL, Linux sends the child SIGTERM.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def http_ok(url: str) -> Callable[[], bool]:
    """Return a readiness check that passes once `url` returns a status below 500."""

    def check() -> bool:
        try:
            return requests.get(url, timeout=1).status_code < 500
        except requests.RequestException:
            return False

    return check


def rss_bytes(pid: int) -> int:
    """Return the resident set size of one process, read from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def group_pids(pgid: int) -> list[int]:
    """Return the ids of live processes in process group `pgid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


class ManagedProcess:
    """One child process with a log file and a readiness check."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log_dir: Path,
        ready: Callable[[], bool],
        ready_timeout: float = 60.0,
    ):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.popen.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_stop_with_parent,
            )

        deadline = time.monotonic() + self.ready_timeout
        while not self.ready():
            status = self.popen.poll()
            if status is not None:
                raise ProcessStartError(
                    f"{self.name} exited with status {status} before it was "
                    f"ready. The end of {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise ProcessStartError(
                    f"{self.name} was not ready within {self.ready_timeout:.0f} s. "
                    f"The end of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """Send SIGTERM to the process group, then SIGKILL after `timeout` s."""
        if self.popen is None:
            return
        pgid = self.popen.pid
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

        # Children that outlive their parent (a gunicorn worker busy with a
        # request, a Celery pool process) are still in the group.
        deadline = time.monotonic() + 5
        while group_pids(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._signal_group(signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(timeout=5)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def children(self) -> list[int]:
        """Return the ids of the other live processes in this child's group."""
        return [pid for pid in group_pids(self.pid) if pid != self.pid]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class ProcessGroup:
    """The processes one bench run started, stopped in reverse order."""

    def __init__(self):
        self.processes: list[ManagedProcess] = []

    def start(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        process.start()
        return process

    def stop(self, process: ManagedProcess) -> None:
        process.stop()
        self.processes.remove(process)

    def stop_all(self) -> None:
        while self.processes:
            self.processes.pop().stop()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """Return the user plus system CPU seconds the live processes `pids` used."""
    return sum(_process_cpu_seconds(pid) or 0.0 for pid in pids)


def _process_cpu_seconds(pid: int) -> float | None:
    """Return the CPU seconds process `pid` used, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of stat(5), which are 12 and 13
    # here, counted after the command name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pids_by_cmdline(word: str) -> list[int]:
    """Return the ids of processes whose command line contains `word`."""
    pids = []
    needle = word.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class CpuMeter:
    """CPU seconds used by named groups of processes while the meter runs.

    `groups` returns {name: [pid, ...]} and is called at every sample, so
    processes that start during the interval are counted from zero, and
    processes that exit count up to their last sample (taken every
    `interval` seconds in a background thread).
    """

    def __init__(self, groups: Callable[[], dict[str, list[int]]], interval=0.5):
        self.groups = groups
        self.interval = interval
        self.first: dict[tuple[str, int], float] = {}
        self.latest: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[tuple[str, int], float]:
        # A process that exited between the listing and the read keeps its
        # last reading, instead of a zero that would count as negative use.
        sample = {}
        for name, pids in self.groups().items():
            for pid in pids:
                seconds = _process_cpu_seconds(pid)
                if seconds is not None:
                    sample[(name, pid)] = seconds
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.latest.update(self._sample())

    def __enter__(self):
        self.first = self._sample()
        self.latest = dict(self.first)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.latest.update(self._sample())

    def seconds(self) -> dict[str, float]:
        """Return the CPU seconds each group used between enter and exit."""
        totals = {name: 0.0 for name in self.groups()}
        for key, value in self.latest.items():
            totals[key[0]] = totals.get(key[0], 0.0) + value - self.first.get(key, 0.0)
        return totals
