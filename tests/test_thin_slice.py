"""A subscriber links WhatsApp through the settings page, over real processes.

The live server, the Node gateway with its sim engine and a Celery worker
run together: the page enqueues a task, the worker calls the gateway, and
the gateway's signed callbacks move the session to "Connected".
"""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from sessions_wa.models import GatewayEvent, WhatsAppSession
from sessions_wa.qr import qr_svg
from whatsapp_saas.celery import app as celery_app

from .harness import CALLBACK_PATH, poll_until

pytestmark = pytest.mark.processes

CARD_PATH = "/settings/whatsapp/card/"
SCANNING_PHONE = "+5511900000009"

# The worker's log line for a task that ran, e.g.
# "Task sessions_wa.tasks.session_start[<id>] succeeded in 0.01s: None".
START_TASK = "sessions_wa.tasks.session_start"
SIM_SCAN_TASK = "sessions_wa.tasks.session_sim_scan"

PATH_RE = re.compile(r"<path\b[^>]*>")


def qr_path(html: str) -> str | None:
    """Return the <path> element of the QR code's SVG in `html`, if any."""
    svg = re.search(r"<svg\b.*?</svg>", html, re.DOTALL)
    if svg is None:
        return None
    path = PATH_RE.search(svg.group(0))
    return path.group(0) if path else None


def gateway_qr(gateway_process, user_id: int) -> str | None:
    response = gateway_process.request("GET", "/qr", query={"user_id": user_id})
    if response.status_code != 200:
        return None
    return response.json()["qr"]


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def card_with_qr(web) -> str | None:
    html = web.get(CARD_PATH).text
    return html if qr_path(html) else None


def card_connected(web) -> str | None:
    html = web.get(CARD_PATH).text
    return html if "Connected" in html else None


def succeeded(worker, task_name: str) -> bool:
    return any("succeeded" in line for line in worker.task_lines(task_name))


def test_subscriber_links_whatsapp_from_settings_page(
    live_server, gateway_process, celery_worker_process, e2e_subscriber, subscriber_web
):
    user = e2e_subscriber.user

    # The page only enqueues; the worker process must run the tasks.
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    assert celery_app.conf.task_always_eager is False

    clicked = subscriber_web.click("/settings/", "Get my QR code")
    assert clicked.status_code == 200, clicked.text

    card = poll_until(
        lambda: card_with_qr(subscriber_web),
        timeout=30,
        message="a QR code in the WhatsApp card",
    )
    qr = gateway_qr(gateway_process, user.pk)
    assert qr, "The gateway has no pending QR code for the user."
    assert qr_path(card) == qr_path(qr_svg(qr))
    assert succeeded(celery_worker_process, START_TASK)

    scanned = subscriber_web.click(
        "/settings/", "Simulate scan", {"phone": SCANNING_PHONE}
    )
    assert scanned.status_code == 200, scanned.text

    card = poll_until(
        lambda: card_connected(subscriber_web),
        timeout=30,
        message="the WhatsApp card to show Connected",
    )
    assert digits(SCANNING_PHONE) in digits(card)
    assert succeeded(celery_worker_process, SIM_SCAN_TASK)
    session = WhatsAppSession.objects.get(user=user)
    assert session.state == WhatsAppSession.State.CONNECTED
    assert session.phone == SCANNING_PHONE

    # A callback without the signature header is rejected and changes nothing.
    events_before = GatewayEvent.objects.count()
    forged = {
        "events": [
            {
                "event_id": str(uuid.uuid4()),
                "seq": 10**12,
                "type": "session.logged_out",
                "user_id": user.pk,
                "occurred_at": timezone.now().isoformat(),
                "data": {"reason": "requested"},
            }
        ]
    }
    response = requests.post(
        f"{live_server.url}{CALLBACK_PATH}", json=forged, timeout=10
    )

    assert response.status_code == 401
    session.refresh_from_db()
    assert session.state == WhatsAppSession.State.CONNECTED
    assert GatewayEvent.objects.count() == events_before
    assert "Connected" in subscriber_web.get(CARD_PATH).text
