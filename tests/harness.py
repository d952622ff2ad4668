"""Real processes and an HTTP client for the end-to-end tests.

`GatewayProcess` runs `node gateway_node/src/server.js`, and
`CeleryWorkerProcess` runs a Celery worker. Each one writes its output to a
log file, runs in its own process group, and can be stopped, started and
restarted by a test. `WebSession` is a `requests` session that logs in
through the login page and submits the forms of a page by their button text,
as a person clicking would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from sessions_wa.signing import SIGNATURE_HEADER, sign

BASE_DIR = Path(__file__).resolve().parent.parent
GATEWAY_SERVER = BASE_DIR / "gateway_node" / "src" / "server.js"
CALLBACK_PATH = "/api/settings/whatsapp/session/update"

LOG_TAIL_LINES = 200


class ProcessStartError(Exception):
    """A child process exited or timed out before it was ready."""


def python_run(
    script: str, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run `script` in a new Python interpreter in the project folder.

    Fails the calling test with the script's stderr unless it exits with 0.
    """
    completed = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr
    return completed


def free_ports(count: int) -> list[int]:
    """Return `count` distinct TCP ports on 127.0.0.1 that nothing listens on.

    Every socket stays bound until all are, so the kernel cannot hand out
    one port twice, as it may to one-by-one calls that each release theirs.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stack.enter_context(sock)
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def poll_until(
    check: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    """Call `check` until it returns a truthy value and return that value.

    Raises AssertionError naming `message` and the last value when
    `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"Timed out after {timeout} s waiting for {message}; "
                f"last value: {value!r}"
            )
        time.sleep(interval)


class ManagedProcess:
    """A child process whose output goes to a log file.

    Subclasses define `is_ready`. `start` returns once the process is ready
    and raises ProcessStartError, with the log's tail, when it exits or
    times out first.
    """

    name = "process"

    def __init__(
        self,
        *,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        cwd: Path = BASE_DIR,
        ready_timeout: float = 30.0,
    ):
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.popen: subprocess.Popen | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def is_ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- starting {self.name}: {' '.join(self.argv)}\n".encode())
            self._log_offset = log.tell()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        deadline = time.monotonic() + self.ready_timeout
        while not self.is_ready():
            status = self.popen.poll()
            if status is not None:
                raise ProcessStartError(
                    f"{self.name} exited with status {status} before it was "
                    f"ready. Its log:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise ProcessStartError(
                    f"{self.name} was not ready within {self.ready_timeout} s. "
                    f"Its log:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Send SIGTERM to the process group, then SIGKILL after `timeout` s.

        Returns the exit status, or None when the process was not started.
        """
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=5)
        # Children of the process (none expected) go with it.
        self._signal_group(signal.SIGKILL)
        return self.popen.returncode

    def kill(self) -> None:
        """Kill the process group at once, as a crash or OOM kill would."""
        if self.popen is not None and self.popen.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.popen.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def log_text(self) -> str:
        """Return the whole log, over every start of this process."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_since_start(self) -> str:
        """Return what the process wrote since its latest start."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, text: str, *, timeout: float = 10.0) -> str:
        """Wait until the log since the latest start contains `text`.

        Returns that log; raises AssertionError after `timeout` seconds.
        """

        def log_with_text() -> str | None:
            log = self.log_since_start()
            return log if text in log else None

        return poll_until(
            log_with_text, timeout=timeout, message=f"{text!r} in the {self.name} log"
        )


class GatewayProcess(ManagedProcess):
    """The Node gateway on a free port; ready when /healthz returns 200."""

    name = "gateway"

    def __init__(self, *, port: int, secret: str, data_dir: Path, **kwargs):
        super().__init__(**kwargs)
        self.port = port
        self.secret = secret
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"

    def is_ready(self) -> bool:
        try:
            response = requests.get(f"{self.url}/healthz", timeout=1)
        except requests.RequestException:
            return False
        return response.status_code == 200

    def request(
        self,
        method: str,
        path: str,
        *,
        payload: dict | None = None,
        query: dict | None = None,
        signed: bool = True,
    ) -> requests.Response:
        """Send one request to the gateway, signed with the shared secret."""
        full_path = f"{path}?{urlencode(query)}" if query else path
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if signed:
            headers[SIGNATURE_HEADER] = sign(
                secret=self.secret,
                timestamp=int(time.time()),
                method=method,
                path=full_path,
                body=body,
            )
        return requests.request(
            method, self.url + full_path, data=body or None, headers=headers, timeout=10
        )


class CeleryWorkerProcess(ManagedProcess):
    """A Celery worker; ready when it logs `<hostname> ready.`."""

    name = "celery worker"

    def __init__(self, *, hostname: str, **kwargs):
        super().__init__(**kwargs)
        self.hostname = hostname

    def is_ready(self) -> bool:
        return f"{self.hostname} ready." in self.log_since_start()

    def task_lines(self, task_name: str) -> list[str]:
        """Return the log lines since the latest start that name `task_name`."""
        return [
            line for line in self.log_since_start().splitlines() if task_name in line
        ]


class _FormParser(HTMLParser):
    """Collect every form of a page with its fields and submit buttons."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._button: dict | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = {
                "action": attributes.get("action", ""),
                "method": attributes.get("method", "get").lower(),
                "fields": {},
                "input_types": {},
                "buttons": [],
            }
            self.forms.append(self._form)
            return
        if self._form is None:
            return

        name = attributes.get("name")
        kind = attributes.get("type", "").lower()
        if tag == "input" and kind in ("submit", "image"):
            self._form["buttons"].append(
                {"text": attributes.get("value", ""), "name": name, **attributes}
            )
        elif tag == "input" and name:
            self._form["input_types"][name] = kind or "text"
            if kind in ("checkbox", "radio") and "checked" not in attributes:
                return
            self._form["fields"][name] = attributes.get("value", "")
        elif tag == "button" and kind in ("", "submit"):
            self._button = {"text": "", "name": name, **attributes}
        elif tag == "textarea" and name:
            self._form["fields"][name] = ""
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select:
            fields = self._form["fields"]
            if self._select not in fields or "selected" in attributes:
                fields[self._select] = attributes.get("value", "")

    def handle_data(self, data):
        if self._button is not None:
            self._button["text"] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "button" and self._button is not None:
            if self._form is not None:
                self._form["buttons"].append(self._button)
            self._button = None
        elif tag == "select":
            self._select = None


def page_forms(html: str) -> list[dict]:
    """Return the forms of a page: action, method, fields, input types, buttons."""
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


class WebSession:
    """A `requests` session against the live server that acts like a person."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()

    def close(self) -> None:
        """Close the kept-alive HTTP connections to the server."""
        self.http.close()

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path)

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        headers = kwargs.pop("headers", {})
        headers.setdefault("Referer", self.url(path))
        if "csrftoken" in self.http.cookies:
            headers.setdefault("X-CSRFToken", self.http.cookies["csrftoken"])
        return self.http.post(self.url(path), headers=headers, **kwargs)

    def login(self, email: str, password: str) -> requests.Response:
        """Log in through the login page's form; raise AssertionError if refused."""
        page = self.get("/accounts/login/")
        assert page.status_code == 200, f"GET /accounts/login/ gave {page.status_code}"
        form = next(
            (
                f
                for f in page_forms(page.text)
                if "password" in f["input_types"].values()
            ),
            None,
        )
        assert form is not None, "The login page has no form with a password field."

        types = form["input_types"]
        login_field = next(
            (name for name, kind in types.items() if kind in ("email", "text")), None
        )
        assert login_field is not None, "The login form has no email or text field."
        password_field = next(
            name for name, kind in types.items() if kind == "password"
        )
        fields = {**form["fields"], login_field: email, password_field: password}
        response = self.post(_action_path(form, page.url), data=fields)
        assert "sessionid" in self.http.cookies, (
            f"Logging in as {email} failed: status {response.status_code}, "
            f"ended at {response.url}"
        )
        return response

    def find_form(self, html: str, button_text: str) -> tuple[dict, dict]:
        """Return the form holding a button whose text contains `button_text`."""
        wanted = _normalise(button_text)
        for form in page_forms(html):
            for button in form["buttons"]:
                if wanted in _normalise(button["text"]):
                    return form, button
        buttons = [b["text"].strip() for f in page_forms(html) for b in f["buttons"]]
        raise AssertionError(
            f"No button with the text {button_text!r} on the page; "
            f"buttons found: {buttons}"
        )

    def click(
        self, path: str, button_text: str, fields: dict | None = None
    ) -> requests.Response:
        """Load `path` and submit the form of the button named `button_text`."""
        page = self.get(path)
        assert page.status_code == 200, f"GET {path} gave {page.status_code}"
        form, button = self.find_form(page.text, button_text)
        data = {**form["fields"], **(fields or {})}
        if button.get("name"):
            data[button["name"]] = button.get("value", "")
        action = _action_path(form, page.url)
        if form["method"] == "post":
            return self.post(action, data=data)
        return self.get(action, params=data)


def _action_path(form: dict, page_url: str) -> str:
    # An empty action posts back to the page itself.
    return urlsplit(urljoin(page_url, form["action"] or page_url)).path
