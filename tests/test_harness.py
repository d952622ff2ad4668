"""The end-to-end fixtures: restarts keep the address, the forms parse."""

from __future__ import annotations

import pytest
import requests

from .harness import page_forms, poll_until

LOGIN_PAGE = """
<form method="post" action="/accounts/login/">
  <input type="hidden" name="csrfmiddlewaretoken" value="token">
  <input type="text" name="username" value="">
  <input type="password" name="password">
  <input type="checkbox" name="remember">
  <select name="country"><option value="AR">AR</option>
    <option value="BR" selected>BR</option></select>
  <button type="submit" name="go" value="1">Log <b>in</b></button>
</form>
<form><input type="submit" value="Search"></form>
"""


@pytest.mark.processes
def test_gateway_restart_keeps_url(gateway_process):
    url, pid = gateway_process.url, gateway_process.pid

    gateway_process.restart()

    assert gateway_process.url == url
    assert gateway_process.pid != pid
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    # The restart reports the sessions that earlier tests left to Django.
    # A callback still running when the test's tables are flushed can
    # deadlock with the flush, so the test ends once none is pending.
    poll_until(
        lambda: requests.get(f"{url}/healthz", timeout=5).json()["outbox_pending"] == 0,
        timeout=30,
        message="the restarted gateway to deliver its callbacks",
    )


@pytest.mark.processes
def test_gateway_rejects_unsigned_request(gateway_process):
    response = gateway_process.request(
        "GET", "/status", query={"user_id": 1}, signed=False
    )

    assert response.status_code == 401


@pytest.mark.processes
def test_worker_restart_is_ready_again(celery_worker_process):
    pid = celery_worker_process.pid

    celery_worker_process.restart()

    assert celery_worker_process.pid != pid
    assert celery_worker_process.running
    assert "ready." in celery_worker_process.log_since_start()


def test_page_forms_reads_fields_and_buttons():
    login, search = page_forms(LOGIN_PAGE)

    assert login["action"] == "/accounts/login/"
    assert login["method"] == "post"
    assert login["fields"] == {
        "csrfmiddlewaretoken": "token",
        "username": "",
        "password": "",
        "country": "BR",
    }
    assert login["input_types"]["password"] == "password"
    assert [button["text"] for button in login["buttons"]] == ["Log in"]
    assert search["method"] == "get"
    assert [button["text"] for button in search["buttons"]] == ["Search"]
